/**
 * `Prefer: respond-async` (RFC 7240, docs/spec.md §9): runFaaS has resolved the function (404, 400, 405
 * and compile errors are answered at once, as for a synchronous call) and built the event; this
 * queues it and answers
 *
 *   202 Accepted
 *   Location: /_/invocations/<requestId>
 *   Preference-Applied: respond-async
 *   X-Request-Id: <requestId>
 *   { "requestId": "<requestId>", "status": "queued" }
 *
 * An `X-Callback-Url` is checked against the egress policy first (400 INVALID_CALLBACK_URL or
 * CALLBACK_REFUSED); a full queue is 503 OVERLOADED with Retry-After. A request id the queue
 * still knows (a client that retries with the same X-Request-Id) is not queued twice: the answer
 * is 202 with that invocation's status; the id of another function's invocation is 409
 * REQUEST_ID_CONFLICT.
 */
import type { Context } from 'koa';
import { RequestIdConflictError } from '../errors';
import { asyncPolicy } from '../functions/function-config';
import type { Resolved } from '../functions/function-store';
import type { EgressPolicy } from '../services/egress';
import { checkCallbackUrl } from '../async/callbacks';
import type { AsyncQueue } from '../async/queue';
import type { RequestState } from './error-handler';
import type { RespondAsync } from './run-faas';

export interface RespondAsyncParts {
  /** The queue (open once the server listens). @throws KvUnavailableError before. */
  queue(): AsyncQueue;
  /** The egress policy callbacks go out under (known once the server listens). */
  egress(): EgressPolicy;
  /** Told of each accepted invocation. */
  accepted?(fn: string): void;
}

export function respondAsync(parts: RespondAsyncParts): RespondAsync {
  return async (ctx: Context, target: Resolved, eventJson: string) => {
    const state = ctx.state as RequestState;
    const { fn } = target;
    const header = ctx.get('x-callback-url');
    const callbackUrl = header === '' ? undefined : await checkCallbackUrl(header, parts.egress());
    const { created, state: queued } = await parts.queue().enqueue({
      id: state.requestId,
      fn: fn.name,
      eventJson,
      source: 'request',
      callbackUrl,
      ...asyncPolicy(fn.config),
    });
    // The same id again is the same invocation (a retry of the request), of the same function:
    // another function's would never run under an id the queue already holds.
    if (!created && queued.function !== fn.name) {
      throw new RequestIdConflictError(
        `X-Request-Id '${state.requestId}' belongs to an invocation of another function: send a new id`,
      );
    }
    // Counted as accepted, not as an invocation: its attempts are (async-runner.ts).
    state.outcome = 'queued';
    if (created) parts.accepted?.(fn.name);
    ctx.status = 202;
    ctx.set('Location', `/_/invocations/${state.requestId}`);
    ctx.set('Preference-Applied', 'respond-async');
    ctx.body = { requestId: state.requestId, status: queued.status };
  };
}
