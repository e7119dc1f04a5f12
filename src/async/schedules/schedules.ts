/**
 * Schedules (docs/spec.md §9): which functions have a `config.schedule`, kept in step with the function
 * store, and a ticker that fires them — croner's timers on one machine (cron-ticker.ts), BullMQ's
 * job schedulers with Redis (bullmq-ticker.ts), so that each tick fires once however many
 * replicas run. A tick becomes an async invocation (the tick handler the server gives).
 *
 * At start every function whose source mentions `schedule` is loaded (its config is only known
 * once a worker has loaded it); after that, the store tells of every file that appears, changes or
 * goes, and of every deploy and delete through the admin API, and that function's schedules are
 * set again at once. A tick that could not fire (the server was down, or the queue refused it) is
 * a miss: counted, never replayed.
 */
import { FunctionNotFoundError } from '../../errors';
import { cronOf } from '../../functions/function-config';
import type { ChangeListener, FunctionVersion } from '../../functions/function-version';
import type { Logger } from '../../observe/logger';

/** One cron expression of one function. */
export interface ScheduleEntry {
  function: string;
  schedule: string;
  /** IANA zone, `UTC` by default. */
  timezone: string;
  /** `config.overlap` (docs/spec.md §9); `skip` when absent. */
  overlap?: 'skip' | 'allow';
}

/** What `GET /_/schedules` lists (its JSON shape: ScheduleListing in http/admin/api.ts). */
export interface ScheduleListing extends ScheduleEntry {
  overlap: 'skip' | 'allow';
  /** The next tick, ISO; absent when the expression never fires again. */
  next?: string;
  /** Ticks this server skipped since it started (overlap `skip`), and the last one's time. */
  skipped: number;
  lastSkipped?: string;
}

/**
 * Fires a tick: `scheduledTime` is the tick's own time (not when it ran), `tickId` names the tick
 * alone (the same on every replica), so that it becomes one invocation however often it is told.
 */
export type TickHandler = (
  entry: ScheduleEntry,
  scheduledTime: Date,
  tickId: string,
) => Promise<void>;

/** What fires the ticks. */
export interface Ticker {
  /** Makes `fn`'s schedules exactly `entries` (none: removes them). */
  set(fn: string, entries: ScheduleEntry[]): Promise<void>;
  /** Removes the schedules of every function not in `keep` (shared tickers, at start). */
  prune(keep: ReadonlySet<string>): Promise<void>;
  /**
   * Puts back whatever of `entries` the ticker's store lost (a shared ticker whose Redis was
   * flushed or failed over to an empty node); returns how many it put back. Local tickers lose
   * nothing.
   */
  reconcile(entries: ScheduleEntry[]): Promise<number>;
  close(): Promise<void>;
}

/** The function store, as schedules read it. */
export interface ScheduleSource {
  versions(): Promise<FunctionVersion[]>;
  peek(name: string): Promise<FunctionVersion>;
  get(name: string): Promise<FunctionVersion>;
  subscribe(listener: ChangeListener): () => void;
}

/** A file that names no `schedule` cannot have one: it is not loaded to find out. */
const MAY_SCHEDULE = /schedule/;
/** Changes arriving within this are handled together (an editor's save is several events). */
const SETTLE_MS = 50;
/** A function that could not be loaded (timeout, crash) is looked at again this much later. */
const RETRY_MS = 1000;
/** A full look, in case a change went unreported (file systems that do not tell). */
const RESCAN_MS = 30_000;
/** How often the ticker's store is checked against the schedules this server knows (ms). */
export const RECONCILE_MS = 10_000;
/** How long a stop waits for a scan in flight (ms). */
const CLOSE_WAIT_MS = 2_000;

export class Schedules {
  readonly #source: ScheduleSource;
  readonly #ticker: Ticker;
  readonly #logger: Logger;
  readonly #entries = new Map<string, ScheduleEntry[]>();
  /** Names to look at again; `undefined`: everything. */
  readonly #pending = new Set<string | undefined>();
  #timer?: NodeJS.Timeout;
  #rescan?: NodeJS.Timeout;
  #reconciler?: NodeJS.Timeout;
  readonly #reconcileMs: number;
  /** Skipped ticks by `<function>|<schedule>`: how many, and the last one's time. */
  readonly #skips = new Map<string, { count: number; last: string }>();
  #unsubscribe?: () => void;
  /** One look at a time, in order. */
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  /** Names whose load failed, to look at again soon. */
  readonly #retrying = new Set<string>();

  constructor(
    source: ScheduleSource,
    ticker: Ticker,
    logger: Logger,
    options: { reconcileMs?: number } = {},
  ) {
    this.#source = source;
    this.#ticker = ticker;
    this.#logger = logger;
    this.#reconcileMs = options.reconcileMs ?? RECONCILE_MS;
  }

  /** Counts a tick skipped by `config.overlap: "skip"`, for the listing. */
  noteSkipped(entry: ScheduleEntry, scheduledTime: Date): void {
    const key = `${entry.function}|${entry.schedule}`;
    const count = (this.#skips.get(key)?.count ?? 0) + 1;
    this.#skips.set(key, { count, last: scheduledTime.toISOString() });
  }

  /**
   * Puts back what the ticker's store lost of the schedules this server knows (docs/spec.md §9:
   * the server knows its schedules). Runs every RECONCILE_MS, in turn with every other change.
   */
  reconcile(): Promise<void> {
    return this.#run(async () => {
      const all = [...this.#entries.values()].flat();
      if (all.length === 0) return;
      const restored = await this.#ticker.reconcile(all);
      if (restored > 0) {
        this.#logger.warn('schedules: the ticker had lost some; put back', { restored });
      }
    });
  }

  /** Finds every schedule, sets them, removes stale shared ones, then follows the store. */
  async start(): Promise<void> {
    this.#unsubscribe = this.#source.subscribe((name) => this.#changed(name));
    await this.#run(async () => {
      const names = await this.#scan();
      await this.#ticker.prune(names);
    });
    if (this.#closed) return;
    this.#rescan = setInterval(() => this.#changed(undefined), RESCAN_MS);
    this.#rescan.unref();
    this.#reconciler = setInterval(() => void this.reconcile(), this.#reconcileMs);
    this.#reconciler.unref();
  }

  /** Every schedule with its next tick, by function. */
  list(): ScheduleListing[] {
    const out: ScheduleListing[] = [];
    for (const name of [...this.#entries.keys()].sort()) {
      for (const entry of this.#entries.get(name) ?? []) {
        const cron = cronOf(entry.schedule, entry.timezone);
        const next = cron.nextRun();
        const skips = this.#skips.get(`${entry.function}|${entry.schedule}`);
        out.push({
          ...entry,
          overlap: entry.overlap ?? 'skip',
          ...(next ? { next: next.toISOString() } : {}),
          skipped: skips?.count ?? 0,
          ...(skips ? { lastSkipped: skips.last } : {}),
        });
      }
    }
    return out;
  }

  #changed(name: string | undefined): void {
    if (this.#closed) return;
    this.#pending.add(name);
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      const names = [...this.#pending];
      this.#pending.clear();
      void this.#run(async () => {
        if (names.includes(undefined)) {
          await this.#scan();
          return;
        }
        for (const changed of names as string[]) {
          // A folder's change concerns every scheduled function under it.
          const under = [...this.#entries.keys()].filter((n) => n.startsWith(`${changed}/`));
          const exists = await this.#refresh(changed);
          for (const n of under) await this.#refresh(n);
          // Not a function: perhaps a folder that appeared, with functions in it.
          if (!exists && under.length === 0) await this.#scan();
        }
      });
    }, SETTLE_MS);
  }

  /** Looks at `name` again after RETRY_MS (once, however often asked meanwhile). */
  #later(name: string): void {
    if (this.#retrying.has(name) || this.#closed) return;
    this.#retrying.add(name);
    const timer = setTimeout(() => {
      this.#retrying.delete(name);
      this.#changed(name);
    }, RETRY_MS);
    timer.unref();
  }

  #run(work: () => Promise<void>): Promise<void> {
    this.#chain = this.#chain
      .then(() => (this.#closed ? undefined : work()))
      .catch((err: unknown) => this.#logger.error('schedules: cannot update', { err }));
    return this.#chain;
  }

  /** Looks at every function; returns the names of those with schedules. */
  async #scan(): Promise<Set<string>> {
    const versions = await this.#source.versions();
    const seen = new Set(versions.map((v) => v.name));
    for (const fn of versions) {
      if (MAY_SCHEDULE.test(fn.source) || this.#entries.has(fn.name)) await this.#refresh(fn.name);
    }
    for (const name of [...this.#entries.keys()]) if (!seen.has(name)) await this.#apply(name, []);
    return new Set(this.#entries.keys());
  }

  /** Sets one function's schedules from its current version; false when it does not exist. */
  async #refresh(name: string): Promise<boolean> {
    let entries: ScheduleEntry[] = [];
    try {
      const peeked = await this.#source.peek(name);
      if (MAY_SCHEDULE.test(peeked.source) || this.#entries.has(name)) {
        const fn = await this.#source.get(name);
        if (!fn.compileError) {
          const timezone = fn.config.timezone ?? 'UTC';
          const overlap = fn.config.overlap ?? 'skip';
          entries = (fn.config.schedule ?? []).map((schedule) => ({
            function: name,
            schedule,
            timezone,
            overlap,
          }));
        }
      }
    } catch (err) {
      if (!(err instanceof FunctionNotFoundError)) {
        // Could not be loaded now (a timeout, a crash, a busy pool): its schedules stay as they
        // were, and it is looked at again in a second.
        this.#logger.warn('schedules: cannot load a function; trying again', { fn: name, err });
        this.#later(name);
        return true;
      }
      await this.#apply(name, []);
      return false;
    }
    await this.#apply(name, entries);
    return true;
  }

  /** Sets a function's schedules; when the ticker fails (Redis away), tries again soon. */
  async #apply(name: string, entries: ScheduleEntry[]): Promise<void> {
    try {
      await this.#set(name, entries);
    } catch (err) {
      this.#logger.warn('schedules: cannot set; trying again', { fn: name, err });
      this.#later(name);
    }
  }

  async #set(name: string, entries: ScheduleEntry[]): Promise<void> {
    const before = this.#entries.get(name) ?? [];
    const same =
      before.length === entries.length &&
      before.every(
        (e, i) =>
          e.schedule === entries[i].schedule &&
          e.timezone === entries[i].timezone &&
          e.overlap === entries[i].overlap,
      );
    if (same) return;
    await this.#ticker.set(name, entries);
    if (entries.length === 0) this.#entries.delete(name);
    else this.#entries.set(name, entries);
    this.#logger.info('schedules set', {
      fn: name,
      schedules: entries.map((e) => e.schedule),
      timezone: entries[0]?.timezone,
    });
  }

  /** Stops following the store and firing ticks (shared schedules stay for other replicas). */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#rescan);
    clearInterval(this.#reconciler);
    this.#unsubscribe?.();
    // A scan in flight waits for Redis while it is away (BullMQ waits for its connection): give
    // it a moment, never the whole stop.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)));
    await Promise.race([this.#chain.catch(() => undefined), bound]);
    clearTimeout(timer);
    await this.#ticker.close();
  }
}
