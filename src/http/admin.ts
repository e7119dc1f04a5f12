/**
 * The admin API under /_/ (docs/spec.md §6), registered before runFaaS. No function name can start with
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
import { consoleDataRoutes } from './admin-console-data';
import type { TrafficSeries } from './admin-console-data';
import { dataRoutes } from './admin-data';
import type { DataStores } from './admin-data';
import { draftRoutes } from './admin-drafts';
import { invocationRoutes } from './admin-invocations';
import { consoleRoutes } from './console';
import type { InvocationSources } from './admin-invocations';
import type { RequestState } from './error-handler';
import { parseFunctionConfig } from '../functions/function-config';
import type { ConfigLimits, FunctionConfig } from '../functions/function-config';
import { exactFunctionName, versionOf } from '../functions/function-source';
import { functionInfo, inUserFile } from '../functions/function-store';
import type { FunctionStore, Language } from '../functions/function-store';
import { compileFunction } from '../functions/transform';
import type { CompiledFunction } from '../functions/transform';
import type { Metrics } from '../observe/metrics';
import type { RecordLog } from '../observe/records';
import { toResponse } from '../invocation/response';
import type { SandboxPool } from '../pool/sandbox-pool';
import type { KvStore } from '../services/kv';

export interface AdminParts {
  store: FunctionStore;
  pool: SandboxPool;
  records: RecordLog;
  metrics: Metrics;
  adminToken: string | undefined;
  metricsAuth: boolean;
  /** Bounds for a deployed function's config (MAX_TIMEOUT_MS). */
  configLimits: ConfigLimits;
  /** The KV and secret stores, for /_/kv and /_/secrets (admin-data.ts). */
  data: DataStores;
  /** The async queue and the schedules, for /_/invocations and /_/schedules. */
  async?: Omit<InvocationSources, 'records'>;
  /** Whether the server is draining. */
  closing: () => boolean;
  /**
   * With REDIS_URL: the store on the shared Redis, which /_/ready pings (undefined while it is not
   * open). Without it the server needs nothing outside itself to serve.
   */
  shared?: () => KvStore | undefined;
  /** Extra figures for /_/health (e.g. what isolation is enforced). */
  health?: () => Record<string, unknown>;
  startedAt: number;
  /** Requests and errors over the last minutes, for the console (admin-console-data.ts). */
  traffic?: TrafficSeries;
}

/** How long /_/ready waits for Redis to answer a ping: a probe never hangs on a Redis that is away. */
export const READY_PING_MS = 500;

/** Whether the store answers a ping within `ms` (a late answer counts as none). */
async function answers(kv: KvStore | undefined, ms: number): Promise<boolean> {
  if (kv === undefined) return false;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([kv.ping().catch(() => false), late]);
  } finally {
    clearTimeout(timer);
  }
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
  return exactFunctionName(ctx.path.slice('/_/functions'.length));
}

const TYPESCRIPT = /^(application|text)\/(x-)?typescript$/i;

/**
 * The source of a deploy and its language: a JavaScript or text body (TypeScript with
 * `Content-Type: application/typescript`), or JSON `{ "source": "…", "language"?: "js" | "ts" }`.
 */
function sourceFromBody(ctx: Context): { source: string; language: Language } {
  const body = (ctx.request as { body?: unknown }).body;
  if (typeof body === 'string') {
    const source = ctx.state.bodyIsBase64 ? Buffer.from(body, 'base64').toString('utf8') : body;
    return { source, language: TYPESCRIPT.test(ctx.request.type) ? 'ts' : 'js' };
  }
  const { source, language = 'js' } = (body ?? {}) as { source?: unknown; language?: unknown };
  if (typeof source === 'string' && (language === 'js' || language === 'ts')) {
    return { source, language };
  }
  throw new InvalidBodyError(
    'send the source as the body (application/javascript, application/typescript or text/plain) ' +
      'or as JSON {"source": "…", "language": "js" | "ts"}',
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
  const { store, pool, records, metrics, closing, startedAt, configLimits } = parts;
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

  // Readiness: live workers and not draining; what an orchestrator routes traffic by. With
  // REDIS_URL it also says whether Redis answers a ping, but an outage does not fail it: every
  // replica shares that Redis, so failing them all would take the whole service down while the
  // functions they hold can still answer (docs/spec.md §10); the calls that need Redis fail fast instead.
  router.get('/ready', async (ctx) => {
    const stats = pool.stats();
    if (closing() || stats.closing) throw new ShuttingDownError('the server is shutting down');
    const redis = parts.shared
      ? (await answers(parts.shared(), READY_PING_MS))
        ? { redis: 'ok' }
        : {
            redis: 'unavailable',
            error: {
              code: 'KV_UNAVAILABLE',
              message: `Redis (REDIS_URL) did not answer a ping within ${READY_PING_MS} ms`,
            },
          }
      : {};
    const status =
      stats.workers === 0 ? 'starting' : redis.redis === 'unavailable' ? 'degraded' : 'ready';
    ctx.status = stats.workers > 0 ? 200 : 503;
    ctx.body = { status, ...redis, pool: stats };
  });

  const metricsRoute = async (ctx: Context) => {
    ctx.type = metrics.contentType;
    ctx.body = await metrics.render();
  };
  if (parts.metricsAuth) router.get('/metrics', auth, metricsRoute);
  else router.get('/metrics', metricsRoute);

  /** Whether this version is quarantined (docs/spec.md §3), and why: it runs alone until it runs clean. */
  const quarantineOf = (name: string, version: string | undefined) => {
    const entry = pool.quarantineOf(name);
    if (entry === undefined || entry.version !== version) return { quarantined: false };
    const { since, reason, strikes, cleanRuns, cleanRunsNeeded } = entry;
    return {
      quarantined: true,
      quarantine: { since, reason, strikes, cleanRuns, cleanRunsNeeded },
    };
  };

  router.get('/functions', async (ctx) => {
    const counts = await metrics.invocationCounts();
    const functions = (await store.list()).map((fn) => ({
      ...fn,
      ...quarantineOf(fn.name, fn.version),
      invocations: counts.get(fn.name) ?? {},
    }));
    ctx.body = { functions };
  });

  router.get('/functions/*name', auth, async (ctx) => {
    const name = nameParam(ctx);
    const fn = await store.get(name);
    const counts = await metrics.invocationCounts();
    ctx.body = {
      ...functionInfo(fn),
      ...quarantineOf(name, fn.version),
      invocations: counts.get(name) ?? {},
      source: fn.source,
    };
  });

  // A deploy: compile, load in a throwaway sandbox (it must yield a function, in time, with a
  // valid config), then write the file atomically.
  router.put('/functions/*name', auth, async (ctx) => {
    const state = ctx.state as RequestState;
    const name = nameParam(ctx);
    const { source, language } = sourceFromBody(ctx);
    const file = `${name}.${language}`;
    let config: FunctionConfig;
    let compiled: CompiledFunction | undefined;
    try {
      compiled = await compileFunction(source, file);
      const checked = await pool.run({
        name,
        version: versionOf(source, file),
        source: compiled.code,
        file: compiled.filename,
        eventJson: '',
        requestId: state.requestId,
        check: true,
      });
      config = parseFunctionConfig(toResponse(checked.outcome).body as string, configLimits);
    } catch (err) {
      throw refusedDeploy(inUserFile(compiled, err));
    }
    const { created } = await store.write(name, source, language);
    ctx.status = created ? 201 : 200;
    const version = versionOf(source, file);
    ctx.body = { name, file, version, bytes: Buffer.byteLength(source), config };
  });

  router.delete('/functions/*name', auth, async (ctx) => {
    await store.remove(nameParam(ctx));
    ctx.status = 204;
  });

  dataRoutes(router, parts.data, auth);

  // The web console (docs/spec.md §11): its assets, its draft runs and its figures.
  consoleRoutes(router);
  draftRoutes(router, { pool, data: parts.data, configLimits }, auth);
  consoleDataRoutes(router, { records, metrics, traffic: parts.traffic }, auth);

  invocationRoutes(
    router,
    {
      records,
      queue: () => parts.async?.queue(),
      schedules: () => parts.async?.schedules() ?? [],
    },
    auth,
  );

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
