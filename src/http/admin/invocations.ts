/**
 * The admin routes for invocations and schedules (docs/spec.md §6, §9), all behind the bearer token:
 *
 * | route | answer |
 * |-------|--------|
 * | `GET /_/invocations?fn=&status=&limit=` | `{ invocations: [...] }`: with `status` one of `queued`, `running`, `succeeded`, `failed`, the async invocations in that state (newest first); otherwise the records of recent invocations (sync and async attempts), `status` an exact HTTP status or a class (`5xx`) |
 * | `GET /_/invocations/stream?fn=&status=` | the records kept from now on, as Server-Sent Events (invocation-stream.ts) |
 * | `GET /_/invocations/<id>` | an async invocation's state (status, attempts, response or error, callback) with its last attempt's record (`lastAttempt`: timing, console output), or a synchronous invocation's record; 404 NOT_FOUND when neither is kept |
 * | `GET /_/schedules` | `{ schedules: [{ function, schedule, timezone, next }] }` |
 */
import type Router from '@koa/router';
import type { Middleware } from 'koa';
import { InvalidBodyError, NotFoundError } from '../../errors';
import type { InvocationRecord, RecordLog } from '../../observe/records';
import { ASYNC_STATUSES } from '../../async/queue';
import type { AsyncQueue, AsyncStatus } from '../../async/queue';
import { invocationStreamRoute } from './invocation-stream';
import type { InvocationStreams } from './invocation-stream';
import type {
  InvocationAnswer,
  InvocationListAnswer,
  ScheduleListAnswer,
  ScheduleListing,
} from './api';

export interface InvocationSources {
  records: RecordLog;
  /** The async queue, once open. */
  queue(): AsyncQueue | undefined;
  /** The schedules, once known. */
  schedules(): ScheduleListing[];
  /** The open record streams of /_/invocations/stream. */
  streams: InvocationStreams;
}

/** The most async invocations one list answers. */
const MAX_ASYNC_LIST = 1000;

const one = (value: unknown) => (typeof value === 'string' ? value : undefined);

/** A record's fields that describe its attempt (the rest repeats the async state). */
function attemptOf(record: InvocationRecord): Partial<InvocationRecord> {
  const attempt: Partial<InvocationRecord> = { ...record };
  delete attempt.requestId;
  delete attempt.function;
  return attempt;
}

/** Registers /_/invocations and /_/schedules on the admin router (its prefix is /_). */
export function invocationRoutes(
  router: Router,
  sources: InvocationSources,
  auth: Middleware,
): void {
  const { records } = sources;

  router.get('/invocations', auth, async (ctx) => {
    const limit = Number(ctx.query.limit ?? 100);
    if (!Number.isInteger(limit) || limit < 1) {
      throw new InvalidBodyError('limit must be a positive whole number');
    }
    const fn = one(ctx.query.fn);
    const status = one(ctx.query.status);
    const queue = sources.queue();
    if (queue && ASYNC_STATUSES.includes(status as AsyncStatus)) {
      const states: InvocationListAnswer = {
        invocations: await queue.list({
          status: status as AsyncStatus,
          fn,
          limit: Math.min(limit, MAX_ASYNC_LIST),
        }),
      };
      ctx.body = states;
      return;
    }
    const answer: InvocationListAnswer = {
      invocations: await records.query({ fn, status, limit: Math.min(limit, records.max) }),
    };
    ctx.body = answer;
  });

  // Before /invocations/:id, which would take `stream` for a request id.
  invocationStreamRoute(router, sources.streams, auth);

  router.get('/invocations/:id', auth, async (ctx) => {
    const id = ctx.params.id;
    const record = await records.get(id);
    const state = await sources.queue()?.get(id);
    if (state) {
      const answer: InvocationAnswer = record
        ? { ...state, lastAttempt: attemptOf(record) }
        : state;
      ctx.body = answer;
      return;
    }
    if (!record) throw new NotFoundError(`no invocation record for '${id}'`);
    const answer: InvocationAnswer = record;
    ctx.body = answer;
  });

  router.get('/schedules', auth, (ctx) => {
    const answer: ScheduleListAnswer = { schedules: sources.schedules() };
    ctx.body = answer;
  });
}
