/**
 * Liveness, readiness and metrics (docs/spec.md §6): `/_/health`, `/_/ready` (what an
 * orchestrator routes traffic by) and `/_/metrics` (Prometheus text; behind the token with
 * METRICS_AUTH).
 */
import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import { ShuttingDownError } from '../../errors';
import type { Metrics } from '../../observe/metrics';
import type { SandboxPool } from '../../pool/sandbox-pool';
import type { KvStore } from '../../services/kv';
import type { HealthAnswer, HealthExtras, ReadyAnswer } from './api';

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

export interface HealthSources {
  pool: SandboxPool;
  metrics: Metrics;
  metricsAuth: boolean;
  /** Whether the server is draining. */
  closing: () => boolean;
  /**
   * With REDIS_URL: the store on the shared Redis, which /_/ready pings (undefined while it is not
   * open). Without it the server needs nothing outside itself to serve.
   */
  shared?: () => KvStore | undefined;
  /** Extra figures for /_/health (e.g. what confinement is enforced). */
  health?: () => HealthExtras;
  /** When the server started (epoch ms). */
  startedAt: number;
}

/** Mounts /health, /ready and /metrics on the admin router. */
export function healthRoutes(router: Router, parts: HealthSources, auth: Middleware): void {
  const { pool, metrics, closing, startedAt } = parts;
  // Liveness: the process answers and is not draining.
  router.get('/health', (ctx) => {
    if (closing()) throw new ShuttingDownError('the server is shutting down');
    const answer: HealthAnswer = {
      status: 'ok',
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      pool: pool.stats(),
      ...parts.health?.(),
    };
    ctx.body = answer;
  });

  // Readiness: live workers and not draining; what an orchestrator routes traffic by. With
  // REDIS_URL it also says whether Redis answers a ping, but an outage does not fail it: every
  // replica shares that Redis, so failing them all would take the whole service down while the
  // functions they hold can still answer (docs/spec.md §10); the calls that need Redis fail fast instead.
  router.get('/ready', async (ctx) => {
    const stats = pool.stats();
    if (closing() || stats.closing) throw new ShuttingDownError('the server is shutting down');
    const redis: Pick<ReadyAnswer, 'redis' | 'error'> = parts.shared
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
    const answer: ReadyAnswer = { status, ...redis, pool: stats };
    ctx.body = answer;
  });

  const metricsRoute = async (ctx: Context) => {
    ctx.type = metrics.contentType;
    ctx.body = await metrics.render();
  };
  if (parts.metricsAuth) router.get('/metrics', auth, metricsRoute);
  else router.get('/metrics', metricsRoute);
}
