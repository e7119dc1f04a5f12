/** CORS for every response (SPEC §4). */
import type { Context, Middleware, Next } from 'koa';

const EXPOSED = 'X-Request-Id, X-Function-Version, Server-Timing';

/**
 * CORS for every response; a preflight (OPTIONS with Access-Control-Request-Method) answers 204
 * here. It sits before the body parser so that 400 and 413 answers carry the CORS headers too.
 */
export function cors(origin: string): Middleware {
  return async (ctx: Context, next: Next) => {
    ctx.set('Access-Control-Allow-Origin', origin);
    if (origin !== '*') ctx.vary('Origin');
    ctx.set('Access-Control-Expose-Headers', EXPOSED);
    if (ctx.method === 'OPTIONS' && ctx.get('Access-Control-Request-Method')) {
      ctx.set('Access-Control-Allow-Methods', 'GET, HEAD, PUT, POST, DELETE, PATCH, OPTIONS');
      const asked = ctx.get('Access-Control-Request-Headers');
      if (asked) ctx.set('Access-Control-Allow-Headers', asked);
      ctx.set('Access-Control-Max-Age', '600');
      ctx.status = 204;
      return;
    }
    await next();
  };
}
