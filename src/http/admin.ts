/**
 * The admin API under /_/ (SPEC §6), registered before runFaaS. No function name can start with
 * `_`, so these paths never shadow a function. Routes that write, or reveal source or records,
 * need `Authorization: Bearer <ADMIN_TOKEN>`; health, readiness and (unless METRICS_AUTH) metrics
 * are open.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context, Middleware, Next } from 'koa';
import {
  ForbiddenError,
  FunctionCompileError,
  FunctionTimeoutError,
  WorkerCrashedError,
  InvalidBodyError,
  MethodNotAllowedError,
  NotFoundError,
  ShuttingDownError,
  UnauthorizedError,
} from '../errors';
import type { RequestState } from './error-handler';
import { functionNameFromPath, hashSource } from '../functions/function-source';
import { checkSyntax } from '../functions/compile-errors';
import { functionInfo } from '../functions/function-store';
import type { FunctionStore } from '../functions/function-store';
import type { Metrics } from '../observe/metrics';
import type { InvocationRecords } from '../observe/records';
import { toResponse } from './response';
import type { SandboxPool } from '../pool/sandbox-pool';

export interface AdminParts {
  store: FunctionStore;
  pool: SandboxPool;
  records: InvocationRecords;
  metrics: Metrics;
  adminToken: string | undefined;
  metricsAuth: boolean;
  /** Whether the server is draining. */
  closing: () => boolean;
  /** Extra figures for /_/health (e.g. what isolation is enforced). */
  health?: () => Record<string, unknown>;
  startedAt: number;
}

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

/** The function name in /_/functions/<name>, taken from the raw (undecoded) path. */
function nameParam(ctx: Context): string {
  return functionNameFromPath(ctx.path.slice('/_/functions'.length));
}

/** The source of a deploy: a JavaScript or text body, or JSON `{ "source": "…" }`. */
function sourceFromBody(ctx: Context): string {
  const body = (ctx.request as { body?: unknown }).body;
  if (typeof body === 'string') {
    return ctx.state.bodyIsBase64 ? Buffer.from(body, 'base64').toString('utf8') : body;
  }
  if (
    body &&
    typeof body === 'object' &&
    typeof (body as { source?: unknown }).source === 'string'
  ) {
    return (body as { source: string }).source;
  }
  throw new InvalidBodyError(
    'send the source as the body (application/javascript or text/plain) or as JSON {"source": "…"}',
  );
}

/** A deploy whose file fails to load is a 422, whether it threw, hung or crashed its worker. */
function refusedDeploy(err: unknown): unknown {
  if (err instanceof FunctionCompileError) {
    err.statusCode = 422;
    return err;
  }
  if (err instanceof FunctionTimeoutError || err instanceof WorkerCrashedError) {
    const refused = new FunctionCompileError(`the file does not load: ${err.message}`);
    refused.statusCode = 422;
    return refused;
  }
  return err;
}

export function adminRoutes(parts: AdminParts): Middleware {
  const { store, pool, records, metrics, closing, startedAt } = parts;
  const auth = requireToken(parts.adminToken);
  const router = new Router({ prefix: '/_' });

  // Liveness: the process answers and is not draining.
  router.get('/health', (ctx) => {
    if (closing()) throw new ShuttingDownError('the server is shutting down');
    ctx.body = {
      status: 'ok',
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      pool: pool.stats(),
      ...parts.health?.(),
    };
  });

  // Readiness: live workers and not draining; what an orchestrator routes traffic by.
  router.get('/ready', (ctx) => {
    const stats = pool.stats();
    if (closing() || stats.closing) throw new ShuttingDownError('the server is shutting down');
    ctx.status = stats.workers > 0 ? 200 : 503;
    ctx.body = { status: stats.workers > 0 ? 'ready' : 'starting', pool: stats };
  });

  const metricsRoute = async (ctx: Context) => {
    ctx.type = metrics.contentType;
    ctx.body = await metrics.render();
  };
  if (parts.metricsAuth) router.get('/metrics', auth, metricsRoute);
  else router.get('/metrics', metricsRoute);

  router.get('/functions', async (ctx) => {
    const counts = await metrics.invocationCounts();
    const functions = (await store.list()).map((fn) => ({
      ...fn,
      invocations: counts.get(fn.name) ?? {},
    }));
    ctx.body = { functions };
  });

  router.get('/functions/*name', auth, async (ctx) => {
    const name = nameParam(ctx);
    const fn = await store.get(name);
    const counts = await metrics.invocationCounts();
    ctx.body = { ...functionInfo(fn), invocations: counts.get(name) ?? {}, source: fn.source };
  });

  router.put('/functions/*name', auth, async (ctx) => {
    const state = ctx.state as RequestState;
    const name = nameParam(ctx);
    const source = sourceFromBody(ctx);
    const version = hashSource(source);
    const syntax = checkSyntax(source, name);
    if (syntax) throw Object.assign(syntax, { statusCode: 422 });
    // Run the file's top level in a throwaway sandbox: it must yield a function, in time.
    try {
      const checked = await pool.run({
        name,
        version,
        source,
        eventJson: '',
        requestId: state.requestId,
        check: true,
      });
      toResponse(checked.outcome);
    } catch (err) {
      throw refusedDeploy(err);
    }
    const { created } = await store.write(name, source);
    ctx.status = created ? 201 : 200;
    ctx.body = { name, version, bytes: Buffer.byteLength(source) };
  });

  router.delete('/functions/*name', auth, async (ctx) => {
    await store.remove(nameParam(ctx));
    ctx.status = 204;
  });

  router.get('/invocations', auth, (ctx) => {
    const limit = Number(ctx.query.limit ?? 100);
    if (!Number.isInteger(limit) || limit < 1) {
      throw new InvalidBodyError('limit must be a positive whole number');
    }
    const one = (value: unknown) => (typeof value === 'string' ? value : undefined);
    ctx.body = {
      invocations: records.query({
        fn: one(ctx.query.fn),
        status: one(ctx.query.status),
        limit: Math.min(limit, records.max),
      }),
    };
  });

  router.get('/invocations/:id', auth, (ctx) => {
    const record = records.get(ctx.params.id);
    if (!record) throw new NotFoundError(`no invocation record for '${ctx.params.id}'`);
    ctx.body = record;
  });

  const routes = router.routes() as unknown as Middleware;
  return async (ctx, next) => {
    if (ctx.path !== '/_' && !ctx.path.startsWith('/_/')) return next();
    await routes(ctx, async () => {
      // No route took it: a known path with another method is 405, anything else 404.
      if (router.match(ctx.path, ctx.method).path.length > 0) {
        throw new MethodNotAllowedError(`${ctx.method} is not allowed on ${ctx.path}`);
      }
      throw new NotFoundError(`no admin route ${ctx.method} ${ctx.path}`);
    });
  };
}
