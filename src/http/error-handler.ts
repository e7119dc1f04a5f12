/**
 * The error boundary and the request id: every error becomes the JSON shape of docs/spec.md §3, every
 * response carries X-Request-Id, and every request is logged once.
 */
import { randomUUID } from 'node:crypto';
import type { Context, Middleware, Next } from 'koa';
import {
  FaasError,
  FunctionError,
  PayloadTooLargeError,
  InvalidBodyError,
  UnsupportedMediaTypeError,
  toErrorBody,
} from '../errors';
import type { Logger } from '../observe/logger';
import { lingerAfter } from './linger';
import type { LingerObserver } from './linger';

/** What the middleware below the boundary tells it about a request, for the log line. */
export interface RequestState {
  requestId: string;
  log: Logger;
  fn?: string;
  version?: string;
  /** `ok`, an error code, or the status; set by the boundary before the observer runs. */
  outcome?: string;
  cold?: boolean;
  queueMs?: number;
  execMs?: number;
  /** The function's console lines. */
  logs?: string[];
  /** Whether the invocation made an effect outside its sandbox (the effect ledger, docs/spec.md §8). */
  effects?: boolean;
  /** Times the pool ran it again (its worker died, or another invocation blocked it; docs/spec.md §3). */
  reruns?: number;
  /** Whether it ran alone on the solo lane (a suspect, or its function is quarantined). */
  solo?: boolean;
  /** When the request reached the boundary (performance.now()). */
  startedAt: number;
}

/** Told about every finished request, after the error (if any) became a response. */
export type RequestObserver = (ctx: Context, state: RequestState, totalMs: number) => void;

const SANE_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * 413, and close the connection: otherwise Node reads (and drops) the rest of the declared body
 * to keep the connection alive, so MAX_BODY would bound what is parsed but not what is read. The
 * close lingers (linger.ts), so that a client still sending reads the 413 first.
 */
export function tooLarge(message: string): PayloadTooLargeError {
  const err = new PayloadTooLargeError(message);
  err.headers = { Connection: 'close' };
  return err;
}

/**
 * Request ids the server makes itself: a schedule's tick is queued under `tick-<hash of the tick>`
 * (async-runner.ts), a hash anyone can compute, and a queued id is never queued again. A caller's
 * `tick-…` id would take a future tick's place, and that tick would not run (docs/spec.md §9: each tick
 * fires once).
 */
const RESERVED_ID = /^tick-/;

/**
 * Ids no URL can name: `.` and `..` are dot segments, so `/_/invocations/..` would never reach
 * that invocation (WHATWG URL parsing removes them, docs/spec.md §6).
 */
const DOTS_ID = /^\.{1,2}$/;

/** The caller's X-Request-Id when it is sane and not one the server reserves, else a new UUID. */
export function requestIdFor(header: string | string[] | undefined): string {
  return typeof header === 'string' &&
    SANE_ID.test(header) &&
    !RESERVED_ID.test(header) &&
    !DOTS_ID.test(header)
    ? header
    : randomUUID();
}

/**
 * Koa's own errors and other middleware's (http-errors) carry a status and a `type`; map the
 * ones a client can cause to our codes. Our body reader (body.ts) throws our own errors.
 */
function fromHttpError(err: unknown): FaasError | undefined {
  if (!(err instanceof Error)) return undefined;
  const { status, type } = err as { status?: number; type?: string };
  if (status === 413 || type === 'entity.too.large') {
    return tooLarge('request body is larger than MAX_BODY allows');
  }
  if (status === 415 || type === 'encoding.unsupported') {
    return new UnsupportedMediaTypeError(`request body cannot be decoded: ${err.message}`);
  }
  if (status === 400) {
    return new InvalidBodyError(`request body cannot be parsed: ${err.message}`);
  }
  return undefined;
}

/**
 * The outermost middleware of ours: turns every error into JSON with its status and code, never
 * with a stack, and writes the one log line of the request. An error answered with
 * `Connection: close` before the request body was read to its end closes the connection in
 * stages (linger.ts), each such close told to `lingered`.
 */
export function errorBoundary(
  logger: Logger,
  observe?: RequestObserver,
  lingered?: LingerObserver,
): Middleware {
  return async (ctx: Context, next: Next) => {
    const started = performance.now();
    const state = ctx.state as RequestState;
    state.startedAt = started;
    state.requestId ??= requestIdFor(ctx.req.headers['x-request-id']);
    state.log ??= logger.child({ reqId: state.requestId });
    // The request id is on every response (docs/spec.md §4): set here, so that the server needs no
    // middleware of its own for it.
    ctx.res.setHeader('X-Request-Id', state.requestId);
    let failure: unknown;
    let known: FaasError | undefined;
    try {
      await next();
    } catch (err) {
      failure = err;
      known = err instanceof FaasError ? err : fromHttpError(err);
      const { status, body } = toErrorBody(known ?? err, state.requestId);
      ctx.status = status;
      ctx.body = body;
      ctx.set('X-Request-Id', state.requestId);
      for (const [name, value] of Object.entries(known?.headers ?? {})) ctx.set(name, value);
      state.outcome = body.error.code;
      if (/\bclose\b/i.test(ctx.response.get('Connection')) && !ctx.req.complete) {
        lingerAfter(ctx.req, ctx.res, lingered);
      }
    }
    state.outcome ??= ctx.status < 400 ? 'ok' : String(ctx.status);
    const totalMs = performance.now() - started;
    if (state.fn !== undefined && state.version !== undefined) {
      // `queue, exec, total`, each only when known; one string, no array per request.
      let timing = '';
      if (state.queueMs !== undefined) timing = `queue;dur=${state.queueMs.toFixed(2)}, `;
      if (state.execMs !== undefined) timing += `exec;dur=${state.execMs.toFixed(2)}, `;
      ctx.set('Server-Timing', `${timing}total;dur=${totalMs.toFixed(2)}`);
    }
    observe?.(ctx, state, totalMs);
    // An error that is not ours is logged at error level; any other request at info, which a
    // server at LOG_LEVEL=warn does not write: then no line is built at all.
    const unexpected =
      failure !== undefined && known === undefined && !(failure instanceof FunctionError);
    if (!state.log.isLevelEnabled(unexpected ? 'error' : 'info')) return;
    const fields: Record<string, unknown> = {
      method: ctx.method,
      path: ctx.path,
      status: ctx.status,
      ms: Math.round(totalMs * 100) / 100,
    };
    if (state.fn !== undefined) fields.fn = state.fn;
    if (state.version !== undefined) fields.version = state.version;
    if (state.cold !== undefined) fields.cold = state.cold;
    fields.outcome = state.outcome;
    if (failure instanceof FunctionError) {
      fields.err = { type: failure.type, message: failure.message, stack: failure.functionStack };
    } else if (failure !== undefined && known === undefined) {
      fields.err = failure;
      return state.log.error('request failed', fields);
    }
    state.log.info('request', fields);
  };
}
