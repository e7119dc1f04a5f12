/**
 * The async side of the server (docs/spec.md §9), built as one part: the queue of invocations
 * (SQLite in DATA_DIR, or BullMQ on REDIS_URL), the attempts that run them (at most
 * ASYNC_CONCURRENCY), the callbacks that deliver their results, and the schedules that enqueue
 * their ticks (croner in one process, BullMQ job schedulers across replicas).
 *
 *   open()  → the queue exists: `Prefer: respond-async` may enqueue
 *   start() → attempts, callbacks and schedules run (once the egress policy is known)
 *   stop()  → no new ticks or attempts; running attempts finish within the pool's grace period
 *   close() → everything released
 */
import { KvUnavailableError } from '../errors';
import type { FunctionStore } from '../functions/function-store';
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import type { RecordLog } from '../observe/records';
import type { SandboxPool } from '../pool/sandbox-pool';
import type { EgressPolicy } from '../services/egress';
import type { SecretValues } from '../invocation/invoke';
import { asyncWorker, tickHandler } from './async-runner';
import { CallbackSender } from './callbacks';
import { createAsyncQueue } from './queue';
import type { AsyncQueue } from './queue';
import { BullTicker } from './schedules/bullmq-ticker';
import { CronTicker } from './schedules/cron-ticker';
import { Schedules } from './schedules/schedules';
import type { ScheduleListing } from './schedules/schedules';

export interface AsyncWorkOptions {
  dataDir: string;
  redisUrl?: string;
  /** MAX_ASYNC_QUEUE. */
  maxAsyncQueue: number;
  /** ASYNC_CONCURRENCY. */
  asyncConcurrency: number;
  /** CALLBACK_PER_ORIGIN. */
  callbacksPerOrigin: number;
  /** MAX_RESULT_BYTES and FETCH_MAX_BYTES: a callback body may be as large as either. */
  maxResultBytes: number;
  fetchMaxBytes: number;
  store: FunctionStore;
  pool: SandboxPool;
  secrets: SecretValues;
  records: RecordLog;
  metrics: Metrics;
  logger: Logger;
}

export class AsyncWork {
  readonly #options: AsyncWorkOptions;
  #queue?: AsyncQueue;
  #callbacks?: CallbackSender;
  #schedules?: Schedules;
  #stopped?: Promise<unknown>;

  constructor(options: AsyncWorkOptions) {
    this.#options = options;
  }

  /** The queue, once open. @throws KvUnavailableError before open(). */
  get queue(): AsyncQueue {
    if (!this.#queue) throw new KvUnavailableError('the async queue is not open yet');
    return this.#queue;
  }

  /** The queue if it is open (for listings that answer without it). */
  get openQueue(): AsyncQueue | undefined {
    return this.#queue;
  }

  /** Every schedule this server knows, with its state (empty before start()). */
  schedules(): ScheduleListing[] {
    return this.#schedules?.list() ?? [];
  }

  /** Opens the queue. @throws KvUnavailableError when the SQLite file cannot be opened. */
  async open(): Promise<void> {
    const { dataDir, redisUrl, maxAsyncQueue, logger, metrics } = this.#options;
    this.#queue = await createAsyncQueue({ dataDir, redisUrl, maxQueued: maxAsyncQueue, logger });
    metrics.asyncDepth = () => this.queue.depth();
  }

  /**
   * Starts the attempts, the callbacks (under `egress`, as a function's fetch is) and, in the
   * background, the schedules (finding them loads their functions on workers).
   */
  start(egress: EgressPolicy): void {
    const { store, pool, secrets, records, metrics, logger } = this.#options;
    const queue = this.queue;
    const callbacks = new CallbackSender({
      policy: egress,
      maxBytes: Math.max(this.#options.maxResultBytes, this.#options.fetchMaxBytes),
      logger,
      record: (id, callback) => queue.setCallback(id, callback),
      observe: (outcome) => metrics.callback(outcome),
      perOrigin: this.#options.callbacksPerOrigin,
    });
    this.#callbacks = callbacks;
    queue.start(
      asyncWorker({
        store,
        pool,
        secrets,
        records,
        metrics,
        logger,
        callbacks,
        concurrency: this.#options.asyncConcurrency,
      }),
    );
    const tick = tickHandler({
      store,
      queue: () => this.queue,
      metrics,
      logger,
      records,
      skipped: ({ entry, scheduledTime }) => this.#schedules?.noteSkipped(entry, scheduledTime),
    });
    const { redisUrl } = this.#options;
    const ticker = redisUrl
      ? new BullTicker({
          redisUrl,
          tick,
          miss: (entry) => metrics.scheduleMiss(entry.function),
          logger,
        })
      : new CronTicker(tick);
    this.#schedules = new Schedules(store, ticker, logger);
    void this.#schedules.start();
  }

  /**
   * Stops new ticks and attempts; resolves once the running attempts have ended (the pool's
   * close ends what outlives the grace period, and those attempts are released, queued again).
   */
  stop(): Promise<unknown> {
    this.#stopped ??= Promise.all([this.#schedules?.close(), this.#queue?.stop()]);
    return this.#stopped;
  }

  /** Releases the callbacks and the queue; call after stop() has resolved. */
  async close(): Promise<void> {
    this.#callbacks?.close();
    await this.#queue?.close();
  }
}
