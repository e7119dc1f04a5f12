/**
 * The scaling sweep of `npm run bench`: koa-faas alone, req/s and p99 against the
 * number of distinct functions called round-robin, against the body size of a POST echo, and
 * against the number of connections; server + workers RSS after the 1,000- and 5,000-function
 * points. Each sweep runs in a fresh instance (so one sweep's warm contexts do not help the next).
 *
 * Also runnable alone, to compare two builds point by point:
 *
 *   node dist/bench/scaling.js [--root <a built checkout>] [--duration 5] [--quick]
 *                              [--functions 1,64,256,1000,5000] [--bodies 1,64,1024]
 *                              [--conns 1,32,256] [--json file]
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import {
  RssSampler,
  cpuBetween,
  liveServers,
  rememberTree,
  sleep,
  startServer,
  stopServer,
  timedGet,
  treeCpu,
  treeRss,
} from './measure';
import type { RunningServer } from './measure';

const ROOT = path.join(__dirname, '..', '..');

export interface ScalingOptions {
  /** The checkout whose dist/src/main.js runs. */
  root: string;
  duration: number;
  warmup: number;
  connections: number;
  functions: number[];
  /** POST echo body sizes, KB. */
  bodies: number[];
  conns: number[];
}

/** One measured point. */
export interface Point {
  sweep: 'functions' | 'body' | 'connections';
  /** Distinct functions, body KB, or connections. */
  x: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  cpuServerUs: number;
  cpuWorkersUs: number;
  /** Server + workers RSS at the end of the point, and its peak during it. */
  rss: number;
  peakRss: number;
}

export interface ScalingResult {
  root: string;
  points: Point[];
}

/** A distinct tiny function per index: the same work, a different version (content hash). */
const fnSource = (i: number) =>
  `(event, context) => {\n  return { message: 'it works!', status: 'ok', n: ${i} };\n};\n`;
const ECHO = '(event) => event.body;\n';

async function makeDir(functions: number): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-scaling-'));
  await fs.writeFile(path.join(dir, 'echo.js'), ECHO);
  for (let i = 0; i < functions; i++) await fs.writeFile(path.join(dir, `f${i}.js`), fnSource(i));
  return dir;
}

function start(root: string, dir: string): Promise<RunningServer> {
  return startServer({
    name: 'koa-faas',
    script: path.join(root, 'dist', 'src', 'main.js'),
    env: {
      FUNCTIONS_DIR: dir,
      WORKERS: '2',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      MAX_BODY: '2mb',
      MAX_QUEUE: '4096',
    },
    readyPath: '/_/ready',
  });
}

interface Load {
  connections: number;
  duration?: number;
  amount?: number;
  /** Round-robin over /f0 … /f<n-1>, one shared counter (true round-robin across connections). */
  functions?: number;
  /** POST /echo with this many bytes of text. */
  bodyBytes?: number;
}

function run(url: string, spec: Load): Promise<autocannon.Result> {
  let next = 0;
  const requests: autocannon.Request[] = [];
  if (spec.functions !== undefined) {
    const n = spec.functions;
    requests.push({
      setupRequest: (req) => ({ ...req, path: `/f${next++ % n}` }),
    } as autocannon.Request);
  }
  const body = spec.bodyBytes === undefined ? undefined : 'x'.repeat(spec.bodyBytes);
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: spec.bodyBytes === undefined ? url : `${url}/echo`,
        connections: spec.connections,
        ...(spec.amount === undefined ? { duration: spec.duration } : { amount: spec.amount }),
        timeout: 20,
        ...(body === undefined
          ? {}
          : { method: 'POST', body, headers: { 'content-type': 'text/plain' } }),
        ...(requests.length > 0 ? { requests } : {}),
      },
      (err, result) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve(result);
      },
    );
  });
}

async function point(
  server: RunningServer,
  sweep: Point['sweep'],
  x: number,
  spec: Load,
  opts: ScalingOptions,
): Promise<Point> {
  // Every function called at least once before the clock starts (the store loads each file on
  // its first call), then the usual warm-up.
  if (spec.functions !== undefined && spec.functions > 1) {
    await run(server.url, { ...spec, amount: spec.functions, duration: undefined });
  }
  if (opts.warmup > 0) await run(server.url, { ...spec, duration: opts.warmup });
  const cpuBefore = treeCpu(server.pid);
  const sampler = new RssSampler(server.pid, 250).start();
  const result = await run(server.url, { ...spec, duration: opts.duration });
  sampler.stop();
  const cpu = cpuBetween(server.pid, cpuBefore, treeCpu(server.pid));
  rememberTree(server);
  const per = (ms: number) => (ms * 1000) / Math.max(1, result.requests.total);
  const p: Point = {
    sweep,
    x,
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
    cpuServerUs: per(cpu.serverMs),
    cpuWorkersUs: per(cpu.workersMs),
    rss: treeRss(server.pid).bytes,
    peakRss: sampler.peak,
  };
  console.log(
    `  ${sweep.padEnd(11)} ${String(x).padStart(5)}  ${p.rps.toFixed(0).padStart(6)} req/s  ` +
      `p50 ${p.p50.toFixed(1)} ms  p99 ${p.p99.toFixed(1)} ms  non-2xx ${p.non2xx}  errors ${p.errors}  ` +
      `CPU µs/req ${p.cpuServerUs.toFixed(0)} + ${p.cpuWorkersUs.toFixed(0)}  RSS ${(p.rss / 2 ** 20).toFixed(0)} MB`,
  );
  return p;
}

/** Runs the three sweeps, each in a fresh instance of `opts.root`. */
export async function measureScaling(opts: ScalingOptions): Promise<ScalingResult> {
  const points: Point[] = [];
  const most = Math.max(1, ...opts.functions);
  const dir = await makeDir(most);
  try {
    const sweeps: [Point['sweep'], number[], (x: number) => Load][] = [
      ['functions', opts.functions, (n) => ({ connections: opts.connections, functions: n })],
      ['body', opts.bodies, (kb) => ({ connections: opts.connections, bodyBytes: kb * 1024 })],
      ['connections', opts.conns, (c) => ({ connections: c, functions: 1 })],
    ];
    for (const [sweep, xs, spec] of sweeps) {
      if (xs.length === 0) continue;
      const server = await start(opts.root, dir);
      try {
        const answer = await timedGet(`${server.url}/f0`);
        if (answer.status !== 200) throw new Error(`/f0 answered ${answer.status}: ${answer.body}`);
        for (const x of xs) points.push(await point(server, sweep, x, spec(x), opts));
      } finally {
        await stopServer(server);
      }
      await sleep(500);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  return { root: opts.root, points };
}

/** The scaling table, one row per point. */
export function scalingTable(results: ScalingResult[]): string {
  const label = (p: Point) =>
    p.sweep === 'functions' ? `${p.x} fn` : p.sweep === 'body' ? `${p.x} KB POST` : `${p.x} conn`;
  const header = [
    'point',
    ...results.flatMap((_, i) =>
      [`req/s`, `p99 ms`, `RSS MB`].map((h) => (results.length > 1 ? `${h} #${i + 1}` : h)),
    ),
  ];
  const rows = [header];
  for (const p of results[0].points) {
    const row = [label(p)];
    for (const r of results) {
      const q = r.points.find((o) => o.sweep === p.sweep && o.x === p.x);
      row.push(
        q ? q.rps.toFixed(0) : '—',
        q ? q.p99.toFixed(0) : '—',
        q ? (q.rss / 2 ** 20).toFixed(0) : '—',
      );
    }
    rows.push(row);
  }
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '))
    .join('\n');
}

function list(raw: string): number[] {
  return raw
    .split(',')
    .filter((s) => s.trim() !== '')
    .map((s) => {
      const n = Number(s);
      if (!Number.isFinite(n) || n < 1) throw new Error(`not a positive number: ${s}`);
      return n;
    });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      root: { type: 'string', multiple: true },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      connections: { type: 'string', default: '32' },
      functions: { type: 'string', default: '1,64,256,1000,5000' },
      bodies: { type: 'string', default: '1,64,1024' },
      conns: { type: 'string', default: '1,32,256' },
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
    },
  });
  const roots = (values.root ?? [ROOT]).map((r) => path.resolve(r));
  const results: ScalingResult[] = [];
  for (const root of roots) {
    console.log(`scaling: ${root}`);
    results.push(
      await measureScaling({
        root,
        duration: values.quick ? 1 : Number(values.duration),
        warmup: values.quick ? 0.5 : Number(values.warmup),
        connections: Number(values.connections),
        functions: list(values.functions),
        bodies: list(values.bodies),
        conns: list(values.conns),
      }),
    );
  }
  console.log(roots.map((r, i) => `#${i + 1} ${r}`).join('\n'));
  console.log(scalingTable(results));
  if (values.json) await fs.writeFile(values.json, JSON.stringify(results, null, 2) + '\n');
}

if (require.main === module) {
  main().catch(async (err: unknown) => {
    console.error('scaling failed:', err);
    for (const server of liveServers()) await stopServer(server);
    process.exitCode = 1;
  });
}
