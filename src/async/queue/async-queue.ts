/**
 * The async invocation queue (docs/spec.md §9): one interface, two backends that never import each other
 * — SQLite in DATA_DIR (sqlite-queue.ts, the default) and BullMQ on Redis (bullmq-queue.ts, with
 * REDIS_URL). A queued invocation keeps one state record from its arrival until it is dropped
 * (RETENTION below); the backend runs its attempts through the handler it is started with, at
 * most `concurrency` at once on this server, and decides from the handler's outcome, with
 * `nextStep` (shared, so both backends decide alike), whether it is done or tried again.
 *
 * | status      | meaning                                                                  |
 * |-------------|--------------------------------------------------------------------------|
 * | `queued`    | waiting for its first attempt, or for the next one (`nextAttemptAt`)     |
 * | `running`   | an attempt is running                                                    |
 * | `succeeded` | an attempt gave a response (any status the function chose): `response`   |
 * | `failed`    | the last attempt failed and no other is allowed: `error`                 |
 *
 * Delivery is at least once: an attempt that a stop or a crash interrupts runs again.
 */

/** The four states of an async invocation. */
export const ASYNC_STATUSES = ['queued', 'running', 'succeeded', 'failed'] as const;
export type AsyncStatus = (typeof ASYNC_STATUSES)[number];

/** The response the caller would have had (docs/spec.md §9), as kept in the record. */
export interface StoredResponse {
  status: number;
  headers: Record<string, string | string[]>;
  /** Text as sent; base64 when `isBase64Encoded` (a body of bytes). Absent: no body. */
  body?: string;
  isBase64Encoded?: true;
}

/** Why an attempt failed: the error answer the caller would have had (docs/spec.md §3). */
export interface StoredError {
  /** Its HTTP status (500, 502, 504…): what `X-Function-Status` says. */
  status: number;
  code: string;
  message: string;
  /** A function error's own name (`TypeError`). */
  type?: string;
}

/** The delivery of the result to `X-Callback-Url` (async/callbacks.ts). */
export interface CallbackState {
  url: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  /** The status the callback URL answered last. */
  lastStatus?: number;
  /** Why the last delivery failed (network, refusal, a non-2xx answer). */
  lastError?: string;
  deliveredAt?: string;
}

/** What a request (or a schedule tick) queues. */
export interface NewInvocation {
  /** The request id: `context.requestId` of every attempt, and the record's key. */
  id: string;
  /** The function's name (not a path). */
  fn: string;
  /** The event of docs/spec.md §2 (or §9 for a tick), as JSON text. */
  eventJson: string;
  source: 'request' | 'schedule';
  /** The cron expression of a tick. */
  schedule?: string;
  callbackUrl?: string;
  /** From `config.async` of the version that took the request. */
  retries: number;
  maxAgeSeconds: number;
}

/** One attempt, as the handler gets it. */
export interface AsyncJob extends NewInvocation {
  /** When the invocation arrived, epoch ms. */
  createdAt: number;
  /** `context.attempt`: 1 for the first. */
  attempt: number;
}

/** What `GET /_/invocations/<id>` shows. */
export interface InvocationState {
  requestId: string;
  function: string;
  status: AsyncStatus;
  source: 'request' | 'schedule';
  schedule?: string;
  /** Attempts started so far. */
  attempts: number;
  retries: number;
  maxAgeSeconds: number;
  createdAt: string;
  /** When the last attempt started. */
  startedAt?: string;
  finishedAt?: string;
  /** When the next attempt is due, while queued for a retry. */
  nextAttemptAt?: string;
  /** Succeeded: the response. */
  response?: StoredResponse;
  /** Failed: why; while queued for a retry: why the last attempt failed. */
  error?: StoredError;
  callback?: CallbackState;
}

/** How one attempt ended, as the handler reports it. */
export type AttemptOutcome =
  | { kind: 'succeeded'; response: StoredResponse }
  /** `retry`: whether another attempt could go otherwise (not for a function that is gone). */
  | { kind: 'failed'; error: StoredError; retry: boolean }
  /** The server is stopping: not counted as an attempt, run again later (after a restart). */
  | { kind: 'released' };

export type AttemptHandler = (job: AsyncJob) => Promise<AttemptOutcome>;

export interface QueueWorker {
  run: AttemptHandler;
  /** Told of every invocation that reached `succeeded` or `failed`, once, on this server. */
  finished(state: InvocationState): void;
  /** Attempts running at once on this server. */
  concurrency: number;
}

export interface ListQuery {
  status: AsyncStatus;
  fn?: string;
  limit: number;
}

export interface AsyncQueue {
  readonly backend: 'sqlite' | 'redis';
  /**
   * Queues an invocation. An id the queue still knows is not queued again: `created` false,
   * and its state as it is (a retried request, or a tick another replica already queued).
   * @throws OverloadedError (with Retry-After) when MAX_ASYNC_QUEUE invocations are queued or
   *   running; KvUnavailableError when the store does not answer.
   */
  enqueue(invocation: NewInvocation): Promise<{ created: boolean; state: InvocationState }>;
  get(id: string): Promise<InvocationState | undefined>;
  /** Newest first (by the time each entered its status). */
  list(query: ListQuery): Promise<InvocationState[]>;
  /** Invocations queued or running (what MAX_ASYNC_QUEUE bounds). */
  depth(): Promise<number>;
  /** Records the progress of a finished invocation's callback. */
  setCallback(id: string, callback: CallbackState): Promise<void>;
  /** Starts running queued invocations. */
  start(worker: QueueWorker): void;
  /**
   * Stops starting attempts; resolves once the running ones have settled (the server's pool
   * ends them when its grace period is over: they are released and run again after a restart).
   */
  stop(): Promise<void>;
  /** Closes the connection (after stop). Idempotent. */
  close(): Promise<void>;
}

/** How long a finished invocation's record is kept, from when it finished. */
export const RETENTION_MS = {
  /** An hour: read the result within it (it holds the response body). */
  succeeded: 60 * 60 * 1000,
  /** A week: the place where failed invocations go (small: no body, no event). */
  failed: 7 * 24 * 60 * 60 * 1000,
} as const;

/** The delay before the retry after attempt `attempt` (1-based) failed: 1 s, 2 s, 4 s … 5 min. */
export function retryDelayMs(attempt: number, baseMs: number): number {
  return Math.min(baseMs * 2 ** (attempt - 1), 5 * 60 * 1000);
}

/** Retry-After of a full queue, seconds. */
export const FULL_RETRY_AFTER_S = 5;

/** What a backend does after an attempt. */
export type Step =
  | { status: 'succeeded'; response: StoredResponse }
  | { status: 'failed'; error: StoredError }
  | { status: 'queued'; runAt: number; error?: StoredError; release?: true };

/**
 * The decision after an attempt (both backends): a success is final; a failure is retried
 * after a growing delay while attempts remain (`1 + retries` in all) and the retry would start
 * before the invocation is `maxAgeSeconds` old; a release runs again at once, uncounted.
 */
export function nextStep(
  job: AsyncJob,
  outcome: AttemptOutcome,
  now: number,
  baseMs: number,
): Step {
  if (outcome.kind === 'succeeded') return { status: 'succeeded', response: outcome.response };
  if (outcome.kind === 'released') return { status: 'queued', runAt: now, release: true };
  const runAt = now + retryDelayMs(job.attempt, baseMs);
  const young = runAt - job.createdAt <= job.maxAgeSeconds * 1000;
  if (outcome.retry && job.attempt <= job.retries && young) {
    return { status: 'queued', runAt, error: outcome.error };
  }
  return { status: 'failed', error: outcome.error };
}

/**
 * Whether an attempt may start now (checked by both backends as it is taken): not when the
 * invocation is older than its `maxAgeSeconds`, nor when it has had all its attempts (attempts
 * lost with a server that died count: their outcome is unknown).
 */
export function refusal(job: AsyncJob, now: number): StoredError | undefined {
  if (now - job.createdAt > job.maxAgeSeconds * 1000) {
    return {
      status: 504,
      code: 'INVOCATION_EXPIRED',
      message:
        `the invocation is older than its config.async.maxAgeSeconds (${job.maxAgeSeconds} s) ` +
        `and was not started${job.attempt > 1 ? ' again' : ''}`,
    };
  }
  if (job.attempt > job.retries + 1) {
    return {
      status: 502,
      code: 'WORKER_CRASHED',
      message:
        `attempt ${job.attempt - 1} was lost with the server that ran it, ` +
        `and all ${job.retries + 1} attempts have started`,
    };
  }
  return undefined;
}

/** The state of a new invocation. */
export function queuedState(invocation: NewInvocation, now: number): InvocationState {
  return {
    requestId: invocation.id,
    function: invocation.fn,
    status: 'queued',
    source: invocation.source,
    ...(invocation.schedule === undefined ? {} : { schedule: invocation.schedule }),
    attempts: 0,
    retries: invocation.retries,
    maxAgeSeconds: invocation.maxAgeSeconds,
    createdAt: new Date(now).toISOString(),
    ...(invocation.callbackUrl === undefined
      ? {}
      : { callback: { url: invocation.callbackUrl, status: 'pending', attempts: 0 } }),
  };
}

/** A state after `step` (the attempt's start already counted in `state.attempts`). */
export function afterStep(state: InvocationState, step: Step, now: number): InvocationState {
  const next: InvocationState = { ...state, status: step.status };
  delete next.nextAttemptAt;
  if (step.status === 'queued') {
    if (step.release) {
      next.attempts = Math.max(0, state.attempts - 1);
    } else {
      next.nextAttemptAt = new Date(step.runAt).toISOString();
      if (step.error) next.error = step.error;
    }
    return next;
  }
  next.finishedAt = new Date(now).toISOString();
  if (step.status === 'succeeded') {
    next.response = step.response;
    delete next.error;
  } else {
    next.error = step.error;
  }
  return next;
}
