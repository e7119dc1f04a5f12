/**
 * Invocation records: the last `max` invocations, in memory (OpenWhisk's activation records,
 * Lambda's REPORT lines). A fixed-size ring; lookups by request id through a map that only
 * ever holds ids still in the ring; followers told of each record as it is kept.
 */

export interface InvocationRecord {
  requestId: string;
  function: string;
  version: string;
  /** ISO time the request arrived. */
  start: string;
  status: number;
  /** `ok`, or the error code of docs/spec.md §3. */
  outcome: string;
  cold?: boolean;
  /** Whether it made an effect outside its sandbox: a KV write, a fetch other than GET/HEAD/OPTIONS. */
  effects?: boolean;
  /** Times the server ran it again after its worker died or was blocked (docs/spec.md §3); absent = 0. */
  reruns?: number;
  /** It ran alone on the solo lane: a suspect, or its function was quarantined. */
  solo?: boolean;
  /** An async invocation's attempt (docs/spec.md §9): one record per attempt, under the same id. */
  attempt?: number;
  durationMs: { queue?: number; exec?: number; total: number };
  /** The function's console output, `level\tmessage` lines, capped. */
  logs: string[];
  logsTruncated?: boolean;
}

export interface RecordQuery {
  fn?: string;
  /** An exact status (`504`) or a class (`5xx`). */
  status?: string;
  limit?: number;
}

/**
 * Where records go and are read from: this replica's ring (InvocationRecords), or with REDIS_URL
 * the cluster's (shared-records.ts). Reads may be answered at once or later.
 */
export interface RecordLog {
  /** RECORDS_MAX: how many are kept (0 = none). */
  readonly max: number;
  /** Keeps a record; never waits, never throws. */
  add(record: InvocationRecord): void;
  /** The latest record of a request id, when still kept. */
  get(requestId: string): InvocationRecord | undefined | Promise<InvocationRecord | undefined>;
  /** Newest first, filtered. */
  query(query?: RecordQuery): InvocationRecord[] | Promise<InvocationRecord[]>;
  /**
   * Calls `listener` with each record kept from now on (with REDIS_URL: kept by any replica,
   * shared-records.ts), oldest first; none while `max` is 0. Returns the call that stops it.
   * A listener must not throw (what it throws is dropped).
   */
  follow(listener: RecordListener): () => void;
}

/** Told of one record as it is kept. */
export type RecordListener = (record: InvocationRecord) => void;

/**
 * Adds `listener` to `listeners` (wrapped, so that the same function following twice is two
 * followers); returns the call that removes it.
 */
export function addFollower(listeners: Set<RecordListener>, listener: RecordListener): () => void {
  const own: RecordListener = (record) => listener(record);
  listeners.add(own);
  return () => void listeners.delete(own);
}

/** Tells every follower of a record; what a follower throws is its own, never the writer's. */
export function tellFollowers(listeners: Set<RecordListener>, record: InvocationRecord): void {
  for (const listener of listeners) {
    try {
      listener(record);
    } catch {
      // Dropped: a follower's failure is its own.
    }
  }
}

/** Console output kept per record, in characters. */
const MAX_RECORD_LOG_CHARS = 8 * 1024;

export class InvocationRecords implements RecordLog {
  private readonly ring: (InvocationRecord | undefined)[];
  private next = 0;
  private readonly byId = new Map<string, InvocationRecord>();
  private readonly listeners = new Set<RecordListener>();

  constructor(readonly max: number) {
    this.ring = new Array<InvocationRecord | undefined>(max);
  }

  add(record: InvocationRecord): void {
    if (this.max === 0) return;
    let chars = 0;
    const kept: string[] = [];
    for (const line of record.logs) {
      chars += line.length;
      if (chars > MAX_RECORD_LOG_CHARS) {
        record.logsTruncated = true;
        break;
      }
      kept.push(line);
    }
    record.logs = kept;
    const old = this.ring[this.next];
    if (old && this.byId.get(old.requestId) === old) this.byId.delete(old.requestId);
    this.ring[this.next] = record;
    this.byId.set(record.requestId, record);
    this.next = (this.next + 1) % this.max;
    tellFollowers(this.listeners, record);
  }

  follow(listener: RecordListener): () => void {
    return addFollower(this.listeners, listener);
  }

  get(requestId: string): InvocationRecord | undefined {
    return this.byId.get(requestId);
  }

  /** Newest first, filtered. */
  query({ fn, status, limit = 100 }: RecordQuery = {}): InvocationRecord[] {
    const matchStatus = statusMatcher(status);
    const out: InvocationRecord[] = [];
    for (let i = 1; i <= this.max && out.length < limit; i++) {
      const record = this.ring[(this.next - i + this.max) % this.max];
      if (!record) break;
      if (fn !== undefined && record.function !== fn) continue;
      if (!matchStatus(record.status)) continue;
      out.push(record);
    }
    return out;
  }
}

/**
 * `new Date(ms).toISOString()`, for the `start` of every record: the text up to the second is
 * made once per second and reused, the milliseconds appended (~0.05 µs a call instead of ~0.7 µs
 * on the 2-core bench machine). One per server (it remembers the last second).
 */
export class IsoTime {
  private second = NaN;
  private prefix = '';

  format(ms: number): string {
    // Out of Date's range (or NaN): Date's own answer, a RangeError.
    if (!(Math.abs(ms) <= 8.64e15)) return new Date(ms).toISOString();
    // Truncated toward zero, as Date does (TimeClip).
    const whole = Math.trunc(ms);
    const second = Math.floor(whole / 1000);
    if (second !== this.second) {
      // `YYYY-MM-DDTHH:MM:SS.000Z` (or a 6-digit year): keep up to the dot.
      this.prefix = new Date(second * 1000).toISOString().slice(0, -4);
      this.second = second;
    }
    const millis = whole - second * 1000;
    return `${this.prefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
  }
}

/** A RecordQuery status (`504`, `5xx`, empty for any) as a test. */
export function statusMatcher(status: string | undefined): (value: number) => boolean {
  if (status === undefined || status === '') return () => true;
  const cls = /^([1-5])xx$/i.exec(status);
  if (cls) return (value) => Math.floor(value / 100) === Number(cls[1]);
  const exact = Number(status);
  return (value) => value === exact;
}
