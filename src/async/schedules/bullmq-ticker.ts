/**
 * Ticks shared by every replica (REDIS_URL): one BullMQ job scheduler per cron expression, id
 * `<function>|<zone>|<expression>`, on the queue `ticks`. BullMQ keeps one delayed job per
 * scheduler for its next tick and adds the one after it when a replica takes it, so each tick
 * is taken by one replica, once. Taking a tick only queues its invocation (async queue), so a
 * busy queue never delays the ticks themselves. Next times come from croner (`repeatStrategy`),
 * so both tickers read an expression alike.
 *
 * Redis may lose the schedulers (FLUSHALL, a failover to an empty node): every replica checks
 * them against the schedules it knows every few seconds and puts back the missing ones
 * (reconcile), so the ticks go on.
 *
 * A tick taken after its next tick's time has passed (by more than LATE_MS: every replica was
 * down, or Redis was) is a miss: counted, not run, so a server that comes back does not replay
 * what it missed.
 */
import { Queue, Worker } from 'bullmq';
import type { Job, RepeatOptions } from 'bullmq';
import { cronOf } from '../../functions/function-config';
import type { Logger } from '../../observe/logger';
import { BULL_PREFIX, closeBounded } from '../queue/bullmq-queue';
import type { ScheduleEntry, TickHandler, Ticker } from './schedules';

/** The next tick after `millis` by croner. */
function cronStrategy(millis: number, opts: RepeatOptions): number | undefined {
  return cronOf(opts.pattern ?? '', opts.tz)
    .nextRun(new Date(millis))
    ?.getTime();
}

/** How late past its next tick a tick may still run (a slow replica is not a down one). */
const LATE_MS = 2000;

const idOf = (entry: ScheduleEntry) => `${entry.function}|${entry.timezone}|${entry.schedule}`;

export interface BullTickerOptions {
  redisUrl: string;
  tick: TickHandler;
  /** Told of a tick that came too late to run. */
  miss(entry: ScheduleEntry): void;
  logger?: Logger;
}

export class BullTicker implements Ticker {
  readonly #queue: Queue<ScheduleEntry>;
  readonly #worker: Worker<ScheduleEntry>;
  readonly #options: BullTickerOptions;
  #closed?: Promise<void>;

  constructor(options: BullTickerOptions) {
    this.#options = options;
    const settings = { repeatStrategy: cronStrategy };
    this.#queue = new Queue<ScheduleEntry>('ticks', {
      connection: { url: options.redisUrl, enableOfflineQueue: false },
      prefix: BULL_PREFIX,
      settings,
      streams: { events: { maxLen: 100 } },
    });
    this.#queue.on('error', (err) => options.logger?.warn('schedules (redis)', { err }));
    this.#worker = new Worker<ScheduleEntry>('ticks', (job) => this.#take(job), {
      connection: { url: options.redisUrl, maxRetriesPerRequest: null },
      prefix: BULL_PREFIX,
      concurrency: 8,
      settings,
      removeOnComplete: { count: 0 },
      removeOnFail: { count: 0 },
      drainDelay: 1,
    });
    this.#worker.on('error', (err) => options.logger?.warn('schedule ticks (redis)', { err }));
  }

  async #take(job: Job<ScheduleEntry>): Promise<void> {
    const entry = job.data;
    // This iteration's own time (BullMQ keeps it as the job's prevMillis).
    const scheduled = job.opts.prevMillis ?? job.timestamp;
    const next = cronOf(entry.schedule, entry.timezone).nextRun(new Date(scheduled));
    if (next !== null && next.getTime() + LATE_MS < Date.now()) {
      this.#options.miss(entry);
      return;
    }
    await this.#options.tick(entry, new Date(scheduled), String(job.id));
  }

  /** The schedulers in Redis, by id, with their function. */
  async #existing(): Promise<Map<string, string | undefined>> {
    const all = await this.#queue.getJobSchedulers(0, -1);
    return new Map(all.map((s) => [s.key, s.template?.data?.function]));
  }

  async set(fn: string, entries: ScheduleEntry[]): Promise<void> {
    const existing = await this.#existing();
    const wanted = new Map(entries.map((e) => [idOf(e), e]));
    for (const [id, owner] of existing) {
      if (owner === fn && !wanted.has(id)) await this.#queue.removeJobScheduler(id);
    }
    for (const [id, entry] of wanted) {
      // Already there (another replica, or before a restart): its next tick stays as it is.
      if (existing.has(id)) continue;
      await this.#upsert(id, entry);
    }
  }

  /**
   * Adds the job scheduler of every entry Redis no longer holds (FLUSHALL, a failover to an empty
   * node); returns how many. A scheduler that exists keeps its next tick.
   */
  async reconcile(entries: ScheduleEntry[]): Promise<number> {
    const existing = await this.#existing();
    let restored = 0;
    for (const entry of entries) {
      const id = idOf(entry);
      if (existing.has(id)) continue;
      await this.#upsert(id, entry);
      restored++;
    }
    return restored;
  }

  #upsert(id: string, entry: ScheduleEntry): Promise<unknown> {
    return this.#queue.upsertJobScheduler(
      id,
      { pattern: entry.schedule, tz: entry.timezone },
      { name: 'tick', data: entry, opts: { removeOnComplete: true, removeOnFail: true } },
    );
  }

  async prune(keep: ReadonlySet<string>): Promise<void> {
    for (const [id, owner] of await this.#existing()) {
      if (owner === undefined || !keep.has(owner)) await this.#queue.removeJobScheduler(id);
    }
  }

  /** Stops taking ticks here; the schedulers stay in Redis for the other replicas. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await closeBounded(this.#worker);
      await closeBounded(this.#queue);
    })();
    return this.#closed;
  }
}
