/**
 * Builds the parts (store, pool, Koa app) from a config and wires them; owns their lifecycle.
 *
 *   koa-logger (text mode) → error boundary (request id) → /_/…: CORS → body parser → admin
 *                                                        else:  CORS → body parser → runFaaS
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import koaLogger from 'koa-logger';
import { adminRoutes } from './http/admin';
import { TrafficSeries } from './http/admin-console-data';
import { asyncWorker, tickHandler } from './async/async-runner';
import { respondAsync } from './http/respond-async';
import type { Config } from './config';
import {
  ExpectationFailedError,
  KvUnavailableError,
  ShuttingDownError,
  toErrorBody,
} from './errors';
import type { FaasError } from './errors';
import { errorBoundary, requestIdFor, tooLarge } from './http/error-handler';
import type { RequestObserver } from './http/error-handler';
import { lingerAfter } from './http/linger';
import type { LingerObserver } from './http/linger';
import { Metrics } from './observe/metrics';
import { InvocationRecords, IsoTime } from './observe/records';
import type { RecordLog } from './observe/records';
import { SharedRecords } from './observe/shared-records';
import { FunctionStore } from './functions/function-store';
import { SharedFunctions } from './functions/shared-functions';
import { stopCompiler } from './functions/transform';
import { CallbackSender } from './async/callbacks';
import { createEgressPolicy, parseEgressAllow } from './services/egress';
import type { EgressPolicy } from './services/egress';
import { hostCalls } from './services/host-calls';
import { createStores } from './services/kv';
import type { Stores } from './services/kv';
import { createAsyncQueue } from './async/queue';
import type { AsyncQueue } from './async/queue';
import { BullTicker } from './async/schedules/bullmq-ticker';
import { CronTicker } from './async/schedules/cron-ticker';
import { Schedules } from './async/schedules/schedules';
import type { HostCall, HostReply } from './pool/sandbox-pool';
import { body } from './http/body';
import { cors } from './http/cors';
import { isAdminPath, lockAdminAnswer, sandboxFunctionAnswer } from './http/function-sandbox';
import type { Logger } from './observe/logger';
import { resolveTarget, runFaaS } from './http/run-faas';
import { toResponse } from './invocation/response';
import { SandboxPool } from './pool/sandbox-pool';
import { setupConfinement, workerReadPaths } from './pool/confinement';
import type { WorkerConfinement } from './pool/confinement';

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

const round = <T extends number | undefined>(ms: T): T =>
  (ms === undefined ? ms : Math.round(ms * 100) / 100) as T;

const NOT_READY = {
  ok: false,
  r: JSON.stringify({
    name: 'Error',
    message: 'the services are not open yet',
    code: 'KV_UNAVAILABLE',
  }),
};

export function createServer(config: Readonly<Config>, logger: Logger): FaasServer {
  // The KV and secret stores (SQLite in DATA_DIR, or Redis), opened by listen().
  let stores: Stores | undefined;
  let serveCall: ((call: HostCall) => Promise<HostReply>) | undefined;
  const openStores = (): Stores => {
    if (!stores) throw new KvUnavailableError('the store is not open yet');
    return stores;
  };
  // The async queue, its callbacks and the schedules (docs/spec.md §9), opened by listen() too.
  let queue: AsyncQueue | undefined;
  let egress: EgressPolicy | undefined;
  let callbacks: CallbackSender | undefined;
  let schedules: Schedules | undefined;
  const openQueue = (): AsyncQueue => {
    if (!queue) throw new KvUnavailableError('the async queue is not open yet');
    return queue;
  };
  // With REDIS_URL, API deploys are shared by every replica (docs/spec.md §10).
  const shared = config.redisUrl
    ? new SharedFunctions({ redisUrl: config.redisUrl, logger })
    : undefined;
  const store = new FunctionStore({
    dir: config.functionsDir,
    logger,
    shared,
    limits: { maxTimeoutMs: config.maxTimeoutMs },
    // Each new version is loaded once on a worker (kept warm there), which reports its config.
    load: async (fn, compiled) => {
      const loaded = await pool.run({
        name: fn.name,
        version: fn.version,
        source: compiled.code,
        file: compiled.filename,
        eventJson: '',
        requestId: `load-${fn.version}`,
        check: true,
        keep: true,
      });
      return toResponse(loaded.outcome).body as string;
    },
  });
  const pool = new SandboxPool({
    workers: config.workers,
    timeoutMs: config.timeoutMs,
    isolation: config.isolation,
    warmContexts: config.warmContexts,
    maxResultBytes: config.maxResultBytes,
    maxQueue: config.maxQueue,
    logger,
    onWorkerExit: (reason) => metrics.workerRestarted(reason),
    onRerun: (reason) => metrics.rerun(reason),
    onQuarantine: (_entry, event) => metrics.quarantineEvent(event),
    // Service calls of invocations (docs/spec.md §8), served once the stores are open (listen).
    onCall: (call) => (serveCall ? serveCall(call) : Promise.resolve(NOT_READY)),
  });
  const records = new InvocationRecords(config.recordsMax);
  const sharedRecords = config.redisUrl
    ? new SharedRecords({ redisUrl: config.redisUrl, local: records, logger })
    : undefined;
  const recordLog: RecordLog = sharedRecords ?? records;
  const metrics = new Metrics(() => pool.stats());
  const traffic = new TrafficSeries(metrics);
  let closing = false;
  const startedAt = Date.now();

  // One place turns a finished request into its record and its metrics.
  const isoTime = new IsoTime();
  const observe: RequestObserver = (ctx, state, totalMs) => {
    if (state.fn === undefined || ctx.path.startsWith('/_/')) return;
    // An async request was only queued (respond-async.ts): its attempts are observed as they run.
    if (state.outcome === 'queued') return;
    const outcome = state.outcome as string;
    const exists = state.version !== undefined;
    metrics.observeInvocation({
      fn: exists ? state.fn : undefined,
      outcome,
      totalMs,
      queueMs: state.queueMs,
      cold: state.cold,
    });
    if (!exists) return;
    recordLog.add({
      requestId: state.requestId,
      function: state.fn,
      version: state.version as string,
      start: isoTime.format(Date.now() - totalMs),
      status: ctx.status,
      outcome,
      cold: state.cold,
      effects: state.effects,
      ...(state.reruns ? { reruns: state.reruns } : {}),
      ...(state.solo ? { solo: true } : {}),
      durationMs: { queue: round(state.queueMs), exec: round(state.execMs), total: round(totalMs) },
      logs: state.logs ?? [],
    });
  };

  const lingered: LingerObserver = (outcome) => metrics.lingeringClose(outcome);

  const app = new Koa();
  app.proxy = false;
  // In text mode koa-logger prints its access lines; in JSON mode the error boundary's one
  // structured line per request (with request id, function, version, outcome) replaces them, and
  // koa-logger is not mounted at all (formatting a line it throws away was ~6 % of a request).
  if (config.logFormat === 'text') app.use(koaLogger());
  app.use(errorBoundary(logger, observe, lingered));
  const corsHeaders = cors(config.corsOrigin, (ctx) => {
    // A path that does not resolve gets the server's CORS (its error is runFaaS's to answer).
    const target = resolveTarget(ctx, store);
    if (!(target instanceof Promise)) return target.fn.config.cors === 'function';
    return target.then(
      ({ fn }) => fn.config.cors === 'function',
      () => false,
    );
  });
  const bodyParser = body(config.maxBodyBytes);
  const secrets = (names: readonly string[]) => openStores().secrets.values(names);
  const invoke = runFaaS({
    store,
    pool,
    secrets,
    respondAsync: respondAsync({
      queue: openQueue,
      egress: () => egress as EgressPolicy,
      accepted: (fn) => metrics.asyncAccepted(fn),
    }),
  });
  const done = () => Promise.resolve();
  // A function's request goes CORS → body → runFaaS in one step: the admin router never takes a
  // path outside /_/, and each Koa layer it skips costs a promise and a closure per request.
  // Invocations admitted before a stop are finished (a first call waits for its version's load
  // on a worker, from CORS on, before it reaches the pool); new ones are refused while draining.
  let inFlight = 0;
  app.use(async (ctx, next) => {
    if (isAdminPath(ctx.path)) {
      // JSON that may quote a function's output: never a page (function-sandbox.ts).
      lockAdminAnswer(ctx.res);
      return next();
    }
    // Every answer for a function path is sandboxed, the server's own ones included.
    sandboxFunctionAnswer(ctx.res);
    if (closing) throw new ShuttingDownError('the server is shutting down');
    inFlight++;
    try {
      await corsHeaders(ctx, () => bodyParser(ctx, () => invoke(ctx, done)));
    } finally {
      inFlight--;
    }
  });
  // The admin routes (/_/…): CORS → body → admin.
  app.use(corsHeaders);
  app.use(bodyParser);
  app.use(
    adminRoutes({
      store,
      pool,
      records: recordLog,
      metrics,
      adminToken: config.adminToken,
      metricsAuth: config.metricsAuth,
      configLimits: { maxTimeoutMs: config.maxTimeoutMs },
      data: {
        get kv() {
          return openStores().kv;
        },
        get secrets() {
          return openStores().secrets;
        },
      },
      async: { queue: () => queue, schedules: () => schedules?.list() ?? [] },
      closing: () => closing,
      shared: config.redisUrl ? () => stores?.kv : undefined,
      health: () => ({ isolation: confinement?.report, kv: stores?.kv.backend }),
      startedAt,
      traffic,
    }),
  );
  // Errors are answered by the boundary; this only sees failures while writing a response.
  app.on('error', (err: unknown) => logger.warn('response error', { err }));

  // Node checks header and request timeouts every connectionsCheckingInterval (30 s by
  // default), which would let a slow client hold a connection three times headersTimeout.
  const handle = app.callback();
  const server = http.createServer({ connectionsCheckingInterval: 1000 }, handle);
  // Slow clients: a request must send its headers within 10 s and finish within the invocation
  // timeout plus 30 s; idle keep-alive connections close after 5 s.
  server.headersTimeout = 10_000;
  server.requestTimeout = config.timeoutMs + 30_000;
  server.keepAliveTimeout = 5_000;
  // Malformed requests, unknown methods, oversized headers (Node's 16 KiB limit) and header
  // timeouts never reach Koa: answer them in the SPEC's JSON shape too, then close.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const [status, code] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'HEADERS_TOO_LARGE']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'REQUEST_TIMEOUT']
          : [400, 'BAD_REQUEST'];
    const requestId = randomUUID();
    const body = JSON.stringify({
      error: { code, message: `${http.STATUS_CODES[status]}: ${err.code ?? 'malformed request'}` },
      requestId,
    });
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nX-Request-Id: ${requestId}\r\n` +
        `Access-Control-Allow-Origin: ${config.corsOrigin}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });

  /**
   * Answers a request Koa never sees, in the JSON shape of docs/spec.md §3 with the request id and CORS
   * headers of every response, logged like the error boundary logs; the connection closes, after
   * discarding (bounded) a body the client sends anyway, so that it reads this answer first
   * (linger.ts).
   */
  const refuse = (req: http.IncomingMessage, res: http.ServerResponse, err: FaasError) => {
    const started = performance.now();
    const requestId = requestIdFor(req.headers['x-request-id']);
    const { status, body } = toErrorBody(err, requestId);
    const text = JSON.stringify(body);
    lingerAfter(req, res, lingered);
    if (isAdminPath((req.url ?? '/').split('?')[0])) lockAdminAnswer(res);
    else sandboxFunctionAnswer(res);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
      'X-Request-Id': requestId,
      'Access-Control-Allow-Origin': config.corsOrigin,
      ...(config.corsOrigin === '*' ? {} : { Vary: 'Origin' }),
      ...err.headers,
      Connection: 'close',
    });
    res.end(text);
    logger.child({ reqId: requestId }).info('request', {
      method: req.method,
      path: (req.url ?? '/').split('?')[0],
      status,
      ms: Math.round((performance.now() - started) * 100) / 100,
      outcome: body.error.code,
    });
  };

  // `Expect` (RFC 9110 §10.1.1). Left to Node, every upload gets `100 Continue` and MAX_BODY
  // refuses it only after the client has sent it all. A Content-Length over MAX_BODY is refused
  // instead of `100 Continue`, so the body is never sent; a chunked upload, whose size is not
  // known yet, gets `100 Continue` and the body parser's streaming limit, as without Expect.
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (Number(req.headers['content-length'] ?? 0) > config.maxBodyBytes) {
      refuse(req, res, tooLarge(`request body is over ${config.maxBodyBytes} bytes`));
      return;
    }
    res.writeContinue();
    void handle(req, res);
  });
  // Any other expectation: 417 in our shape (Node's own 417 has no body, request id or CORS).
  server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) =>
    refuse(req, res, new ExpectationFailedError('only "Expect: 100-continue" is supported')),
  );

  /** Starts the async work: attempts (at most ASYNC_CONCURRENCY), callbacks, schedules. */
  const startAsync = (policy: EgressPolicy) => {
    const opened = openQueue();
    callbacks = new CallbackSender({
      policy,
      maxBytes: Math.max(config.maxResultBytes, config.fetchMaxBytes),
      logger,
      record: (id, callback) => opened.setCallback(id, callback),
      observe: (outcome) => metrics.callback(outcome),
      perOrigin: config.callbacksPerOrigin,
    });
    opened.start(
      asyncWorker({
        store,
        pool,
        secrets,
        records: recordLog,
        metrics,
        logger,
        callbacks,
        concurrency: config.asyncConcurrency,
      }),
    );
    const tick = tickHandler({
      store,
      queue: openQueue,
      metrics,
      logger,
      records: recordLog,
      skipped: ({ entry, scheduledTime }) => schedules?.noteSkipped(entry, scheduledTime),
    });
    const ticker = config.redisUrl
      ? new BullTicker({
          redisUrl: config.redisUrl,
          tick,
          miss: (entry) => metrics.scheduleMiss(entry.function),
          logger,
        })
      : new CronTicker(tick);
    schedules = new Schedules(store, ticker, logger);
  };

  let closed: Promise<void> | undefined;
  let confinement: WorkerConfinement | undefined;
  return {
    app,
    store,
    pool,
    records,
    recordLog,
    metrics,
    async listen() {
      await shared?.start();
      await store.start();
      confinement = await setupConfinement({
        memoryMb: config.workerMemoryMb,
        cpuQuota: config.workerCpuQuota,
        user: config.workerUser,
        readPaths: workerReadPaths(),
        logger,
      });
      stores = await createStores({
        dataDir: config.dataDir,
        redisUrl: config.redisUrl,
        kvMaxValue: config.kvMaxValue,
        kvMaxBytes: config.kvMaxBytes,
        logger,
      });
      queue = await createAsyncQueue({
        dataDir: config.dataDir,
        redisUrl: config.redisUrl,
        maxQueued: config.maxAsyncQueue,
        logger,
      });
      metrics.asyncDepth = () => openQueue().depth();
      await pool.start(confinement);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      // The server's own address is refused to fetch, even when public (docs/spec.md §8).
      egress = createEgressPolicy({
        mode: config.egress,
        allow: parseEgressAllow(config.egressAllow),
        ownAddresses: [{ address: address.address, port: address.port }],
      });
      serveCall = hostCalls({
        kv: stores.kv,
        egress,
        fetchMaxBytes: config.fetchMaxBytes,
        logger,
        observe: (op, backend, outcome, seconds) =>
          metrics.serviceCall(op, backend, outcome, seconds),
      });
      startAsync(egress);
      traffic.start();
      // In the background: finding the schedules loads their functions on workers.
      void schedules?.start();
      return address;
    },
    close() {
      closed ??= (async () => {
        closing = true;
        traffic.stop();
        // No new ticks or attempts; running attempts have the grace period, as requests do.
        const ticksStopped = schedules?.close();
        const asyncStopped = queue?.stop();
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        const until = Date.now() + config.shutdownGraceMs;
        while (inFlight > 0 && Date.now() < until) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        await pool.close(Math.max(0, until - Date.now()));
        // The pool ended what was left: those attempts were released (queued again).
        await asyncStopped;
        await ticksStopped;
        callbacks?.close();
        confinement?.close();
        store.close();
        await shared?.close();
        await sharedRecords?.close();
        await queue?.close();
        await stores?.close();
        await stopCompiler();
        server.closeAllConnections();
        await serverClosed;
      })();
      return closed;
    },
  };
}
