/**
 * `npm run bench`: koa-faas against a bare Koa app (the ceiling) and the seed's design (the
 * baseline), side by side on this machine, over the same `hello` function; then koa-faas alone:
 * cold first call, timeouts and recovery, memory. See BENCHMARKS.md.
 *
 *   node dist/bench/bench.js [--connections 32] [--duration 10] [--runs 3] [--warmup 2]
 *                            [--only koa-faas,bare,seed] [--soak-memory] [--json file]
 *                            [--baseline <another koa-faas checkout, built>] [--async-only]
 *
 * `--baseline` adds that checkout's koa-faas (its dist/src/main.js) to the side-by-side runs as
 * `baseline`, to measure a change against the code before it in one run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import {
  RssSampler,
  closeAgent,
  cpuBetween,
  liveServers,
  max,
  median,
  rememberTree,
  sleep,
  startServer,
  stopServer,
  timedGet,
  treeCpu,
  treeRss,
} from './measure';
import type { RunningServer, ServerSpec } from './measure';
import { measureScaling, scalingTable } from './scaling';
import type { ScalingResult } from './scaling';
import { writePlot } from './plot';

const SERVERS = ['bare', 'faas-js', 'seed', 'baseline', 'koa-faas'] as const;
type ServerName = (typeof SERVERS)[number];

const ROOT = path.join(__dirname, '..', '..');
/** The checkout the `baseline` server runs (--baseline). */
let baselineRoot: string | undefined;
const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  connections: number;
  duration: number;
  runs: number;
  warmup: number;
  only: ServerName[];
  /** The checkout `baseline` runs, when given. */
  baseline?: string;
  soakMemory: boolean;
  soakSeconds: number;
  /** Only the async phase (koa-faas alone, both backends). */
  asyncOnly: boolean;
  json?: string;
  /** 1 s per point, one run: a smoke test of the bench itself. */
  quick: boolean;
  /** The scaling sweeps (functions, body size, connections) and the plot; on by default. */
  scaling: boolean;
  /** Where the scaling plot (SVG) is written. */
  plot: string;
}

function positive(name: string, raw: string, min = 1): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be ≥ ${min}`);
  return value;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      connections: { type: 'string', default: '32' },
      duration: { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '2' },
      only: { type: 'string', default: SERVERS.join(',') },
      'soak-memory': { type: 'boolean', default: false },
      'soak-seconds': { type: 'string', default: '60' },
      'async-only': { type: 'boolean', default: false },
      json: { type: 'string' },
      baseline: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'no-scaling': { type: 'boolean', default: false },
      plot: { type: 'string', default: path.join(ROOT, 'BENCHMARKS-scaling.svg') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(
      'usage: node dist/bench/bench.js [--connections 32] [--duration 10] [--runs 3] ' +
        '[--warmup 2] [--only koa-faas,bare,seed] [--soak-memory] [--soak-seconds 60] ' +
        '[--async-only] [--json file] [--quick] [--no-scaling] [--plot file.svg]',
    );
    process.exit(0);
  }
  const only = values.only.split(',').map((s) => s.trim()) as ServerName[];
  for (const name of only) {
    if (!SERVERS.includes(name)) throw new Error(`--only: unknown server "${name}"`);
  }
  if (values.baseline !== undefined) only.push('baseline');
  else if (only.includes('baseline'))
    throw new Error('--only baseline needs --baseline <checkout>');
  const quick = values.quick;
  return {
    connections: Math.round(positive('connections', values.connections)),
    duration: quick ? 1 : positive('duration', values.duration),
    runs: quick ? 1 : Math.round(positive('runs', values.runs)),
    warmup: quick ? 0.5 : positive('warmup', values.warmup, 0),
    quick,
    scaling: !values['no-scaling'],
    plot: path.resolve(values.plot),
    // Keep the canonical order whatever order the flag lists them in.
    only: SERVERS.filter((s) => only.includes(s)),
    soakMemory: values['soak-memory'],
    soakSeconds: positive('soak-seconds', values['soak-seconds']),
    asyncOnly: values['async-only'],
    json: values.json,
    baseline: values.baseline === undefined ? undefined : path.resolve(values.baseline),
  };
}

// ---------------------------------------------------------------------------------------------
// Functions folder

const HELLO = path.join(ROOT, 'functions', 'hello.js');
const TEST_FUNCTIONS: Record<string, string> = {
  'sync-loop': '() => { while (1) {} };\n',
  // The literal case: it returns undefined at once, and the loop starts after it returned.
  'microtask-loop': '() => { const loop = () => Promise.resolve().then(loop); loop(); };\n',
  // The same loop, but the function's promise never settles: the invocation is still running.
  'microtask-loop-awaited':
    '() => new Promise(() => { const loop = () => Promise.resolve().then(loop); loop(); });\n',
};

async function makeFunctionsDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-bench-'));
  await fs.copyFile(HELLO, path.join(dir, 'hello.js'));
  for (const [name, source] of Object.entries(TEST_FUNCTIONS)) {
    await fs.writeFile(path.join(dir, `${name}.js`), source);
  }
  return dir;
}

/** Writes <dir>/<name>.js atomically (temp file + rename), as a deploy would. */
async function writeFunction(dir: string, name: string, source: string): Promise<void> {
  const temp = path.join(dir, `.${name}.${process.pid}.tmp`);
  await fs.writeFile(temp, source);
  await fs.rename(temp, path.join(dir, `${name}.js`));
}

const versionOf = (source: string) =>
  createHash('sha256').update(source).digest('hex').slice(0, 16);

// ---------------------------------------------------------------------------------------------
// Servers

function specFor(name: ServerName, dir: string, extraEnv: Record<string, string> = {}): ServerSpec {
  const env = { FUNCTIONS_DIR: dir, ...extraEnv };
  switch (name) {
    case 'bare':
      return { name, script: path.join(__dirname, 'bare-server.js'), env, readyPath: '/_/health' };
    case 'faas-js':
      return {
        name,
        script: path.join(__dirname, 'faas-js-server.js'),
        env,
        readyPath: '/health/liveness',
      };
    case 'seed':
      return { name, script: path.join(__dirname, 'seed-server.js'), env, readyPath: '/_/health' };
    case 'baseline':
    case 'koa-faas':
      return {
        name,
        script: path.join(
          name === 'baseline' ? (baselineRoot as string) : ROOT,
          'dist',
          'src',
          'main.js',
        ),
        env: { WORKERS: '2', LOG_LEVEL: 'warn', LOG_FORMAT: 'json', ...env },
        readyPath: '/_/ready',
      };
  }
}

/** Median RSS of the whole tree over ~1 s, after a 1 s settle. */
async function idleRss(server: RunningServer): Promise<{ bytes: number; processes: number }> {
  await sleep(1000);
  const samples: { bytes: number; processes: number }[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(treeRss(server.pid));
    await sleep(200);
  }
  rememberTree(server);
  return {
    bytes: median(samples.map((s) => s.bytes)),
    processes: median(samples.map((s) => s.processes)),
  };
}

// ---------------------------------------------------------------------------------------------
// Load

let currentLoad: autocannon.Instance | undefined;

function load(url: string, connections: number, duration: number): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    currentLoad = autocannon({ url, connections, duration, timeout: 10 }, (err, result) => {
      currentLoad = undefined;
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(result);
    });
  });
}

interface LoadRun {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  requests: number;
  peakRss: number;
  peakProcesses: number;
  /** CPU time per answered request, in µs: the server process, its workers, the load generator. */
  cpuServerUs: number;
  cpuWorkersUs: number;
  cpuLoadUs: number;
}

/** Where a server answers hello: faas-js-runtime serves its one function at `/`. */
const helloUrl = (server: RunningServer) =>
  server.name === 'faas-js' ? `${server.url}/` : `${server.url}/hello`;

async function measureLoad(server: RunningServer, opts: Options): Promise<LoadRun> {
  const url = helloUrl(server);
  if (opts.warmup > 0) await load(url, opts.connections, opts.warmup);
  const cpuBefore = treeCpu(server.pid);
  const loadBefore = process.cpuUsage();
  const sampler = new RssSampler(server.pid, 200).start();
  const result = await load(url, opts.connections, opts.duration);
  sampler.stop();
  const loadCpu = process.cpuUsage(loadBefore);
  const cpu = cpuBetween(server.pid, cpuBefore, treeCpu(server.pid));
  rememberTree(server);
  const perRequest = (ms: number) => (ms * 1000) / Math.max(1, result.requests.total);
  return {
    cpuServerUs: perRequest(cpu.serverMs),
    cpuWorkersUs: perRequest(cpu.workersMs),
    cpuLoadUs: perRequest((loadCpu.user + loadCpu.system) / 1000),
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
    requests: result.requests.total,
    peakRss: sampler.peak,
    peakProcesses: max(sampler.samples.map((s) => s.processes)),
  };
}

interface ServerResult {
  name: ServerName;
  idleRss: number;
  idleProcesses: number;
  runs: LoadRun[];
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  peakRss: number;
  cpuServerUs: number;
  cpuWorkersUs: number;
  cpuLoadUs: number;
}

function summarize(name: ServerName, idle: { bytes: number; processes: number }, runs: LoadRun[]) {
  return {
    name,
    idleRss: idle.bytes,
    idleProcesses: idle.processes,
    runs,
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    non2xx: runs.reduce((sum, r) => sum + r.non2xx, 0),
    peakRss: median(runs.map((r) => r.peakRss)),
    cpuServerUs: median(runs.map((r) => r.cpuServerUs)),
    cpuWorkersUs: median(runs.map((r) => r.cpuWorkersUs)),
    cpuLoadUs: median(runs.map((r) => r.cpuLoadUs)),
  } satisfies ServerResult;
}

// ---------------------------------------------------------------------------------------------
// koa-faas only: cold first call, timeouts, memory

interface ColdResult {
  /** A new file (a function never seen before), first request. */
  newFunctionMs: number[];
  /**
   * A new package function importing zod (FUNCTIONS_DIR/node_modules/zod), first request: the
   * bundle, its load on a worker (zod's top level) and the call; measured in turn with the new
   * files above, so the two are side by side.
   */
  zodFunctionMs: number[];

  /**
   * New content for an existing, warm function: from the rename to the first answer that carries
   * the new version (polling every 2 ms), and how many answers in between still had the old one.
   */
  newVersionVisibleMs: number[];
  newVersionStaleAnswers: number[];
  failures: string[];
}

// ---------------------------------------------------------------------------------------------
// KV through a function (docs/spec.md §8): incr and get per second, on each backend

interface KvFigure {
  backend: string;
  rows: { route: string; rps: number; p50: number; p99: number; non2xx: number; errors: number }[];
}

/** A redis-server on a free loopback port, in a temp folder, without persistence. */
async function startRedis(): Promise<{ url: string; stop: () => Promise<void> } | undefined> {
  const probe = spawnSync('redis-server', ['--version']);
  if (probe.error || probe.status !== 0) return undefined;
  const port = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as net.AddressInfo;
      server.close(() => resolve(free));
    });
  });
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-bench-redis-'));
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 50; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (up) break;
    await sleep(100);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGKILL');
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

async function measureKv(dir: string, opts: Options): Promise<KvFigure[]> {
  await writeFunction(
    dir,
    'kv-incr',
    "module.exports = async (e, c) => ({ n: await c.kv.incr('n') });\n",
  );
  await writeFunction(
    dir,
    'kv-get',
    "module.exports = async (e, c) => {\n  const v = await c.kv.get('k');\n  if (v === null) await c.kv.put('k', { hello: 'world' });\n  return v;\n};\n",
  );
  const figures: KvFigure[] = [];
  const redis = await startRedis();
  if (!redis) console.log('koa-faas: KV on Redis skipped: redis-server is not installed');
  const backends: [string, Record<string, string>][] = [['sqlite', {}]];
  if (redis) backends.push(['redis', { REDIS_URL: redis.url }]);
  try {
    for (const [backend, env] of backends) {
      const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-bench-data-'));
      const server = await startServer(specFor('koa-faas', dir, { DATA_DIR: dataDir, ...env }));
      const figure: KvFigure = { backend, rows: [] };
      try {
        for (const route of ['/hello', '/kv-get', '/kv-incr']) {
          const url = `${server.url}${route}`;
          if (opts.warmup > 0) await load(url, opts.connections, opts.warmup);
          const result = await load(url, opts.connections, opts.duration);
          figure.rows.push({
            route,
            rps: result.requests.average,
            p50: result.latency.p50,
            p99: result.latency.p99,
            non2xx: result.non2xx,
            errors: result.errors,
          });
          console.log(
            `kv ${backend.padEnd(6)} ${route.padEnd(8)} ${fmt(result.requests.average).padStart(6)} req/s  ` +
              `p50 ${fmt(result.latency.p50, 1)} ms  p99 ${fmt(result.latency.p99, 1)} ms  non-2xx ${result.non2xx}`,
          );
        }
      } finally {
        await stopServer(server);
        await fs.rm(dataDir, { recursive: true, force: true });
      }
      figures.push(figure);
    }
  } finally {
    await redis?.stop();
  }
  return figures;
}

// ---------------------------------------------------------------------------------------------
// Async invocations (docs/spec.md §9): how fast `Prefer: respond-async` requests are accepted, and how
// fast the queue they fill is worked off, on each backend

interface AsyncFigure {
  backend: string;
  /** GET /hello synchronously, in the same instance, for scale. */
  helloRps: number;
  /** 202 answers per second while POST /hello with `Prefer: respond-async` runs. */
  enqueueRps: number;
  accepted: number;
  /** Other answers during the enqueue phase (503s of a full queue, errors). */
  refused: number;
  p99: number;
  /** Invocations queued or running when the enqueue phase ended. */
  backlog: number;
  /** Those worked off per second, once no more were coming (ASYNC_CONCURRENCY attempts at once). */
  completedRps: number;
  /** Every accepted invocation, from the first request to the queue being empty. */
  overallRps: number;
  succeeded: number;
  failed: number;
  drainTimedOut: boolean;
}

const BENCH_TOKEN = 'bench-admin-token-0123456789';

/** A figure of the server's /_/metrics text (summed over label sets matching `labels`). */
async function metric(server: RunningServer, name: string, labels = ''): Promise<number> {
  const text = (await timedGet(`${server.url}/_/metrics`, 5000)).body;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || (rest.startsWith('{') && rest.includes(labels)))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function measureAsync(dir: string, opts: Options): Promise<AsyncFigure[]> {
  const figures: AsyncFigure[] = [];
  const redis = await startRedis();
  if (!redis) console.log('koa-faas: async on Redis skipped: redis-server is not installed');
  const backends: [string, Record<string, string>][] = [['sqlite', {}]];
  if (redis) backends.push(['redis', { REDIS_URL: redis.url }]);
  const seconds = Math.min(opts.duration, 5);
  try {
    for (const [backend, env] of backends) {
      const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-bench-data-'));
      const server = await startServer(
        specFor('koa-faas', dir, {
          DATA_DIR: dataDir,
          ADMIN_TOKEN: BENCH_TOKEN,
          MAX_ASYNC_QUEUE: '1000000',
          ...env,
        }),
      );
      try {
        const helloUrl = `${server.url}/hello`;
        if (opts.warmup > 0) await load(helloUrl, opts.connections, opts.warmup);
        const hello = await load(helloUrl, opts.connections, seconds);
        const started = performance.now();
        const result = await new Promise<autocannon.Result>((resolve, reject) => {
          currentLoad = autocannon(
            {
              url: helloUrl,
              method: 'POST',
              headers: { prefer: 'respond-async' },
              connections: opts.connections,
              duration: seconds,
              timeout: 10,
            },
            (err, res) => {
              currentLoad = undefined;
              if (err) reject(err instanceof Error ? err : new Error(String(err)));
              else resolve(res);
            },
          );
        });
        const loadEnded = performance.now();
        // The server's own count: answers still in flight when the load stopped were queued too.
        const accepted = await metric(server, 'faas_async_queued_total');
        const backlog = await metric(server, 'faas_async_queue_depth');
        let drained = loadEnded;
        let drainTimedOut = false;
        for (;;) {
          const depth = await metric(server, 'faas_async_queue_depth');
          drained = performance.now();
          if (depth === 0) break;
          if (drained - loadEnded > 180_000) {
            drainTimedOut = true;
            break;
          }
          await sleep(100);
        }
        const succeeded = await metric(server, 'faas_async_finished_total', 'status="succeeded"');
        const failed = await metric(server, 'faas_async_finished_total', 'status="failed"');
        const figure: AsyncFigure = {
          backend,
          helloRps: hello.requests.total / hello.duration,
          enqueueRps: accepted / result.duration,
          accepted,
          refused: result.non2xx + result.errors,
          p99: result.latency.p99,
          backlog,
          completedRps: backlog / Math.max(0.001, (drained - loadEnded) / 1000),
          overallRps: succeeded / Math.max(0.001, (drained - started) / 1000),
          succeeded,
          failed,
          drainTimedOut,
        };
        figures.push(figure);
        console.log(
          `async ${backend.padEnd(6)} enqueue ${fmt(figure.enqueueRps).padStart(6)} req/s ` +
            `(p99 ${fmt(figure.p99, 1)} ms, refused ${figure.refused})  completed ` +
            `${fmt(figure.completedRps).padStart(6)}/s (backlog ${figure.backlog})  overall ` +
            `${fmt(figure.overallRps)}/s  hello ${fmt(figure.helloRps)} req/s` +
            (drainTimedOut ? '  (drain timed out)' : ''),
        );
      } finally {
        await stopServer(server);
        await fs.rm(dataDir, { recursive: true, force: true });
      }
    }
  } finally {
    await redis?.stop();
  }
  return figures;
}

function printAsync(figures: AsyncFigure[], opts: Options): void {
  if (figures.length > 0) {
    console.log('');
    console.log(
      `Async invocations (koa-faas, WORKERS=2, ASYNC_CONCURRENCY=1; POST /hello with Prefer: respond-async at ` +
        `${opts.connections} connections for ${Math.min(opts.duration, 5)} s, then the backlog worked off):`,
    );
    for (const f of figures) {
      console.log(
        `  ${f.backend.padEnd(6)} enqueue ${fmt(f.enqueueRps).padStart(6)}/s (p99 ${fmt(f.p99, 1)} ms)  ` +
          `completed ${fmt(f.completedRps).padStart(6)}/s  overall ${fmt(f.overallRps)}/s  ` +
          `hello (sync) ${fmt(f.helloRps)} req/s  succeeded ${f.succeeded}/${f.accepted}, failed ${f.failed}` +
          (f.refused > 0 ? `, refused ${f.refused}` : '') +
          (f.drainTimedOut ? ' (drain timed out)' : ''),
      );
    }
  }
}

async function measureCold(server: RunningServer, dir: string, tries = 10): Promise<ColdResult> {
  const out: ColdResult = {
    newFunctionMs: [],
    zodFunctionMs: [],
    newVersionVisibleMs: [],
    newVersionStaleAnswers: [],
    failures: [],
  };
  const nonce = `${process.pid}-${Date.now().toString(36)}`;
  // zod, installed once in FUNCTIONS_DIR/node_modules (a devDependency of this repository).
  await fs.cp(path.join(ROOT, 'node_modules', 'zod'), path.join(dir, 'node_modules', 'zod'), {
    recursive: true,
  });
  for (let i = 0; i < tries; i++) {
    const name = `cold-${nonce}-${i}`;
    const source = `(event, context) => ({ message: 'cold ${nonce} ${i}', status: 'ok' });\n`;
    await writeFunction(dir, name, source);
    const answer = await timedGet(`${server.url}/${name}`);
    if (answer.status !== 200 || answer.headers['x-function-version'] !== versionOf(source)) {
      out.failures.push(`${name}: ${answer.status} ${answer.body.slice(0, 120)}`);
    } else {
      out.newFunctionMs.push(answer.ms);
    }
    await sleep(100);
    const zodName = `coldzod-${nonce}-${i}`;
    const folder = path.join(dir, zodName);
    await fs.mkdir(folder);
    await fs.writeFile(path.join(folder, 'package.json'), JSON.stringify({ name: zodName }));
    await fs.writeFile(
      path.join(folder, 'index.ts'),
      `import { z } from 'zod';\nconst User = z.object({ name: z.string(), n: z.literal(${i}) });\n` +
        `export default () => User.safeParse({ name: '${nonce}', n: ${i} }).success;\n`,
    );
    // The folder is watched: wait for the server to see it (a 404 is not a cold start).
    let zod = await timedGet(`${server.url}/${zodName}`);
    for (let wait = 0; zod.status === 404 && wait < 50; wait++) {
      await sleep(20);
      zod = await timedGet(`${server.url}/${zodName}`);
    }
    if (zod.status !== 200 || zod.body !== 'true') {
      out.failures.push(`${zodName}: ${zod.status} ${zod.body.slice(0, 160)}`);
    } else {
      out.zodFunctionMs.push(zod.ms);
    }
    await sleep(100);
  }

  // A new version dropped over a function that is warm in both workers.
  const name = `cold-${nonce}-v`;
  await writeFunction(dir, name, `() => 'v0';\n`);
  for (let i = 0; i < 4; i++) await timedGet(`${server.url}/${name}`);
  for (let i = 1; i <= tries; i++) {
    const source = `() => 'version ${nonce} ${i}';\n`;
    const written = performance.now();
    await writeFunction(dir, name, source);
    let stale = 0;
    for (;;) {
      const answer = await timedGet(`${server.url}/${name}`);
      if (answer.headers['x-function-version'] === versionOf(source)) {
        out.newVersionVisibleMs.push(answer.doneAt - written);
        break;
      }
      stale++;
      if (answer.doneAt - written > 5000) {
        out.failures.push(`${name}: version ${i} not served within 5 s`);
        break;
      }
      await sleep(2);
    }
    out.newVersionStaleAnswers.push(stale);
    await sleep(300);
  }
  return out;
}

interface PoolHealth {
  workers: number;
  configuredWorkers: number;
  restarts: number;
}

async function health(server: RunningServer): Promise<PoolHealth> {
  const answer = await timedGet(`${server.url}/_/health`, 2000);
  return (JSON.parse(answer.body) as { pool: PoolHealth }).pool;
}

async function fullStrength(server: RunningServer, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const pool = await health(server).catch(() => undefined);
    if (pool && pool.workers === pool.configuredWorkers) return;
    if (Date.now() > until) throw new Error('the pool did not return to full strength');
    await sleep(10);
  }
}

interface LoopResult {
  ms: number[];
  statuses: number[];
}

interface TimeoutResult {
  timeoutMs: number;
  syncLoop: LoopResult;
  /** Pool restarts the sync loops caused (expected 0: vm2 interrupts them in place). */
  syncRestarts: number;
  /** The literal endless microtask loop (the function returns before the loop starts). */
  microtaskLoop: LoopResult;
  /**
   * After each literal microtask-loop call: the slowest /hello of up to 5 rounds of 4
   * concurrent calls (a call that lands on a worker left spinning waits for the pool to notice).
   */
  collateralMs: number[];
  /** The loop inside a promise that never settles: the invocation itself never ends. */
  awaitedLoop: LoopResult;
  /** From the awaited loop's answer to the first health answer showing every worker back. */
  recoveryMs: number[];
  /** Pool restarts over the whole microtask part. */
  microtaskRestarts: number;
  helloAfter: number;
}

async function timeLoop(server: RunningServer, name: string, into: LoopResult) {
  await fullStrength(server);
  await sleep(200);
  const answer = await timedGet(`${server.url}/${name}`);
  into.ms.push(answer.ms);
  into.statuses.push(answer.status);
  return answer;
}

async function measureTimeouts(dir: string, tries = 5): Promise<TimeoutResult> {
  const timeoutMs = 1000;
  const server = await startServer(
    specFor('koa-faas', dir, { FUNCTION_TIMEOUT_MS: String(timeoutMs) }),
  );
  try {
    for (let i = 0; i < 4; i++) await timedGet(`${server.url}/hello`);
    const out: TimeoutResult = {
      timeoutMs,
      syncLoop: { ms: [], statuses: [] },
      syncRestarts: 0,
      microtaskLoop: { ms: [], statuses: [] },
      collateralMs: [],
      awaitedLoop: { ms: [], statuses: [] },
      recoveryMs: [],
      microtaskRestarts: 0,
      helloAfter: 0,
    };
    const before = await health(server);
    for (let i = 0; i < tries; i++) await timeLoop(server, 'sync-loop', out.syncLoop);
    const afterSync = await health(server);
    out.syncRestarts = afterSync.restarts - before.restarts;

    for (let i = 0; i < tries; i++) {
      await timeLoop(server, 'microtask-loop', out.microtaskLoop);
      let slowest = 0;
      for (let round = 0; round < 5 && slowest < 500; round++) {
        const answers = await Promise.all([0, 1, 2, 3].map(() => timedGet(`${server.url}/hello`)));
        slowest = Math.max(slowest, ...answers.map((a) => a.ms));
      }
      out.collateralMs.push(slowest);
    }

    for (let i = 0; i < tries; i++) {
      const answer = await timeLoop(server, 'microtask-loop-awaited', out.awaitedLoop);
      const until = performance.now() + 10_000;
      for (;;) {
        const polled = await timedGet(`${server.url}/_/health`, 2000);
        const pool = (JSON.parse(polled.body) as { pool: PoolHealth }).pool;
        if (pool.workers === pool.configuredWorkers) {
          out.recoveryMs.push(polled.doneAt - answer.doneAt);
          break;
        }
        if (performance.now() > until) {
          out.recoveryMs.push(NaN);
          break;
        }
        await sleep(10);
      }
    }
    out.microtaskRestarts = (await health(server)).restarts - afterSync.restarts;
    out.helloAfter = (await timedGet(`${server.url}/hello`)).status;
    return out;
  } finally {
    await stopServer(server);
  }
}

const SOAK_WARMUP_S = 15;

interface SoakResult {
  seconds: number;
  startRss: number;
  endRss: number;
  peakRss: number;
  rps: number;
  errors: number;
  non2xx: number;
}

async function measureSoak(server: RunningServer, opts: Options): Promise<SoakResult> {
  // Under load V8 grows its heaps to their working size within ~10 s; "flat" is about what
  // happens after that, so the soak starts after a 15 s warm-up.
  await load(`${server.url}/hello`, opts.connections, Math.max(opts.warmup, SOAK_WARMUP_S));
  const sampler = new RssSampler(server.pid, 200).start();
  const result = await load(`${server.url}/hello`, opts.connections, opts.soakSeconds);
  sampler.stop();
  const total = opts.soakSeconds * 1000;
  return {
    seconds: opts.soakSeconds,
    // The first 5 s (after the 15 s warm-up) against the last 5 s of the run.
    startRss: sampler.window(0, 5000),
    endRss: sampler.window(total - 5000, total + 5000),
    peakRss: sampler.peak,
    rps: result.requests.total / result.duration,
    errors: result.errors,
    non2xx: result.non2xx,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
const mb = (bytes: number) => fmt(bytes / MB, 1);

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => max(rows.map((r) => r[i].length)));
  return rows
    .map((r, ri) =>
      r
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
        .join('  ')
        .concat(ri === 0 ? `\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : ''),
    )
    .join('\n');
}

interface Target {
  target: string;
  value: string;
  pass: boolean | undefined;
}

function targets(
  opts: Options,
  results: Map<ServerName, ServerResult>,
  cold?: ColdResult,
  timeouts?: TimeoutResult,
  soak?: SoakResult,
  scaling?: ScalingResult,
): Target[] {
  const faas = results.get('koa-faas');
  const seed = results.get('seed');
  const bare = results.get('bare');
  const faasJs = results.get('faas-js');
  const out: Target[] = [];
  const add = (target: string, value: number | undefined, pass: boolean, shown: string) =>
    out.push({
      target,
      value: value === undefined || !Number.isFinite(value) ? 'not measured' : shown,
      pass: value === undefined || !Number.isFinite(value) ? undefined : pass,
    });
  const vsSeed = faas && seed ? faas.rps / seed.rps : undefined;
  const vsBare = faas && bare ? faas.rps / bare.rps : undefined;
  add('throughput ≥ 15× seed', vsSeed, (vsSeed ?? 0) >= 15, `${fmt(vsSeed ?? NaN, 1)}×`);
  add('throughput ≥ 40 % of bare', vsBare, (vsBare ?? 0) >= 0.4, `${fmt((vsBare ?? 0) * 100)} %`);
  add(
    `p99 ≤ 15 ms at 32 connections${opts.connections === 32 ? '' : ` (ran at ${opts.connections})`}`,
    faas?.p99,
    (faas?.p99 ?? Infinity) <= 15,
    `${fmt(faas?.p99 ?? NaN)} ms`,
  );
  // The hot path against the unsandboxed Knative runtime, and the cliff.
  const vsFaasJs = faas && faasJs ? faas.rps / faasJs.rps : undefined;
  add(
    'hello ≥ 0.8 × faas-js-runtime',
    vsFaasJs,
    (vsFaasJs ?? 0) >= 0.8,
    `${fmt(vsFaasJs ?? NaN, 2)}× (${fmt(faas?.rps ?? NaN)} vs ${fmt(faasJs?.rps ?? NaN)} req/s)`,
  );
  add('hello p99 ≤ 10 ms', faas?.p99, (faas?.p99 ?? Infinity) <= 10, `${fmt(faas?.p99 ?? NaN)} ms`);
  add(
    'server CPU ≤ 60 µs per hello request',
    faas?.cpuServerUs,
    (faas?.cpuServerUs ?? Infinity) <= 60,
    `${fmt(faas?.cpuServerUs ?? NaN)} µs (workers ${fmt(faas?.cpuWorkersUs ?? NaN)} µs)`,
  );
  const one = scaling?.points.find((p) => p.sweep === 'functions' && p.x === 1);
  const many = scaling?.points.find((p) => p.sweep === 'functions' && p.x === 1000);
  const share = one && many ? many.rps / one.rps : undefined;
  add(
    '1,000 functions round-robin ≥ 50 % of one, p99 ≤ 25 ms',
    share,
    (share ?? 0) >= 0.5 && (many?.p99 ?? Infinity) <= 25,
    `${fmt((share ?? NaN) * 100)} % (${fmt(many?.rps ?? NaN)} vs ${fmt(one?.rps ?? NaN)} req/s), p99 ${fmt(many?.p99 ?? NaN)} ms`,
  );
  const coldMs = cold ? median(cold.newFunctionMs) : undefined;
  add('cold first call ≤ 25 ms', coldMs, (coldMs ?? Infinity) <= 25, `${fmt(coldMs ?? NaN, 1)} ms`);
  for (const [label, loop] of [
    ['sync loop', timeouts?.syncLoop],
    ['microtask loop', timeouts?.microtaskLoop],
    ['microtask loop in a never-settling promise', timeouts?.awaitedLoop],
  ] as const) {
    const ms = loop ? median(loop.ms) : undefined;
    const all504 = loop ? loop.statuses.every((s) => s === 504) : false;
    add(
      `${label}: 504 within 1150 ms`,
      ms,
      all504 && (ms ?? Infinity) <= 1150,
      `${[...new Set(loop?.statuses)].join('/')} in ${fmt(ms ?? NaN)} ms (max ${fmt(loop ? max(loop.ms) : NaN)})`,
    );
  }
  const recovery = timeouts ? median(timeouts.recoveryMs) : undefined;
  add(
    'pool back at full strength ≤ 500 ms after a kill (awaited loop)',
    recovery,
    (recovery ?? Infinity) <= 500,
    `${fmt(recovery ?? NaN)} ms (max ${fmt(timeouts ? max(timeouts.recoveryMs) : NaN)})`,
  );
  add(
    'server + 2 idle workers ≤ 250 MB RSS',
    faas?.idleRss,
    (faas?.idleRss ?? Infinity) <= 250 * MB,
    `${mb(faas?.idleRss ?? NaN)} MB (${faas?.idleProcesses} processes)`,
  );
  const growth = soak ? (soak.endRss - soak.startRss) / soak.startRss : undefined;
  add(
    `RSS flat over a ${opts.soakSeconds} s run (growth ≤ 10 %)`,
    growth,
    (growth ?? Infinity) <= 0.1,
    soak ? `${mb(soak.startRss)} → ${mb(soak.endRss)} MB (${fmt((growth ?? 0) * 100, 1)} %)` : '',
  );
  if (!soak) out[out.length - 1].value = 'not measured (run with --soak-memory)';
  else if (soak.errors > 0 || !Number.isFinite(soak.endRss)) {
    out[out.length - 1].value =
      `invalid: ${soak.errors} errors during the run (did the server stop?)`;
    out[out.length - 1].pass = undefined;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Main

let functionsDir: string | undefined;
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    currentLoad?.stop();
    await Promise.all(liveServers().map((s) => stopServer(s)));
    closeAgent();
    if (functionsDir) await fs.rm(functionsDir, { recursive: true, force: true });
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  baselineRoot = opts.baseline;
  const startedAt = new Date();
  console.log(
    `koa-faas bench — ${startedAt.toISOString()} — node ${process.version}, nproc ${os.availableParallelism()}, ` +
      `${os.cpus()[0]?.model ?? 'unknown CPU'}, load average ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  console.log(
    `${opts.connections} connections, ${opts.duration} s per measurement after a ${opts.warmup} s ` +
      `warm-up, median of ${opts.runs} runs (servers interleaved), GET /hello; ` +
      'koa-faas runs with WORKERS=2 and LOG_LEVEL=warn (no per-request log line), seed with 2 safeify workers.',
  );
  functionsDir = await makeFunctionsDir();
  const dir = functionsDir;
  if (opts.asyncOnly) {
    const figures = await measureAsync(dir, opts);
    printAsync(figures, opts);
    if (opts.json) {
      await fs.writeFile(opts.json, JSON.stringify({ date: startedAt, async: figures }, null, 2));
    }
    return;
  }

  const servers = new Map<ServerName, RunningServer>();
  const idle = new Map<ServerName, { bytes: number; processes: number }>();
  for (const name of opts.only) {
    const server = await startServer(specFor(name, dir));
    servers.set(name, server);
    idle.set(name, await idleRss(server));
    const answer = await timedGet(helloUrl(server));
    if (answer.status !== 200 || !answer.body.includes('it works!')) {
      throw new Error(`${name} answered /hello with ${answer.status}: ${answer.body}`);
    }
    console.log(
      `started ${name} (pid ${server.pid}): idle RSS ${mb(idle.get(name)?.bytes ?? NaN)} MB ` +
        `in ${idle.get(name)?.processes} processes`,
    );
  }

  const runs = new Map<ServerName, LoadRun[]>(opts.only.map((n) => [n, []]));
  for (let run = 0; run < opts.runs; run++) {
    // Rotate the order every run, so drift on the machine affects every server alike.
    const order = opts.only.map((_, i) => opts.only[(i + run) % opts.only.length]);
    for (const name of order) {
      const result = await measureLoad(servers.get(name) as RunningServer, opts);
      runs.get(name)?.push(result);
      console.log(
        `run ${run + 1}/${opts.runs} ${name.padEnd(8)} ${fmt(result.rps).padStart(6)} req/s  ` +
          `p50 ${fmt(result.p50, 1)} ms  p99 ${fmt(result.p99, 1)} ms  errors ${result.errors}  ` +
          `non-2xx ${result.non2xx}  peak RSS ${mb(result.peakRss)} MB`,
      );
    }
  }
  const results = new Map<ServerName, ServerResult>();
  for (const name of opts.only) {
    results.set(
      name,
      summarize(name, idle.get(name) ?? { bytes: NaN, processes: 0 }, runs.get(name) ?? []),
    );
  }

  // The other servers are done: stop them so they do not share the machine with what follows.
  for (const [name, server] of servers) if (name !== 'koa-faas') await stopServer(server);

  let cold: ColdResult | undefined;
  let timeouts: TimeoutResult | undefined;
  let kv: KvFigure[] = [];
  let asyncFigures: AsyncFigure[] = [];
  let soak: SoakResult | undefined;
  const faasServer = servers.get('koa-faas');
  if (faasServer) {
    console.log('koa-faas: cold first calls…');
    cold = await measureCold(faasServer, dir);
    if (opts.soakMemory) {
      console.log(`koa-faas: ${opts.soakSeconds} s memory soak…`);
      soak = await measureSoak(faasServer, opts);
    }
    await stopServer(faasServer);
    console.log('koa-faas: timeouts (separate instance, FUNCTION_TIMEOUT_MS=1000)…');
    timeouts = await measureTimeouts(dir);
    console.log('koa-faas: KV through a function (separate instances, SQLite then Redis)…');
    kv = await measureKv(dir, opts);
    console.log('koa-faas: async invocations (separate instances, SQLite then Redis)…');
    asyncFigures = await measureAsync(dir, opts);
  }
  let scaling: ScalingResult | undefined;
  let baselineScaling: ScalingResult | undefined;
  if (faasServer && opts.scaling) {
    const sweep = (root: string) =>
      measureScaling({
        root,
        duration: opts.duration,
        warmup: opts.warmup,
        connections: opts.connections,
        functions: [1, 64, 256, 1000, 5000],
        bodies: [1, 64, 1024],
        conns: [1, 32, 256],
      });
    console.log('koa-faas: scaling (functions, body size, connections; fresh instance per sweep)…');
    scaling = await sweep(ROOT);
    if (opts.baseline) {
      console.log('baseline: scaling…');
      baselineScaling = await sweep(opts.baseline);
    }
    const all = baselineScaling ? [scaling, baselineScaling] : [scaling];
    await writePlot(
      opts.plot,
      all,
      baselineScaling ? ['koa-faas (this build)', 'baseline'] : ['koa-faas'],
      `${new Date().toISOString().slice(0, 16)}Z, node ${process.version}, nproc ${os.availableParallelism()}, ` +
        `${opts.connections} connections (except the connections sweep), ${opts.duration} s per point, WORKERS=2`,
    );
    console.log(`wrote ${opts.plot}`);
  }

  // ---- Report
  const rows = [
    [
      'server',
      'req/s',
      'p50 ms',
      'p99 ms',
      'errors',
      'non-2xx',
      'peak RSS MB',
      'idle RSS MB',
      'procs',
    ],
  ];
  for (const r of results.values()) {
    rows.push([
      r.name,
      fmt(r.rps),
      fmt(r.p50, 1),
      fmt(r.p99, 1),
      String(r.errors),
      String(r.non2xx),
      mb(r.peakRss),
      mb(r.idleRss),
      String(r.idleProcesses),
      `${fmt(r.cpuServerUs)} + ${fmt(r.cpuWorkersUs)} (+${fmt(r.cpuLoadUs)})`,
    ]);
  }
  console.log('');
  console.log(
    `Throughput (median of ${opts.runs} runs; errors and non-2xx summed over the runs; ` +
      'RSS = server process + all its descendants):',
  );
  console.log(table(rows));
  const faas = results.get('koa-faas');
  if (faas) {
    for (const other of ['bare', 'faas-js', 'seed'] as const) {
      const r = results.get(other);
      if (!r) continue;
      console.log(
        `koa-faas/${other}: throughput ${fmt(faas.rps / r.rps, 2)}×, p99 ${fmt(faas.p99 / r.p99, 2)}×, ` +
          `peak RSS ${fmt(faas.peakRss / r.peakRss, 2)}×`,
      );
    }
  }
  if (kv.length > 0) {
    console.log('');
    console.log(
      `KV through a function (koa-faas, ${opts.connections} connections, ${opts.duration} s each; hello in the same instance):`,
    );
    for (const figure of kv) {
      const hello = figure.rows.find((r) => r.route === '/hello');
      for (const row of figure.rows) {
        const ratio =
          hello && row.route !== '/hello' ? `  ${fmt((row.rps / hello.rps) * 100)} % of hello` : '';
        console.log(
          `  ${figure.backend.padEnd(6)} ${row.route.padEnd(8)} ${fmt(row.rps).padStart(6)} req/s  ` +
            `p50 ${fmt(row.p50, 1)} ms  p99 ${fmt(row.p99, 1)} ms  non-2xx ${row.non2xx}${ratio}`,
        );
      }
    }
  }
  printAsync(asyncFigures, opts);
  if (cold) {
    console.log('');
    console.log(
      `Cold first call (koa-faas): new function ${fmt(median(cold.newFunctionMs), 1)} ms median ` +
        `(min ${fmt(Math.min(...cold.newFunctionMs), 1)}, max ${fmt(max(cold.newFunctionMs), 1)}, ` +
        `n=${cold.newFunctionMs.length}). New content renamed over a warm function: served from ` +
        `${fmt(median(cold.newVersionVisibleMs), 1)} ms after the rename (median; max ` +
        `${fmt(max(cold.newVersionVisibleMs), 1)}); requests in between that still got the old ` +
        `version: [${cold.newVersionStaleAnswers.join(', ')}]. ` +
        `A new package function importing zod, in turn with the new functions above: ${fmt(median(cold.zodFunctionMs), 1)} ms median ` +
        `(min ${fmt(Math.min(...cold.zodFunctionMs), 1)}, max ${fmt(max(cold.zodFunctionMs), 1)}, ` +
        `n=${cold.zodFunctionMs.length}; bundle, load of zod's top level, call)` +
        (cold.failures.length > 0 ? `; failures: ${cold.failures.join('; ')}` : ''),
    );
  }
  if (timeouts) {
    const list = (xs: number[]) => `[${xs.map((m) => fmt(m)).join(', ')}]`;
    console.log(
      `Timeouts (koa-faas, separate instance, FUNCTION_TIMEOUT_MS=${timeouts.timeoutMs}, ms per try):\n` +
        `  sync loop              ${list(timeouts.syncLoop.ms)} statuses ${timeouts.syncLoop.statuses.join(',')}; ` +
        `pool restarts ${timeouts.syncRestarts}\n` +
        `  microtask loop         ${list(timeouts.microtaskLoop.ms)} statuses ${timeouts.microtaskLoop.statuses.join(',')}; ` +
        `slowest /hello right after ${list(timeouts.collateralMs)}\n` +
        `  loop in a pending promise ${list(timeouts.awaitedLoop.ms)} statuses ${timeouts.awaitedLoop.statuses.join(',')}; ` +
        `full strength again after ${list(timeouts.recoveryMs)}\n` +
        `  pool restarts during the microtask tries ${timeouts.microtaskRestarts}; /hello afterwards ${timeouts.helloAfter}`,
    );
  }
  if (soak) {
    console.log(
      `Memory soak (koa-faas, ${soak.seconds} s at ${opts.connections} connections, ${fmt(soak.rps)} req/s, ` +
        `errors ${soak.errors}, non-2xx ${soak.non2xx}): RSS first 5 s ${mb(soak.startRss)} MB → ` +
        `last 5 s ${mb(soak.endRss)} MB (${fmt(((soak.endRss - soak.startRss) / soak.startRss) * 100, 1)} %), ` +
        `peak ${mb(soak.peakRss)} MB`,
    );
  }
  if (scaling) {
    console.log('');
    console.log(
      `Scaling (koa-faas${baselineScaling ? ' #1, baseline #2' : ''}; ${opts.duration} s per point; ` +
        'RSS = server + workers at the end of the point):',
    );
    console.log(scalingTable(baselineScaling ? [scaling, baselineScaling] : [scaling]));
    for (const n of [1000, 5000]) {
      const p = scaling.points.find((q) => q.sweep === 'functions' && q.x === n);
      if (p) console.log(`memory at ${n} functions: ${mb(p.rss)} MB (peak ${mb(p.peakRss)} MB)`);
    }
  }
  const verdicts = targets(opts, results, cold, timeouts, soak, scaling);
  console.log('');
  console.log('Targets:');
  console.log(
    table([
      ['target', 'result', 'verdict'],
      ...verdicts.map((t) => [
        t.target,
        t.value,
        t.pass === undefined ? '—' : t.pass ? 'PASS' : 'MISS',
      ]),
    ]),
  );

  if (opts.json) {
    const json = {
      date: startedAt.toISOString(),
      node: process.version,
      nproc: os.availableParallelism(),
      cpu: os.cpus()[0]?.model,
      loadAverageAtStart: os.loadavg(),
      options: opts,
      servers: Object.fromEntries(results),
      ratios: faas
        ? {
            'koa-faas/bare': results.get('bare')
              ? faas.rps / (results.get('bare') as ServerResult).rps
              : null,
            'koa-faas/seed': results.get('seed')
              ? faas.rps / (results.get('seed') as ServerResult).rps
              : null,
          }
        : null,
      cold: cold ?? null,
      timeouts: timeouts ?? null,
      kv,
      async: asyncFigures,
      soak: soak ?? null,
      scaling: scaling ?? null,
      baselineScaling: baselineScaling ?? null,
      targets: verdicts,
    };
    await fs.writeFile(opts.json, JSON.stringify(json, null, 2) + '\n');
    console.log(`\nwrote ${opts.json}`);
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping every server…`);
    void cleanup().finally(() => process.exit(130));
  });
}

main()
  .then(
    () => cleanup(),
    async (err: unknown) => {
      console.error('bench failed:', err);
      for (const server of liveServers()) {
        const { exitCode, signalCode } = server.child;
        console.error(
          `-- ${server.name} (pid ${server.pid}, ${exitCode === null && signalCode === null ? 'running' : `exited ${signalCode ?? exitCode}`}), last output:\n` +
            server.output.slice(-20).join('\n'),
        );
      }
      await cleanup();
      process.exitCode = 1;
    },
  )
  .catch((err: unknown) => {
    console.error('cleanup failed:', err);
    process.exitCode = 1;
  });
