/**
 * The async queue on Redis (REDIS_URL), shared by every replica. BullMQ delivers: one job per
 * invocation (`r.<id>`), taken by one replica at a time under a lock it renews, delayed for a
 * retry with `moveToDelayed`, moved back to waiting by any replica's stalled-job check when the
 * replica that held it died (at least once), and removed when done. The state records that
 * `GET /_/invocations` reads are ours, beside BullMQ's keys, all in one hash slot:
 *
 * | key                          | type       | holds                                           |
 * |------------------------------|------------|-------------------------------------------------|
 * | `kf:{async}:inv:<id>`        | string     | the state record (JSON); expires RETENTION_MS after it finished |
 * | `kf:{async}:s:<status>`      | sorted set | ids by the time they entered that status (lists, MAX_ASYNC_QUEUE) |
 * | `kf:{async}:job:<id>`        | string     | the job's data, from the record's creation until BullMQ holds the job |
 * | `kf:bull:async:*`            | BullMQ     | the jobs, with the event                        |
 *
 * Queuing is two steps, our script (record, sets, job data) then BullMQ's `add`, and either may
 * time out on the client while Redis still runs it (a stalled Redis, a slow network). So a record
 * may exist without its job; it never stays so (docs/spec.md §9 "accepted means queued"): the
 * same request again (same X-Request-Id) adds the job if it is missing (BullMQ adds a job id once),
 * and the sweeper re-adds the job of any record queued for REPAIR_AFTER_MS without one, from the
 * job data the script kept (or marks it failed when even that is gone).
 *
 * Redis must run with `maxmemory-policy noeviction`: an evicted job or record is an invocation
 * lost without a trace (BullMQ warns at start when the policy is another).
 */
import { DelayedError, Queue, Worker } from 'bullmq';
import type { Job } from 'bullmq';
import type Redis from 'ioredis';
import { OverloadedError } from '../../errors';
import type { Logger } from '../../observe/logger';
import {
  closeRedisClient,
  createRedisClient,
  firstConnection,
  unavailable,
} from '../../storage/redis';
import {
  FULL_RETRY_AFTER_S,
  RETENTION_MS,
  afterStep,
  nextStep,
  queuedState,
  refusal,
} from './async-queue';
import type {
  AsyncJob,
  AsyncQueue,
  AsyncStatus,
  AttemptOutcome,
  CallbackState,
  InvocationState,
  ListQuery,
  NewInvocation,
  QueueWorker,
} from './async-queue';

/** The prefix of BullMQ's keys (queues `async`, and `ticks` of bullmq-ticker.ts). */
export const BULL_PREFIX = 'kf:bull';
const KEY = 'kf:{async}';
const STATUS_SETS = ['queued', 'running', 'succeeded', 'failed'].map((s) => `${KEY}:s:${s}`);
const setOf = (status: AsyncStatus) => `${KEY}:s:${status}`;
const recordOf = (id: string) => `${KEY}:inv:${id}`;
const dataOf = (id: string) => `${KEY}:job:${id}`;

/**
 * Created, or already known (its record), or refused (the queue is full). A new record's job
 * data is kept beside it (KEYS[4], expiring with ARGV[6] ms) until its job is known to exist.
 */
const ENQUEUE = `
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local depth = redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])
if depth >= tonumber(ARGV[4]) then return {2, tostring(depth)} end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
return {1, ''}
`;

/** Writes a record and moves its id into the set of its status (KEYS[6]). */
const MOVE = `
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
for i = 2, 5 do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
return 1
`;

type QueueClient = Redis & {
  faasEnqueue(...args: (string | number)[]): Promise<[number, string]>;
  faasMove(...args: (string | number)[]): Promise<number>;
};

type Data = Omit<AsyncJob, 'attempt'>;

export interface BullQueueOptions {
  redisUrl: string;
  maxQueued: number;
  logger?: Logger;
  /** The first retry's delay (default 1 s; doubled for each retry after it). */
  retryBaseMs?: number;
  /** How long a record may be queued without its job before it is repaired (REPAIR_AFTER_MS). */
  repairAfterMs?: number;
  /** How often the sweeper runs (SWEEP_INTERVAL_MS). */
  sweepIntervalMs?: number;
}

/** Job ids of BullMQ may not look like integers; request ids may. */
const jobIdOf = (id: string) => `r.${id}`;

/**
 * How long a record may be queued without its job before the sweeper repairs it (ms): far longer
 * than the two steps of an enqueue take, so an enqueue still under way is never raced.
 */
export const REPAIR_AFTER_MS = 30_000;

/** How often the sweeper runs (ms). */
const SWEEP_INTERVAL_MS = 15_000;

/** How long a closed invocation's job data may linger if its removal failed (ms, over maxAge). */
const DATA_MARGIN_MS = 60 * 60 * 1000;

/** How long a BullMQ queue or worker may take to close (ms) before its connections are dropped. */
const CLOSE_MS = 2_000;

/**
 * Closes a BullMQ Queue or Worker within CLOSE_MS. With Redis away, BullMQ's close waits for a
 * connection that never comes (the server's stop would hang): past the bound, its connections are
 * dropped instead, without waiting any longer.
 */
export async function closeBounded(part: Queue | Worker): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), CLOSE_MS);
  });
  const closed = part.close().then(
    () => false,
    () => false,
  );
  const timedOut = await Promise.race([closed, late]);
  clearTimeout(timer);
  if (!timedOut) return;
  void part.disconnect().catch(() => undefined);
  // A Worker whose close waits for a job that will never finish (its Redis lost the job, or went
  // away) keeps its lock-renewal timer going for ever, and with it the process: close() stops it
  // only after that wait. Its lock manager is stopped here instead (BullMQ 5/6: protected
  // `lockManager`, whose close() only clears the timer and the tracked jobs).
  const locks = (part as unknown as { lockManager?: { close?: () => Promise<void> } }).lockManager;
  void locks?.close?.().catch(() => undefined);
}

export class BullAsyncQueue implements AsyncQueue {
  readonly backend = 'redis' as const;
  readonly #client: QueueClient;
  readonly #queue: Queue<Data>;
  readonly #options: BullQueueOptions;
  #worker?: Worker<Data>;
  #sweeper?: NodeJS.Timeout;
  #closed?: Promise<void>;

  constructor(options: BullQueueOptions) {
    this.#options = options;
    const client = createRedisClient(options.redisUrl, options.logger) as QueueClient;
    client.defineCommand('faasEnqueue', { numberOfKeys: 4, lua: ENQUEUE });
    client.defineCommand('faasMove', { numberOfKeys: 6, lua: MOVE });
    this.#client = client;
    // A producer fails at once while Redis is away (no offline queue): a request gets 503.
    this.#queue = new Queue<Data>('async', {
      connection: { url: options.redisUrl, enableOfflineQueue: false },
      prefix: BULL_PREFIX,
      streams: { events: { maxLen: 1000 } },
    });
    this.#queue.on('error', (err) => options.logger?.warn('async queue (redis)', { err }));
  }

  /** Waits up to 2 s for the first connection (then calls fail until Redis answers). */
  async ready(): Promise<void> {
    await firstConnection(this.#client);
  }

  async enqueue(invocation: NewInvocation): Promise<{ created: boolean; state: InvocationState }> {
    const now = Date.now();
    const state = queuedState(invocation, now);
    const data: Data = { ...invocation, createdAt: now };
    let answer: [number, string];
    try {
      answer = await this.#client.faasEnqueue(
        recordOf(invocation.id),
        setOf('queued'),
        setOf('running'),
        dataOf(invocation.id),
        invocation.id,
        JSON.stringify(state),
        now,
        this.#options.maxQueued,
        JSON.stringify(data),
        invocation.maxAgeSeconds * 1000 + DATA_MARGIN_MS,
      );
    } catch (err) {
      // The script may still run (a stalled Redis answers late): the same request again, or the
      // sweeper, then adds the job. A 503 here means "unknown", never "lost".
      throw unavailable(err);
    }
    const [code, text] = answer;
    if (code === 0) {
      const known = JSON.parse(text) as InvocationState;
      // Known but never started: its job may be missing (the first try's answer was lost after
      // the record was written). Adding it again is safe: BullMQ adds one job per id.
      if (known.status === 'queued' && known.attempts === 0 && known.function === invocation.fn) {
        await this.#addJob({ ...invocation, createdAt: Date.parse(known.createdAt) });
      }
      return { created: false, state: known };
    }
    if (code === 2) {
      const err = new OverloadedError(
        `the async queue is full: ${text} invocations are queued or running (MAX_ASYNC_QUEUE)`,
      );
      err.headers = { 'Retry-After': String(FULL_RETRY_AFTER_S) };
      throw err;
    }
    try {
      await this.#addJob(data);
    } catch (err) {
      // No job: undo the record, so the 503 leaves nothing behind. When even that fails, the
      // record keeps its job data, and a retried request or the sweeper adds the job.
      await this.#client
        .multi()
        .del(recordOf(invocation.id))
        .zrem(setOf('queued'), invocation.id)
        .del(dataOf(invocation.id))
        .exec()
        .catch(() => undefined);
      throw err;
    }
    return { created: true, state };
  }

  /**
   * Adds an invocation's job (a no-op when BullMQ has one under its id), then drops the job data
   * kept for repairs. @throws KvUnavailableError: the record stays, its job data with it, and the
   * sweeper or a retried request adds the job.
   */
  async #addJob(data: Data): Promise<void> {
    try {
      await this.#queue.add('invoke', data, {
        jobId: jobIdOf(data.id),
        removeOnComplete: true,
        removeOnFail: true,
        // Only a failure of the server's own steps (Redis away mid-attempt) reaches BullMQ's
        // retries: the function's failures are retried by nextStep, and our attempt count ends
        // an invocation long before these run out.
        attempts: 1000,
        backoff: { type: 'fixed', delay: 1000 },
      });
    } catch (err) {
      throw unavailable(err);
    }
    await this.#client.del(dataOf(data.id)).catch(() => undefined);
  }

  async get(id: string): Promise<InvocationState | undefined> {
    let text: string | null;
    try {
      text = await this.#client.get(recordOf(id));
    } catch (err) {
      throw unavailable(err);
    }
    return text === null ? undefined : (JSON.parse(text) as InvocationState);
  }

  async list({ status, fn, limit }: ListQuery): Promise<InvocationState[]> {
    const found: InvocationState[] = [];
    const PAGE = 200;
    try {
      // Newest first; a page at a time until enough match (bounded: 25 pages).
      for (let start = 0; found.length < limit && start < PAGE * 25; start += PAGE) {
        const ids = await this.#client.zrevrange(setOf(status), start, start + PAGE - 1);
        if (ids.length === 0) break;
        const texts = await this.#client.mget(ids.map(recordOf));
        const gone: string[] = [];
        texts.forEach((text, i) => {
          if (text === null) return void gone.push(ids[i]);
          const state = JSON.parse(text) as InvocationState;
          if (found.length < limit && (fn === undefined || state.function === fn)) {
            found.push(state);
          }
        });
        // Records past their retention are gone: their ids go from the sets too.
        if (gone.length > 0) await this.#client.zrem(setOf(status), ...gone);
        if (ids.length < PAGE) break;
      }
    } catch (err) {
      throw unavailable(err);
    }
    return found;
  }

  async depth(): Promise<number> {
    try {
      const [queued, running] = await Promise.all([
        this.#client.zcard(setOf('queued')),
        this.#client.zcard(setOf('running')),
      ]);
      return queued + running;
    } catch (err) {
      throw unavailable(err);
    }
  }

  async setCallback(id: string, callback: CallbackState): Promise<void> {
    const state = await this.get(id);
    if (!state) return;
    try {
      await this.#client.set(recordOf(id), JSON.stringify({ ...state, callback }), 'KEEPTTL');
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** Writes a state and moves its id to its status's set; a finished one expires. */
  async #write(state: InvocationState, now: number): Promise<void> {
    const ttl =
      state.status === 'succeeded' || state.status === 'failed' ? RETENTION_MS[state.status] : '';
    await this.#client.faasMove(
      recordOf(state.requestId),
      ...STATUS_SETS,
      setOf(state.status),
      state.requestId,
      JSON.stringify(state),
      now,
      ttl,
    );
  }

  start(worker: QueueWorker): void {
    const { logger } = this.#options;
    this.#worker = new Worker<Data>('async', (job, token) => this.#process(worker, job, token), {
      connection: { url: this.#options.redisUrl, maxRetriesPerRequest: null },
      prefix: BULL_PREFIX,
      concurrency: worker.concurrency,
      // A replica that died: its jobs go back to waiting ~15-20 s later (lock lapsed, checked
      // every 5 s). Our own attempt count, not BullMQ's stalled count, ends an invocation.
      lockDuration: 15_000,
      stalledInterval: 5_000,
      maxStalledCount: 1_000_000,
      drainDelay: 1,
    });
    this.#worker.on('error', (err) => logger?.warn('async worker (redis)', { err }));
    this.#sweeper = setInterval(
      () => void this.#sweep(),
      this.#options.sweepIntervalMs ?? SWEEP_INTERVAL_MS,
    );
    this.#sweeper.unref();
    void this.#sweep();
  }

  /** One attempt of the job BullMQ gave this replica. */
  async #process(worker: QueueWorker, job: Job<Data>, token?: string): Promise<void> {
    const data = job.data;
    const now = Date.now();
    const taken: InvocationState = (await this.get(data.id)) ?? queuedState(data, data.createdAt);
    // Delivered again after it finished (its replica died between the record and BullMQ's
    // completion): done already.
    if (taken.status === 'succeeded' || taken.status === 'failed') return;
    taken.status = 'running';
    taken.attempts += 1;
    taken.startedAt = new Date(now).toISOString();
    delete taken.nextAttemptAt;
    await this.#write(taken, now);
    const attempt: AsyncJob = { ...data, attempt: taken.attempts };
    const refused = refusal(attempt, now);
    const outcome: AttemptOutcome = refused
      ? { kind: 'failed', error: refused, retry: false }
      : await worker.run(attempt).catch((err: unknown) => {
          this.#options.logger?.error('async attempt failed in the server', { err });
          return {
            kind: 'failed' as const,
            error: { status: 500, code: 'INTERNAL_ERROR', message: 'Internal Server Error' },
            retry: true,
          };
        });
    const end = Date.now();
    const step = nextStep(attempt, outcome, end, this.#options.retryBaseMs ?? 1000);
    const state = afterStep(taken, step, end);
    await this.#write(state, end);
    if (step.status === 'queued') {
      // Waits in BullMQ's delayed set until then (BullMQ's own attempt count is not touched).
      await job.moveToDelayed(step.runAt, token);
      throw new DelayedError();
    }
    worker.finished(state);
  }

  /**
   * Drops the ids of records past their retention from the sets (the records expire alone), and
   * repairs the records queued longer than REPAIR_AFTER_MS whose job BullMQ does not hold.
   */
  async #sweep(): Promise<void> {
    const now = Date.now();
    await Promise.all(
      (['succeeded', 'failed'] as const).map((status) =>
        this.#client.zremrangebyscore(setOf(status), '-inf', now - RETENTION_MS[status]),
      ),
    ).catch(() => undefined);
    await this.repairOrphans(now).catch((err: unknown) =>
      this.#options.logger?.warn('async queue: the orphan sweep failed', { err }),
    );
  }

  /**
   * Finds records queued since before `now - repairAfterMs` without a job, and re-adds each job
   * from its kept data, or, when that is gone too, marks the invocation failed (503
   * KV_UNAVAILABLE: it was never confirmed queued). Safe on every replica at once: a job is added
   * once per id, and an invocation is only touched while its record is still `queued` after its
   * job was seen missing (a record leaves `queued` before its job is removed). Runs every
   * sweep; public for tests.
   * @returns how many were re-queued and how many failed.
   */
  async repairOrphans(now = Date.now()): Promise<{ requeued: number; failed: number }> {
    const before = now - (this.#options.repairAfterMs ?? REPAIR_AFTER_MS);
    const ids = await this.#client.zrangebyscore(setOf('queued'), '-inf', before, 'LIMIT', 0, 500);
    let requeued = 0;
    let failed = 0;
    for (const id of ids) {
      const job = await this.#queue.getJob(jobIdOf(id));
      if (job) continue;
      const [state, dataText] = await Promise.all([this.get(id), this.#client.get(dataOf(id))]);
      if (state?.status !== 'queued') continue;
      if (dataText !== null) {
        await this.#addJob(JSON.parse(dataText) as Data);
        requeued++;
        this.#options.logger?.warn('async queue: re-queued an invocation whose job was missing', {
          requestId: id,
          function: state.function,
        });
        continue;
      }
      const end = Date.now();
      const lost = afterStep(
        state,
        {
          status: 'failed',
          error: {
            status: 503,
            code: 'KV_UNAVAILABLE',
            message:
              'the invocation was recorded but its job never reached the queue (Redis did not ' +
              'answer in time): send the request again with a new X-Request-Id',
          },
        },
        end,
      );
      await this.#write(lost, end);
      failed++;
      this.#options.logger?.warn('async queue: failed an invocation whose job was lost', {
        requestId: id,
        function: state.function,
      });
    }
    return { requeued, failed };
  }

  async stop(): Promise<void> {
    clearInterval(this.#sweeper);
    // Takes no new job; waits for the running ones (the pool ends them after its grace period).
    if (this.#worker) await closeBounded(this.#worker);
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.stop();
      await closeBounded(this.#queue);
      await closeRedisClient(this.#client);
    })();
    return this.#closed;
  }
}
