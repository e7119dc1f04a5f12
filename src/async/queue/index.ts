/**
 * Builds the async queue on the backend the config chooses: BullMQ on Redis when REDIS_URL is
 * set, else the SQLite file in DATA_DIR (async-queue.ts says what both do).
 */
import type { Logger } from '../../observe/logger';
import type { AsyncQueue } from './async-queue';
import { BullAsyncQueue } from './bullmq-queue';
import { SqliteAsyncQueue } from './sqlite-queue';

export type {
  AsyncJob,
  AsyncQueue,
  AsyncStatus,
  AttemptOutcome,
  CallbackState,
  InvocationState,
  NewInvocation,
  QueueWorker,
  StoredError,
  StoredResponse,
} from './async-queue';
export { ASYNC_STATUSES, RETENTION_MS } from './async-queue';

export interface QueueOptions {
  dataDir: string;
  redisUrl?: string;
  /** MAX_ASYNC_QUEUE. */
  maxQueued: number;
  logger?: Logger;
  /** The first retry's delay (default 1 s). */
  retryBaseMs?: number;
}

/**
 * Opens the queue. @throws KvUnavailableError when the SQLite file cannot be opened. A Redis
 * that is down does not throw (after up to 2 s): enqueues fail with 503 until it answers.
 */
export async function createAsyncQueue(options: QueueOptions): Promise<AsyncQueue> {
  const common = {
    maxQueued: options.maxQueued,
    logger: options.logger,
    retryBaseMs: options.retryBaseMs,
  };
  if (options.redisUrl) {
    const queue = new BullAsyncQueue({ ...common, redisUrl: options.redisUrl });
    await queue.ready();
    return queue;
  }
  return new SqliteAsyncQueue({ ...common, dataDir: options.dataDir });
}
