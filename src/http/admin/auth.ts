/**
 * The admin API's bearer token (docs/spec.md §6): `Authorization: Bearer <ADMIN_TOKEN>`, compared
 * in constant time. Without a token every guarded route answers 403 (disabled), never 401.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Middleware, Next } from 'koa';
import { ForbiddenError, UnauthorizedError } from '../../errors';

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Bearer-token check, in constant time (both sides hashed to equal length first). */
export function requireToken(token: string | undefined): Middleware {
  const expected = token === undefined ? undefined : digest(token);
  return async (ctx: Context, next: Next) => {
    if (!expected) {
      throw new ForbiddenError(
        'this admin route is disabled: start the server with ADMIN_TOKEN set to enable it',
      );
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
    if (!match || !timingSafeEqual(digest(match[1]), expected)) {
      ctx.set('WWW-Authenticate', 'Bearer realm="koa-faas admin"');
      throw new UnauthorizedError(
        match ? 'the bearer token is not valid' : 'send Authorization: Bearer <ADMIN_TOKEN>',
      );
    }
    await next();
  };
}
