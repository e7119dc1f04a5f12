/**
 * The admin API under /_/ (docs/spec.md §6): one @koa/router, registered before runFaaS, with one
 * file per group of routes beside this one (health, functions, data, drafts, invocations, the
 * console and its figures). No function name can start with `_`, so these paths never shadow a
 * function. Routes that write, or reveal source or records, need `Authorization: Bearer
 * <ADMIN_TOKEN>` (auth.ts); health, readiness and (unless METRICS_AUTH) metrics are open.
 */
import Router from '@koa/router';
import type { Middleware } from 'koa';
import { MethodNotAllowedError, NotFoundError } from '../../errors';
import type { ConfigLimits } from '../../functions/function-config';
import type { FunctionStore } from '../../functions/function-store';
import type { Metrics } from '../../observe/metrics';
import type { RecordLog } from '../../observe/records';
import type { SandboxPool } from '../../pool/sandbox-pool';
import type { KvStore } from '../../services/kv';
import { requireToken } from './auth';
import type { HealthExtras } from './api';
import { consoleRoutes } from './console';
import { consoleDataRoutes } from './console-data';
import type { TrafficSeries } from './console-data';
import { dataRoutes } from './data';
import type { DataStores } from './data';
import { draftRoutes } from './drafts';
import { functionRoutes } from './functions';
import { healthRoutes } from './health';
import { invocationRoutes } from './invocations';
import type { InvocationSources } from './invocations';
import type { InvocationStreams } from './invocation-stream';

export interface AdminParts {
  store: FunctionStore;
  pool: SandboxPool;
  records: RecordLog;
  metrics: Metrics;
  adminToken: string | undefined;
  metricsAuth: boolean;
  /** Bounds for a deployed function's config (MAX_TIMEOUT_MS). */
  configLimits: ConfigLimits;
  /** MAX_BUNDLE_BYTES, for a deployed file that imports packages. */
  maxBundleBytes?: number;
  /** The KV and secret stores, for /_/kv and /_/secrets (data.ts). */
  data: DataStores;
  /** The async queue and the schedules, for /_/invocations and /_/schedules. */
  async?: Omit<InvocationSources, 'records' | 'streams'>;
  /** The open streams of /_/invocations/stream, ended by the server when it stops. */
  streams: InvocationStreams;
  /** Whether the server is draining. */
  closing: () => boolean;
  /**
   * With REDIS_URL: the store on the shared Redis, which /_/ready pings (undefined while it is not
   * open). Without it the server needs nothing outside itself to serve.
   */
  shared?: () => KvStore | undefined;
  /** Extra figures for /_/health (e.g. what confinement is enforced). */
  health?: () => HealthExtras;
  startedAt: number;
  /** Requests and errors over the last minutes, for the console (console-data.ts). */
  traffic?: TrafficSeries;
}

export function adminRoutes(parts: AdminParts): Middleware {
  const { pool, records, metrics, configLimits } = parts;
  const auth = requireToken(parts.adminToken);
  const router = new Router({ prefix: '/_' });

  healthRoutes(router, parts, auth);
  functionRoutes(router, parts, auth);
  dataRoutes(router, parts.data, auth);

  // The web console (docs/spec.md §11): its assets, its draft runs and its figures.
  consoleRoutes(router);
  draftRoutes(
    router,
    { pool, data: parts.data, configLimits, functionsDir: () => parts.store.functionsDir },
    auth,
  );
  consoleDataRoutes(router, { records, metrics, traffic: parts.traffic }, auth);

  invocationRoutes(
    router,
    {
      records,
      queue: () => parts.async?.queue(),
      schedules: () => parts.async?.schedules() ?? [],
      streams: parts.streams,
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
