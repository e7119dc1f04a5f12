/**
 * What runs queued invocations (docs/spec.md §9): the async queue's counterpart of runFaaS. Each attempt
 * takes the function's current version from the store and runs through the same pool as a
 * request (invoke.ts: same timeout, quarantine and effect rules, secrets masked), with
 * `context.attempt` and the request's id; it leaves an invocation record and metrics as a request
 * does, and reports to the queue how it ended:
 *
 * | the attempt                                          | outcome    | retried (config.async) |
 * |------------------------------------------------------|------------|------------------------|
 * | returns anything, any `statusCode` included          | succeeded  | —                      |
 * | throws, times out, crashes its worker, bad result    | failed     | yes                    |
 * | is refused by a full pool, or the store is away       | failed     | yes                    |
 * | its function is gone, or does not compile             | failed     | no                     |
 * | is cut short by a stopping server                     | released   | runs again, uncounted  |
 *
 * A function that answers a 4xx or 5xx on purpose has succeeded (as Lambda sees it: only an error
 * is a failure); its status is in the response and in `X-Function-Status`.
 *
 * Schedule ticks come in here too (tickHandler): each becomes an async invocation with the event
 * of docs/spec.md §9.
 */
import { createHash } from 'node:crypto';
import {
  FaasError,
  FunctionCompileError,
  FunctionError,
  FunctionNotFoundError,
  ShuttingDownError,
  WorkerCrashedError,
} from '../errors';
import { asyncPolicy } from '../functions/function-config';
import type { FunctionStore, FunctionVersion } from '../functions/function-store';
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import type { RecordLog } from '../observe/records';
import type { InvocationResult, SandboxPool } from '../pool/sandbox-pool';
import type { CallbackSender } from './callbacks';
import type {
  AsyncJob,
  AsyncQueue,
  AttemptOutcome,
  InvocationState,
  QueueWorker,
  StoredError,
  StoredResponse,
} from './queue';
import type { ScheduleEntry, TickHandler } from './schedules/schedules';
import { invokeVersion, logConsole } from '../invocation/invoke';
import type { SecretValues } from '../invocation/invoke';
import type { HttpResponse } from '../invocation/response';

export interface AsyncRunnerParts {
  store: FunctionStore;
  pool: SandboxPool;
  secrets?: SecretValues;
  records: RecordLog;
  metrics: Metrics;
  logger: Logger;
  callbacks?: CallbackSender;
  /** ASYNC_CONCURRENCY. */
  concurrency: number;
}

/** Failures another attempt may cure: the function's own, the pool's, the store's. */
const RETRYABLE = new Set([
  'FUNCTION_ERROR',
  'FUNCTION_TIMEOUT',
  'WORKER_CRASHED',
  'INVALID_RESULT',
  'OVERLOADED',
  'TOO_MANY_REQUESTS',
  'KV_UNAVAILABLE',
  'INTERNAL_ERROR',
]);

const round = (ms: number | undefined) =>
  ms === undefined ? undefined : Math.round(ms * 100) / 100;

/** A response as the record keeps it: text as is, bytes as base64. */
function stored(response: HttpResponse): StoredResponse {
  const { status, headers, body } = response;
  const out: StoredResponse = { status, headers: { ...headers } };
  if (typeof body === 'string') out.body = body;
  else if (body !== undefined) {
    out.body = body.toString('base64');
    out.isBase64Encoded = true;
  }
  return out;
}

/** An error as the record keeps it (the shape of docs/spec.md §3, with its status). */
function storedError(err: unknown): StoredError {
  if (err instanceof FaasError) {
    return {
      status: err.statusCode,
      code: err.code,
      message: err.message,
      ...(err instanceof FunctionError ? { type: err.type } : {}),
    };
  }
  return { status: 500, code: 'INTERNAL_ERROR', message: 'Internal Server Error' };
}

/** The queue's worker: runs each attempt, and hands finished invocations to their callbacks. */
export function asyncWorker(parts: AsyncRunnerParts): QueueWorker {
  const { store, pool, secrets, records, metrics, logger } = parts;

  /** One record, one metrics observation and one log line per attempt, as for a request. */
  const observe = (
    job: AsyncJob,
    fn: FunctionVersion | undefined,
    started: number,
    status: number,
    outcome: string,
    result?: InvocationResult,
    logs: string[] = [],
  ) => {
    const totalMs = performance.now() - started;
    metrics.observeInvocation({
      fn: fn?.name,
      outcome,
      totalMs,
      queueMs: result?.queueMs,
      cold: result?.cold,
    });
    const log = logger.child({ reqId: job.id });
    if (logs.length > 0) logConsole(log.child({ fn: job.fn }), logs);
    log.info('async attempt', {
      fn: job.fn,
      ...(fn ? { version: fn.version } : {}),
      attempt: job.attempt,
      status,
      ms: round(totalMs),
      outcome,
    });
    if (!fn) return;
    records.add({
      requestId: job.id,
      function: fn.name,
      version: fn.version,
      start: new Date(Date.now() - totalMs).toISOString(),
      status,
      outcome,
      cold: result?.cold,
      effects: result?.effects,
      attempt: job.attempt,
      durationMs: {
        queue: round(result?.queueMs),
        exec: round(result?.execMs),
        total: round(totalMs) as number,
      },
      logs,
    });
  };

  const run = async (job: AsyncJob): Promise<AttemptOutcome> => {
    const started = performance.now();
    let fn: FunctionVersion | undefined;
    let result: InvocationResult | undefined;
    let logs: string[] = [];
    try {
      fn = await store.get(job.fn);
      if (fn.compileError) throw fn.compileError;
      const ran = await invokeVersion(
        { pool, secrets },
        { fn, eventJson: job.eventJson, requestId: job.id, attempt: job.attempt },
      );
      result = ran.result;
      logs = ran.logs;
      const response = ran.response();
      observe(job, fn, started, response.status, 'ok', result, logs);
      return { kind: 'succeeded', response: stored(response) };
    } catch (err) {
      // Cut short by a stopping server: the pool refuses it (not started) or ends its worker
      // when the grace period is over (started). It runs again after the restart.
      if (
        err instanceof ShuttingDownError ||
        (err instanceof WorkerCrashedError && pool.stats().closing)
      ) {
        return { kind: 'released' };
      }
      const error = storedError(err);
      if (!(err instanceof FaasError)) {
        logger.error('async attempt failed', { reqId: job.id, fn: job.fn, err });
      }
      // A file that is gone or broken stays so until someone deploys again: no retry.
      const gone = err instanceof FunctionNotFoundError || err instanceof FunctionCompileError;
      observe(job, gone ? undefined : fn, started, error.status, error.code, result, logs);
      return { kind: 'failed', error, retry: !gone && RETRYABLE.has(error.code) };
    }
  };

  return {
    run,
    concurrency: parts.concurrency,
    finished(state: InvocationState) {
      metrics.asyncFinished(state.function, state.status);
      parts.callbacks?.deliver(state);
    },
  };
}

/** The request id of a tick: the same for the same tick on every replica (`tick-` + hash). */
export function tickRequestId(tickId: string): string {
  return `tick-${createHash('sha256').update(tickId).digest('hex').slice(0, 32)}`;
}

/**
 * The previous run of a schedule that is still queued or running, if any: its request id and
 * status. Read from the queue (shared by every replica with Redis), not from memory.
 */
export async function unfinishedRun(
  queue: AsyncQueue,
  fn: string,
  schedule: string,
): Promise<{ requestId: string; status: string } | undefined> {
  for (const status of ['running', 'queued'] as const) {
    const states = await queue.list({ status, fn, limit: 1000 });
    const found = states.find((s) => s.source === 'schedule' && s.schedule === schedule);
    if (found) return { requestId: found.requestId, status };
  }
  return undefined;
}

/** A tick that did not run because its schedule's previous run had not finished. */
export interface SkippedTick {
  entry: ScheduleEntry;
  scheduledTime: Date;
  requestId: string;
  previous: { requestId: string; status: string };
}

/**
 * Queues a tick as an async invocation with the event of docs/spec.md §9, under the function's
 * current `config.async`; a tick that cannot be queued (the function went, the queue is full or
 * away) is a miss. With `config.overlap: "skip"` (the default), a tick while the previous run of
 * the same schedule is still queued or running is skipped: counted, recorded (outcome `skipped`,
 * status 0: it never ran) and told to `skipped`.
 */
export function tickHandler(parts: {
  store: FunctionStore;
  queue: () => AsyncQueue;
  metrics: Metrics;
  logger: Logger;
  records?: RecordLog;
  skipped?: (tick: SkippedTick) => void;
}): TickHandler {
  return async (entry, scheduledTime, tickId) => {
    try {
      const fn = await parts.store.get(entry.function);
      const requestId = tickRequestId(tickId);
      if ((fn.config.overlap ?? 'skip') === 'skip') {
        const previous = await unfinishedRun(parts.queue(), fn.name, entry.schedule);
        // The same tick told twice (another replica queued it) is not its own predecessor.
        if (previous && previous.requestId !== requestId) {
          parts.metrics.scheduleSkip(fn.name);
          const message =
            `schedule tick skipped: the previous run ${previous.requestId} is still ` +
            `${previous.status} (config.overlap "skip")`;
          parts.records?.add({
            requestId,
            function: fn.name,
            version: fn.version,
            start: scheduledTime.toISOString(),
            status: 0,
            outcome: 'skipped',
            durationMs: { total: 0 },
            logs: [`info\t${message}`],
          });
          parts.logger.info('schedule tick skipped', {
            fn: fn.name,
            schedule: entry.schedule,
            scheduledTime: scheduledTime.toISOString(),
            previous: previous.requestId,
          });
          parts.skipped?.({ entry, scheduledTime, requestId, previous });
          return;
        }
      }
      const event = {
        source: 'schedule',
        schedule: entry.schedule,
        scheduledTime: scheduledTime.toISOString(),
        method: 'POST',
        path: `/${entry.function}`,
      };
      const { created } = await parts.queue().enqueue({
        id: requestId,
        fn: fn.name,
        eventJson: JSON.stringify(event),
        source: 'schedule',
        schedule: entry.schedule,
        ...asyncPolicy(fn.config),
      });
      if (created) parts.metrics.scheduleTick(fn.name);
    } catch (err) {
      parts.metrics.scheduleMiss(entry.function);
      parts.logger.warn('schedule tick missed', {
        fn: entry.function,
        schedule: entry.schedule,
        scheduledTime: scheduledTime.toISOString(),
        err,
      });
    }
  };
}
