/**
 * CORS for every response (docs/spec.md §4). It sits before the body parser so that 400 and 413 answers
 * carry the CORS headers too. A function whose `config.cors` is `"function"` answers CORS itself:
 * the server adds no CORS header to its responses and hands its preflights to it.
 */
import type { Context, Middleware, Next } from 'koa';

/**
 * Response headers a cross-origin page may read besides the CORS-safelisted ones: the request id
 * and timing of every answer, and what an async (202: Location, Preference-Applied), refused (429,
 * 503: Retry-After) or 405 (Allow) answer tells the caller to do next.
 */
export const EXPOSED =
  'X-Request-Id, X-Function-Version, Server-Timing, Location, Preference-Applied, Retry-After, Allow';

/**
 * CORS headers on every response; a preflight (OPTIONS with Access-Control-Request-Method)
 * answers 204 here. `functionAnswers(ctx)` tells whether the request's function answers CORS
 * itself (asked for function routes only, never for /_/…; synchronously when it can).
 */
export function cors(
  origin: string,
  functionAnswers?: (ctx: Context) => boolean | Promise<boolean>,
): Middleware {
  const vary = origin !== '*';
  // The headers of the server's CORS, set on the response directly (they are valid by
  // construction; Koa's ctx.set adds nothing for them): this runs on every request.
  const headers = (ctx: Context, next: Next): Promise<void> => {
    const res = ctx.res;
    res.setHeader('Access-Control-Allow-Origin', origin);
    if (vary) ctx.vary('Origin');
    res.setHeader('Access-Control-Expose-Headers', EXPOSED);
    if (ctx.method === 'OPTIONS' && ctx.req.headers['access-control-request-method']) {
      ctx.set('Access-Control-Allow-Methods', 'GET, HEAD, PUT, POST, DELETE, PATCH, OPTIONS');
      const asked = ctx.get('Access-Control-Request-Headers');
      if (asked) ctx.set('Access-Control-Allow-Headers', asked);
      ctx.set('Access-Control-Max-Age', '600');
      ctx.status = 204;
      return Promise.resolve();
    }
    return next();
  };
  // Not an async function: a request whose answer is known at once (most) makes no promise here.
  return (ctx: Context, next: Next) => {
    const admin = ctx.path === '/_' || ctx.path.startsWith('/_/');
    if (!admin && functionAnswers) {
      const answers = functionAnswers(ctx);
      if (answers === true) return next();
      if (answers !== false) {
        return answers.then((itself) => (itself ? next() : headers(ctx, next)));
      }
    }
    return headers(ctx, next);
  };
}
