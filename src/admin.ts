/**
 * The admin API under /_/ (SPEC §6), registered before runFaaS. No function name can start with
 * `_`, so these paths never shadow a function.
 */
import Router from '@koa/router';
import type { Middleware } from 'koa';
import { MethodNotAllowedError, RouteNotFoundError, ShuttingDownError } from './errors';
import type { FunctionStore } from './function-store';
import type { SandboxPool } from './sandbox-pool';

export interface AdminParts {
  store: FunctionStore;
  pool: SandboxPool;
  /** Whether the server is draining. */
  closing: () => boolean;
  startedAt: number;
}

export function adminRoutes({ store, pool, closing, startedAt }: AdminParts): Middleware {
  const router = new Router({ prefix: '/_' });

  // Liveness: the process answers and is not draining.
  router.get('/health', (ctx) => {
    if (closing()) throw new ShuttingDownError('the server is shutting down');
    ctx.body = {
      status: 'ok',
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      pool: pool.stats(),
    };
  });

  // Readiness: live workers and not draining; what an orchestrator routes traffic by.
  router.get('/ready', (ctx) => {
    const stats = pool.stats();
    if (closing() || stats.closing) throw new ShuttingDownError('the server is shutting down');
    ctx.status = stats.workers > 0 ? 200 : 503;
    ctx.body = { status: stats.workers > 0 ? 'ready' : 'starting', pool: stats };
  });

  router.get('/functions', async (ctx) => {
    ctx.body = { functions: await store.list() };
  });

  const routes = router.routes() as unknown as Middleware;
  return async (ctx, next) => {
    if (ctx.path !== '/_' && !ctx.path.startsWith('/_/')) return next();
    await routes(ctx, async () => {
      // No route took it: a known path with another method is 405, anything else 404.
      if (router.match(ctx.path, ctx.method).path.length > 0) {
        throw new MethodNotAllowedError(`${ctx.method} is not allowed on ${ctx.path}`);
      }
      throw new RouteNotFoundError(`no admin route ${ctx.method} ${ctx.path}`);
    });
  };
}
