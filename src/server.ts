/**
 * Builds the server's parts from a config, wires them, and owns their lifecycle. The request
 * path reads top to bottom as the design card draws it (docs/architecture.md):
 *
 *   koa-logger → error boundary → drain gate → CORS → body (koa-bodyparser) → admin (/_/) → runFaaS
 *                                                         → sandbox pool (safeify) → vm2
 */
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import koaLogger from 'koa-logger';
import { AsyncWork } from './async';
import type { Config } from './config';
import { FunctionStore } from './functions/function-store';
import { SharedFunctions } from './functions/shared-functions';
import { stopCompiler } from './functions/transform';
import { adminRoutes } from './http/admin';
import { TrafficSeries } from './http/admin/console-data';
import { InvocationStreams } from './http/admin/invocation-stream';
import { body } from './http/body';
import { cors } from './http/cors';
import { Drain } from './http/drain';
import { errorBoundary } from './http/error-handler';
import type { LingerObserver } from './http/linger';
import { createNodeServer, listen } from './http/node-server';
import { recordRequests } from './http/request-records';
import { respondAsync } from './http/respond-async';
import { functionCors, runFaaS } from './http/run-faas';
import { loadOnPool } from './invocation/invoke';
import type { Logger } from './observe/logger';
import { Metrics } from './observe/metrics';
import type { InvocationRecords, RecordLog } from './observe/records';
import { serverRecords } from './observe/shared-records';
import { confineWorkers } from './pool/confinement';
import type { WorkerConfinement } from './pool/confinement';
import { SandboxPool } from './pool/sandbox-pool';
import { Services } from './services';

export interface FaasServer {
  app: Koa;
  store: FunctionStore;
  pool: SandboxPool;
  /** This replica's records (with REDIS_URL, the cluster's are in `recordLog`). */
  records: InvocationRecords;
  /** Where records go and are read from: `records`, or with REDIS_URL the cluster's. */
  recordLog: RecordLog;
  metrics: Metrics;
  /** Starts the pool and the store, then listens; resolves with the bound address. */
  listen(): Promise<AddressInfo>;
  /**
   * Graceful stop: refuse new invocations (503 SHUTTING_DOWN), stop accepting connections, let
   * in-flight invocations finish within the grace period, end every worker. Idempotent.
   */
  close(): Promise<void>;
}

export function createServer(config: Readonly<Config>, logger: Logger): FaasServer {
  // The parts. The services (KV, secrets, fetch) open in listen(); the pool serves their calls.
  const services = new Services({
    ...config,
    logger,
    observe: (op, backend, outcome, seconds) => metrics.serviceCall(op, backend, outcome, seconds),
  });
  let confinement: WorkerConfinement | undefined;
  const pool = new SandboxPool({
    // WORKERS, TIMEOUT_MS, FUNCTION_ISOLATION, WARM_CONTEXTS, MAX_RESULT_BYTES, MAX_QUEUE.
    ...config,
    logger,
    onWorkerExit: (reason) => metrics.workerRestarted(reason),
    onRerun: (reason) => metrics.rerun(reason),
    onQuarantine: (_entry, event) => metrics.quarantineEvent(event),
    // Service calls of invocations (docs/spec.md §8), served once the stores are open.
    onCall: (call) => services.serveCall(call),
  });
  // With REDIS_URL, API deploys and records are shared by every replica (docs/spec.md §10).
  const shared = config.redisUrl
    ? new SharedFunctions({ redisUrl: config.redisUrl, logger })
    : undefined;
  const store = new FunctionStore({
    dir: config.functionsDir,
    logger,
    shared,
    limits: { maxTimeoutMs: config.maxTimeoutMs },
    // Each new version is loaded once on a worker (kept warm there), which reports its config.
    load: loadOnPool(pool),
    maxBundleBytes: config.maxBundleBytes,
  });
  const records = serverRecords({ ...config, logger });
  const metrics = new Metrics(() => pool.stats());
  const traffic = new TrafficSeries(metrics);
  const work = new AsyncWork({
    ...config,
    store,
    pool,
    secrets: services.secretValues,
    records: records.log,
    metrics,
    logger,
  });
  const drain = new Drain();
  // The admin streams of records (/_/invocations/stream): ended when a stop begins.
  const streams = new InvocationStreams(records.log);
  const startedAt = Date.now();
  const lingered: LingerObserver = (outcome) => metrics.lingeringClose(outcome);

  // The request path.
  const app = new Koa();
  app.proxy = false;
  // In text mode koa-logger prints its access lines; in JSON mode the error boundary's one
  // structured line per request (request id, function, version, outcome) replaces them.
  if (config.logFormat === 'text') app.use(koaLogger());
  app.use(errorBoundary(logger, recordRequests(metrics, records.log), lingered));
  app.use(drain.gate);
  app.use(cors(config.corsOrigin, functionCors(store)));
  app.use(body(config));
  app.use(
    adminRoutes({
      ...config, // ADMIN_TOKEN, METRICS_AUTH
      store,
      pool,
      records: records.log,
      metrics,
      configLimits: { maxTimeoutMs: config.maxTimeoutMs },
      data: services,
      async: { queue: () => work.openQueue, schedules: () => work.schedules() },
      streams,
      closing: () => drain.closing,
      shared: config.redisUrl ? () => services.openKv : undefined,
      health: () => ({ isolation: confinement?.report, kv: services.openKv?.backend }),
      startedAt,
      traffic,
    }),
  );
  app.use(
    runFaaS({
      store,
      pool,
      secrets: services.secretValues,
      respondAsync: respondAsync({
        queue: () => work.queue,
        egress: () => services.egress,
        accepted: (fn) => metrics.asyncAccepted(fn),
      }),
    }),
  );
  // Errors are answered by the boundary; this only sees failures while writing a response.
  app.on('error', (err: unknown) => logger.warn('response error', { err }));
  const server = createNodeServer(app.callback(), { ...config, logger, lingered });

  let closed: Promise<void> | undefined;
  return {
    app,
    store,
    pool,
    records: records.local,
    recordLog: records.log,
    metrics,
    async listen() {
      await shared?.start();
      await store.start();
      confinement = await confineWorkers(config, logger);
      await services.open();
      await work.open();
      await pool.start(confinement);
      await listen(server, config.port, config.host);
      const address = server.address() as AddressInfo;
      services.listening(address);
      work.start(services.egress);
      traffic.start();
      return address;
    },
    close() {
      closed ??= (async () => {
        drain.close();
        streams.close();
        traffic.stop();
        const workStopped = work.stop();
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        const until = Date.now() + config.shutdownGraceMs;
        await drain.settled(until);
        await pool.close(Math.max(0, until - Date.now()));
        await workStopped;
        await work.close();
        confinement?.close();
        store.close();
        await shared?.close();
        await records.close();
        await services.close();
        await stopCompiler();
        server.closeAllConnections();
        await serverClosed;
      })();
      return closed;
    },
  };
}
