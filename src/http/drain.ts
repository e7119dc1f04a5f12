/**
 * What every answer gets before anything runs, and the graceful stop (docs/spec.md §3, §4):
 * - an answer for a function path is sandboxed (function-sandbox.ts), the server's own answers
 *   for it included; an admin answer is locked;
 * - a function path's request is counted while it runs, so that a stop can let the invocations
 *   it admitted finish (a first call waits for its version's load on a worker, from CORS on,
 *   before it reaches the pool); while draining, new ones are refused with 503 SHUTTING_DOWN.
 *   Admin routes answer while draining (health and readiness say so themselves).
 */
import type { Middleware } from 'koa';
import { ShuttingDownError } from '../errors';
import { isAdminPath, lockAdminAnswer, sandboxFunctionAnswer } from './function-sandbox';

export class Drain {
  #closing = false;
  #inFlight = 0;

  /** Whether a stop has begun. */
  get closing(): boolean {
    return this.#closing;
  }

  /** The middleware: headers for every answer, then admission of function requests. */
  readonly gate: Middleware = async (ctx, next) => {
    if (isAdminPath(ctx.path)) {
      // JSON that may quote a function's output: never a page.
      lockAdminAnswer(ctx.res);
      return next();
    }
    sandboxFunctionAnswer(ctx.res);
    if (this.#closing) throw new ShuttingDownError('the server is shutting down');
    this.#inFlight++;
    try {
      await next();
    } finally {
      this.#inFlight--;
    }
  };

  /** Refuses new function requests from now on. */
  close(): void {
    this.#closing = true;
  }

  /** Resolves when no admitted function request is left, or at `until` (epoch ms). */
  async settled(until: number): Promise<void> {
    while (this.#inFlight > 0 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}
