/**
 * Invocation records shared by every replica through Redis (REDIS_URL, docs/spec.md §10): the last
 * RECORDS_MAX invocations of the whole cluster, readable by id and by filter from any replica.
 *
 * A ring of RECORDS_MAX slots, written by one Lua script per batch, so it stays bounded however
 * many replicas write:
 *
 * | key | type | holds |
 * |-----|------|-------|
 * | `kf:rec:seq` | string | records written so far; record n goes to slot n mod RECORDS_MAX |
 * | `kf:rec:ring` | hash | slot → record (JSON) |
 * | `kf:rec:ids` | hash | request id → its latest slot (dropped when the slot is overwritten) |
 * | `kf:rec:slots` | hash | slot → the request id in it |
 *
 * Records are written after the response, batched per event-loop turn: an invocation never
 * waits for Redis. Each replica also keeps its own ring (records.ts): a record looked up by id
 * that Redis does not have yet (or while Redis is down) is answered from it. While Redis is
 * down, records wait in a bounded buffer (the oldest are dropped past it, counted in the log)
 * and are written when it is back; a list needs Redis and fails with KV_UNAVAILABLE.
 *
 * Following (`follow`, the admin stream of docs/http-api.md): while anyone follows, one tail per
 * replica reads `kf:rec:seq` every TAIL_MS and the slots written since, so a follower sees every
 * replica's records, each within about TAIL_MS of its write. While Redis is away nothing is seen;
 * the records written when it is back are then (up to RECORDS_MAX of them). The tail starts at
 * the sequence number it first reads: records written before it are not followed.
 */
import type Redis from 'ioredis';
import type { Logger } from './logger';
import type { InvocationRecord, RecordListener, RecordLog, RecordQuery } from './records';
import { InvocationRecords, addFollower, statusMatcher, tellFollowers } from './records';
import { closeRedisClient, createRedisClient, unavailable } from '../storage/redis';

const SEQ = 'kf:rec:seq';
const RING = 'kf:rec:ring';
const IDS = 'kf:rec:ids';
const SLOTS = 'kf:rec:slots';

/** Records waiting for Redis at most; past it the oldest are dropped. */
const MAX_PENDING = 10_000;
/** Records written per script call at most. */
const BATCH = 200;
/** How long to wait before writing again after a failure, in ms. */
const RETRY_MS = 1000;
/** Slots read per round trip when listing. */
const PAGE = 250;
/** How often a tail reads the sequence number while anyone follows, in ms. */
export const TAIL_MS = 200;

/**
 * KEYS: seq, ring, ids, slots. ARGV: ring size, then request id and record JSON pairs.
 * Returns the new sequence number.
 */
const ADD = `
local size = tonumber(ARGV[1])
local seq = 0
for i = 2, #ARGV, 2 do
  seq = redis.call('INCR', KEYS[1])
  local slot = tostring(seq % size)
  local old = redis.call('HGET', KEYS[4], slot)
  if old and redis.call('HGET', KEYS[3], old) == slot then redis.call('HDEL', KEYS[3], old) end
  redis.call('HSET', KEYS[2], slot, ARGV[i + 1])
  redis.call('HSET', KEYS[4], slot, ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], slot)
end
return seq
`;

export interface SharedRecordsOptions {
  redisUrl: string;
  /** This replica's own ring (and RECORDS_MAX, its size and the cluster's). */
  local: InvocationRecords;
  logger: Logger;
}

export class SharedRecords implements RecordLog {
  readonly max: number;
  readonly #local: InvocationRecords;
  readonly #client: Redis;
  readonly #logger: Logger;
  #pending: InvocationRecord[] = [];
  #scheduled = false;
  #writing = false;
  #dropped = 0;
  #retryAt = 0;
  #closed = false;
  readonly #listeners = new Set<RecordListener>();
  /** Whether the tail loop runs (#tail). */
  #tailing = false;
  /** The last sequence number the tail has read up to; undefined until it first reads one. */
  #tailSeq: number | undefined;

  constructor(options: SharedRecordsOptions) {
    this.#local = options.local;
    this.max = options.local.max;
    this.#logger = options.logger;
    this.#client = createRedisClient(options.redisUrl, options.logger);
    this.#client.defineCommand('faasRecords', { numberOfKeys: 4, lua: ADD });
  }

  add(record: InvocationRecord): void {
    if (this.max === 0) return;
    this.#local.add(record);
    this.#pending.push(record);
    if (this.#pending.length > MAX_PENDING) {
      this.#dropped += this.#pending.length - MAX_PENDING;
      this.#pending.splice(0, this.#pending.length - MAX_PENDING);
    }
    this.#schedule();
  }

  #schedule(delayMs = 0): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    const run = () => {
      this.#scheduled = false;
      void this.#flush();
    };
    if (delayMs > 0) setTimeout(run, delayMs).unref();
    else setImmediate(run);
  }

  /** Writes what is pending, one batch per call, until nothing is (or Redis fails). */
  async #flush(): Promise<void> {
    if (this.#writing || this.#pending.length === 0) return;
    const wait = this.#retryAt - Date.now();
    if (wait > 0) return this.#schedule(wait);
    this.#writing = true;
    try {
      while (this.#pending.length > 0 && !this.#closed) {
        const batch = this.#pending.slice(0, BATCH);
        const args: string[] = [String(this.max)];
        for (const record of batch) args.push(record.requestId, JSON.stringify(record));
        await (this.#client as unknown as RecordScripts).faasRecords(
          SEQ,
          RING,
          IDS,
          SLOTS,
          ...args,
        );
        this.#pending.splice(0, batch.length);
        if (this.#dropped > 0) {
          this.#logger.warn('invocation records were dropped while Redis was away', {
            dropped: this.#dropped,
          });
          this.#dropped = 0;
        }
      }
    } catch {
      // Redis is away (its client logs that once): try again in a while.
      this.#retryAt = Date.now() + RETRY_MS;
    } finally {
      this.#writing = false;
    }
    if (this.#pending.length > 0) this.#schedule(Math.max(0, this.#retryAt - Date.now()));
  }

  /**
   * The latest record of `requestId` in the cluster; this replica's own when Redis does not have
   * it (not written yet) or does not answer.
   */
  async get(requestId: string): Promise<InvocationRecord | undefined> {
    try {
      const slot = await this.#client.hget(IDS, requestId);
      if (slot !== null) {
        const json = await this.#client.hget(RING, slot);
        const record = json === null ? undefined : parse(json);
        if (record?.requestId === requestId) return record;
      }
    } catch {
      // fall back to this replica's ring
    }
    return this.#local.get(requestId);
  }

  /**
   * The cluster's records, newest first, filtered (see records.ts RecordQuery).
   * @throws KvUnavailableError when Redis does not answer.
   */
  async query({ fn, status, limit = 100 }: RecordQuery = {}): Promise<InvocationRecord[]> {
    const matchStatus = statusMatcher(status);
    const out: InvocationRecord[] = [];
    try {
      const seq = Number((await this.#client.get(SEQ)) ?? 0);
      const oldest = Math.max(1, seq - this.max + 1);
      for (let top = seq; top >= oldest && out.length < limit; top -= PAGE) {
        const slots: string[] = [];
        for (let n = top; n > top - PAGE && n >= oldest; n--) slots.push(String(n % this.max));
        const values = await this.#client.hmget(RING, ...slots);
        for (const json of values) {
          const record = json === null ? undefined : parse(json);
          if (!record) continue;
          if (fn !== undefined && record.function !== fn) continue;
          if (!matchStatus(record.status)) continue;
          out.push(record);
          if (out.length >= limit) break;
        }
      }
    } catch (err) {
      throw unavailable(err);
    }
    return out;
  }

  /**
   * Follows the cluster's records (see the header): `listener` is told of each record any
   * replica writes to Redis from about now on, oldest first.
   */
  follow(listener: RecordListener): () => void {
    const stop = addFollower(this.#listeners, listener);
    void this.#tail();
    return stop;
  }

  /** Reads the tail every TAIL_MS while anyone follows; one loop at a time. */
  async #tail(): Promise<void> {
    if (this.#tailing) return;
    this.#tailing = true;
    try {
      while (this.#listeners.size > 0 && !this.#closed) {
        try {
          await this.#readTail();
        } catch {
          // Redis is away (its client logs that once): read again later.
        }
        await new Promise((resolve) => setTimeout(resolve, TAIL_MS).unref());
      }
    } finally {
      this.#tailing = false;
      this.#tailSeq = undefined;
    }
  }

  /** Tells the followers of the records written since the last read. */
  async #readTail(): Promise<void> {
    const seq = Number((await this.#client.get(SEQ)) ?? 0);
    const last = this.#tailSeq;
    this.#tailSeq = seq;
    // The first read only marks where following starts; a lower number: Redis lost its data.
    if (last === undefined || seq <= last) return;
    const first = Math.max(last + 1, seq - this.max + 1);
    for (let from = first; from <= seq; from += PAGE) {
      const slots: string[] = [];
      for (let n = from; n < from + PAGE && n <= seq; n++) slots.push(String(n % this.max));
      const values = await this.#client.hmget(RING, ...slots);
      for (const json of values) {
        const record = json === null ? undefined : parse(json);
        if (record) tellFollowers(this.#listeners, record);
      }
    }
  }

  /** Writes what is pending (for at most `ms`), then closes the connection. */
  async close(ms = 1000): Promise<void> {
    const until = Date.now() + ms;
    this.#retryAt = 0;
    while ((this.#pending.length > 0 || this.#writing) && Date.now() < until) {
      if (!this.#writing) await this.#flush();
      else await new Promise((resolve) => setTimeout(resolve, 10));
      if (this.#retryAt > Date.now()) break;
    }
    this.#closed = true;
    await closeRedisClient(this.#client);
  }
}

interface RecordScripts {
  faasRecords(...args: string[]): Promise<number>;
}

function parse(json: string): InvocationRecord | undefined {
  try {
    return JSON.parse(json) as InvocationRecord;
  } catch {
    return undefined;
  }
}

/** A server's records: its own, and where records go and are read from (`log`). */
export interface ServerRecords {
  /** This replica's records. */
  local: InvocationRecords;
  /** `local`, or with REDIS_URL the cluster's (shared through Redis). */
  log: RecordLog;
  close(): Promise<void>;
}

/** Builds a server's records: RECORDS_MAX in memory, shared through REDIS_URL when set. */
export function serverRecords(options: {
  recordsMax: number;
  redisUrl?: string;
  logger: Logger;
}): ServerRecords {
  const local = new InvocationRecords(options.recordsMax);
  const { redisUrl, logger } = options;
  const shared = redisUrl ? new SharedRecords({ redisUrl, local, logger }) : undefined;
  return { local, log: shared ?? local, close: async () => shared?.close() };
}
