/**
 * `npm run soak`: the real server (`node dist/src/main.js`, 2 workers, 1 s timeout, 64 MB heaps,
 * 64 KB bodies) under mixed traffic for a while — healthy calls, throws, timeouts, memory bombs,
 * oversized bodies, bad and missing names — while a random worker is SIGKILLed every few
 * seconds. Every request's outcome is classified against what its kind must get; at the end the
 * server is stopped with SIGTERM and checked for a clean exit and orphaned workers.
 *
 *   node dist/bench/soak.js [--seconds 60] [--connections 16] [--kill-every 3] [--json file]
 *                           [--strict]
 *
 * Exits 0 only when every request was answered, every outcome was expected (healthy calls may
 * fail only as collateral of a worker death the soak can name), the pool recovered, the server
 * exited 0 and left no worker behind, and its memory stayed within bounds. See the report.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { childrenOf, freePort, isAlive, rssOf, sleep } from './measure';
import type { ProcInfo } from './measure';

const ROOT = path.join(__dirname, '..', '..');
const SERVER_ENTRY = path.join(ROOT, 'dist', 'src', 'main.js');
const HOST = '127.0.0.1';
const MB = 1024 * 1024;

// The server's configuration for the soak.
const WORKERS = 2;
const TIMEOUT_MS = 1000;
const WORKER_MEMORY_MB = 64;
const MAX_BODY_BYTES = 64 * 1024;

/** Far above anything the server may take (queue wait + timeout + kill margin): unanswered. */
const CLIENT_TIMEOUT_MS = 10_000;
/** A 502 counts as collateral of a worker death only if it arrived this soon after it. */
const BLAME_WINDOW_MS = 1000;
/** A timeout kill and the 504 the pool answered with it arrive at most this far apart. */
const BLAME_MATCH_MS = 250;
/** A 504 FUNCTION_TIMEOUT sooner than this after the request was sent is premature. */
const EARLY_TIMEOUT_MS = TIMEOUT_MS * 0.9;
/** The server must be back to full strength this soon after the traffic stops. */
const RECOVERY_MS = 10_000;
/** SIGTERM → exit: the server's grace (timeout + 1 s) plus its own 5 s backstop, plus slack. */
const EXIT_WAIT_MS = 15_000;
/** Server RSS may grow by this much over the run (beyond it: a leak, or worth a look). */
const SERVER_RSS_GROWTH_LIMIT = 128 * MB;
/** One worker's RSS may not exceed its heap limit by more than this (Node itself, code). */
const WORKER_RSS_HEADROOM = 160 * MB;

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  seconds: number;
  connections: number;
  /** Seconds between deliberate SIGKILLs of a worker; 0 = none. */
  killEvery: number;
  json?: string;
  /** Count collateral of hostile neighbours (bombs, loops on the same worker) as failures. */
  strict: boolean;
  /** Hard cap on requests, whatever the time. */
  maxRequests: number;
}

function numberOption(name: string, raw: string | undefined, fallback: number, min: number) {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min)
    throw new Error(`--${name} must be a number ≥ ${min}`);
  return value;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      connections: { type: 'string' },
      'kill-every': { type: 'string' },
      json: { type: 'string' },
      strict: { type: 'boolean', default: false },
      'max-requests': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      'usage: node dist/bench/soak.js [--seconds 60] [--connections 16] [--kill-every 3]\n' +
        '                               [--json file] [--strict] [--max-requests N]',
    );
    process.exit(0);
  }
  const seconds = numberOption('seconds', values.seconds, 60, 1);
  return {
    seconds,
    connections: Math.floor(numberOption('connections', values.connections, 16, 1)),
    killEvery: numberOption('kill-every', values['kill-every'], 3, 0),
    json: values.json,
    strict: values.strict ?? false,
    maxRequests: Math.floor(
      numberOption('max-requests', values['max-requests'], Math.max(10_000, seconds * 20_000), 1),
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// The functions folder

const FUNCTIONS: Record<string, string> = {
  'hello.js': `(event) => ({ ok: true, n: event.query.n });\n`,
  'async-hello.js':
    `async (event) => {\n` +
    `  const ms = 5 + Math.floor(Math.random() * 16);\n` +
    `  await new Promise((resolve) => setTimeout(resolve, ms));\n` +
    `  return { ok: true, n: event.query.n, ms };\n` +
    `};\n`,
  'echo.js': `module.exports = (event) => ({ ok: true, n: event.body.n, size: event.body.pad.length });\n`,
  'nested/deep.js': `exports.handler = (event, context) => ({ ok: true, n: event.query.n, fn: context.functionName });\n`,
  // 100 ms of synchronous work, by the wall clock: well within the 1 s timeout, whatever the load.
  'cpu.js':
    `(event) => {\n` +
    `  const until = Date.now() + 100;\n` +
    `  let spins = 0;\n` +
    `  while (Date.now() < until) spins++;\n` +
    `  return { ok: true, n: event.query.n, spins: spins > 0 };\n` +
    `};\n`,
  // `undefined.length`: a TypeError.
  'throws.js': `(event) => event.query.missing.length;\n`,
  'throws-text.js': `() => {\n  throw 'deliberately thrown text';\n};\n`,
  'broken.js': `(event) => {\n  return { ;\n};\n`,
  'loop.js': `() => {\n  for (;;) {}\n};\n`,
  'microtasks.js': `async () => {\n  for (;;) await null;\n};\n`,
  'never.js': `() => new Promise(() => {});\n`,
  // Arrays of arrays, ~800 KB each, until V8's heap limit ends the worker.
  'bomb.js':
    `() => {\n` +
    `  const hoard = [];\n` +
    `  for (;;) hoard.push(new Array(100000).fill(hoard.length));\n` +
    `};\n`,
};

function writeFunctions(dir: string): void {
  for (const [file, source] of Object.entries(FUNCTIONS)) {
    const full = path.join(dir, file);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    fs.writeFileSync(full, source);
  }
}

// ---------------------------------------------------------------------------------------------
// Traffic kinds

interface RequestSpec {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Send the body in pieces without a Content-Length (chunked). */
  chunked?: boolean;
}

interface Kind {
  name: string;
  /** Counts toward the healthy-call success rate. */
  healthy: boolean;
  /** Runs a function in a worker: a worker death may take it down (502). */
  invokes: boolean;
  /** May block or kill its worker, and so fail its neighbours there. */
  hostile: boolean;
  /** May be the call a pool's timeout kill is for (it can keep its worker busy or silent). */
  mayOverrun?: boolean;
  /** Share of the traffic (before rate caps). */
  weight: number;
  /** At most this many per second (a hostile call costs a worker for up to a second). */
  perSecond?: number;
  /** Outcome classes this kind must get (503 OVERLOADED is always allowed, counted apart). */
  expected: string[];
  request(n: number): RequestSpec;
  /** For 200s: whether the body is the answer to request n. */
  check?(body: string, n: number): boolean;
}

const BAD_NAMES = [
  '/..%2f',
  '/.env',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/hello.js',
  // Past a valid first segment the rest is a sub-path (SPEC §2), so only first segments here.
  '/../hello',
  '/foo%00bar',
  '//hello',
  '/-dash',
];

function answersN(body: string, n: number): boolean {
  try {
    const parsed = JSON.parse(body) as { ok?: unknown; n?: unknown };
    return parsed.ok === true && parsed.n === String(n);
  } catch {
    return false;
  }
}

const KINDS: Kind[] = [
  {
    name: 'hello',
    healthy: true,
    invokes: true,
    hostile: false,
    weight: 30,
    expected: ['200'],
    request: (n) => ({ method: 'GET', path: `/hello?n=${n}` }),
    check: answersN,
  },
  {
    name: 'async-hello',
    healthy: true,
    invokes: true,
    hostile: false,
    weight: 20,
    expected: ['200'],
    request: (n) => ({ method: 'GET', path: `/async-hello?n=${n}` }),
    check: answersN,
  },
  {
    name: 'echo (POST 1 KB)',
    healthy: true,
    invokes: true,
    hostile: false,
    weight: 10,
    expected: ['200'],
    request: (n) => ({
      method: 'POST',
      path: '/echo',
      headers: { 'Content-Type': 'application/json' },
      body: Buffer.from(JSON.stringify({ n: String(n), pad: 'x'.repeat(1024) })),
    }),
    check: (body, n) => {
      try {
        const parsed = JSON.parse(body) as { ok?: unknown; n?: unknown; size?: unknown };
        return parsed.ok === true && parsed.n === String(n) && parsed.size === 1024;
      } catch {
        return false;
      }
    },
  },
  {
    name: 'nested/deep',
    healthy: true,
    invokes: true,
    hostile: false,
    weight: 5,
    expected: ['200'],
    request: (n) => ({ method: 'GET', path: `/nested/deep/?n=${n}` }),
    check: answersN,
  },
  {
    name: 'cpu (100 ms)',
    healthy: true,
    invokes: true,
    hostile: false,
    weight: 4,
    expected: ['200'],
    request: (n) => ({ method: 'GET', path: `/cpu?n=${n}` }),
    check: answersN,
  },
  {
    name: 'throws',
    healthy: false,
    invokes: true,
    hostile: false,
    weight: 6,
    expected: ['500 FUNCTION_ERROR'],
    request: (n) => ({ method: 'GET', path: `/throws?n=${n}` }),
  },
  {
    name: 'throws-text',
    healthy: false,
    invokes: true,
    hostile: false,
    weight: 2,
    expected: ['500 FUNCTION_ERROR'],
    request: () => ({ method: 'GET', path: '/throws-text' }),
  },
  {
    name: 'broken',
    healthy: false,
    invokes: true,
    hostile: false,
    weight: 2,
    expected: ['500 FUNCTION_COMPILE_ERROR'],
    request: () => ({ method: 'GET', path: '/broken' }),
  },
  {
    name: 'loop',
    healthy: false,
    invokes: true,
    hostile: true,
    weight: 5,
    perSecond: 0.5,
    expected: ['504 FUNCTION_TIMEOUT'],
    mayOverrun: true,
    request: () => ({ method: 'GET', path: '/loop' }),
  },
  {
    name: 'microtasks',
    healthy: false,
    invokes: true,
    hostile: true,
    weight: 5,
    perSecond: 0.25,
    expected: ['504 FUNCTION_TIMEOUT'],
    mayOverrun: true,
    request: () => ({ method: 'GET', path: '/microtasks' }),
  },
  {
    name: 'never',
    healthy: false,
    invokes: true,
    hostile: false,
    weight: 5,
    perSecond: 1,
    expected: ['504 FUNCTION_TIMEOUT'],
    mayOverrun: true,
    request: () => ({ method: 'GET', path: '/never' }),
  },
  {
    name: 'bomb',
    healthy: false,
    invokes: true,
    hostile: true,
    weight: 5,
    perSecond: 0.25,
    expected: ['502 WORKER_CRASHED'],
    mayOverrun: true,
    request: () => ({ method: 'GET', path: '/bomb' }),
  },
  {
    name: 'oversized',
    healthy: false,
    invokes: false,
    hostile: false,
    weight: 4,
    expected: ['413 PAYLOAD_TOO_LARGE'],
    // Alternately declared (Content-Length) and streamed (chunked), 96 KB against 64 KB.
    request: (n) => ({
      method: 'POST',
      path: '/echo',
      headers: { 'Content-Type': n % 2 ? 'application/json' : 'application/octet-stream' },
      body: Buffer.alloc(96 * 1024, 0x20),
      chunked: n % 3 === 0,
    }),
  },
  {
    name: 'bad name',
    healthy: false,
    invokes: false,
    hostile: false,
    weight: 4,
    expected: ['400 INVALID_FUNCTION_NAME'],
    request: (n) => ({ method: 'GET', path: BAD_NAMES[n % BAD_NAMES.length] }),
  },
  {
    name: 'missing',
    healthy: false,
    invokes: false,
    hostile: false,
    weight: 4,
    expected: ['404 FUNCTION_NOT_FOUND'],
    request: (n) => ({ method: 'GET', path: `/no-such-function-${n % 97}` }),
  },
  {
    name: 'health',
    healthy: false,
    invokes: false,
    hostile: false,
    weight: 1,
    expected: ['200'],
    request: () => ({ method: 'GET', path: '/_/health' }),
  },
];

/** Picks kinds by weight; a rate-capped kind without a token falls back to `hello`. */
class KindPicker {
  private readonly total: number;
  private readonly tokens: number[];
  private last = performance.now();

  constructor(private readonly kinds: Kind[]) {
    this.total = kinds.reduce((sum, k) => sum + k.weight, 0);
    this.tokens = kinds.map(() => 1);
  }

  pick(): number {
    const now = performance.now();
    const elapsed = (now - this.last) / 1000;
    this.last = now;
    this.kinds.forEach((k, i) => {
      if (k.perSecond !== undefined)
        this.tokens[i] = Math.min(1, this.tokens[i] + elapsed * k.perSecond);
    });
    let x = Math.random() * this.total;
    let index = 0;
    for (; index < this.kinds.length - 1; index++) {
      x -= this.kinds[index].weight;
      if (x < 0) break;
    }
    const kind = this.kinds[index];
    if (kind.perSecond === undefined) return index;
    if (this.tokens[index] < 1) return 0;
    this.tokens[index] -= 1;
    return index;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

interface Answer {
  status?: number;
  body?: string;
  requestId?: string;
  /** Why there is no answer: a client timeout or a connection error. */
  error?: string;
}

const MAX_BODY_KEEP = 64 * 1024;

function call(agent: http.Agent, port: number, spec: RequestSpec, rid: string): Promise<Answer> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (answer: Answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(answer);
    };
    const headers: Record<string, string> = { 'X-Request-Id': rid, ...spec.headers };
    if (spec.body && !spec.chunked) headers['Content-Length'] = String(spec.body.length);
    const req = http.request(
      { host: HOST, port, method: spec.method, path: spec.path, headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (size < MAX_BODY_KEEP) chunks.push(chunk);
          size += chunk.length;
        });
        res.on('end', () =>
          finish({
            status: res.statusCode,
            body: Buffer.concat(chunks).toString('utf8'),
            requestId: res.headers['x-request-id'] as string | undefined,
          }),
        );
        res.on('error', (err: NodeJS.ErrnoException) =>
          finish({ error: `response ${err.code ?? err.message}` }),
        );
      },
    );
    const timer = setTimeout(() => {
      finish({ error: 'client timeout' });
      req.destroy();
    }, CLIENT_TIMEOUT_MS);
    req.on('error', (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.message }));
    if (spec.body && spec.chunked) {
      const piece = 16 * 1024;
      for (let i = 0; i < spec.body.length; i += piece) req.write(spec.body.subarray(i, i + piece));
      req.end();
    } else {
      req.end(spec.body);
    }
  });
}

/** One GET outside the traffic (readiness, health), on its own short-lived connection. */
async function getJson(port: number, urlPath: string, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path: urlPath, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`${urlPath}: ${res.statusCode}`));
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(err as Error);
        }
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${urlPath}: timeout`)));
    req.on('error', reject);
  });
}

interface PoolFigures {
  workers: number;
  configuredWorkers: number;
  running: number;
  queued: number;
  restarts: number;
}

async function poolFigures(port: number): Promise<PoolFigures | undefined> {
  try {
    return ((await getJson(port, '/_/health')) as { pool?: PoolFigures }).pool;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// /proc (shared with the benchmark: ./measure)

interface RssFigures {
  server: number;
  workers: number[];
  total: number;
}

function rssNow(serverPid: number): RssFigures {
  const server = rssOf(serverPid);
  const workers = childrenOf(serverPid).map((p) => rssOf(p.pid));
  return { server, workers, total: server + workers.reduce((a, b) => a + b, 0) };
}

// ---------------------------------------------------------------------------------------------
// The server under test, and everything that must be cleaned up

interface ServerLog {
  t: number;
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

interface WorkerDeath {
  t: number;
  pid: number;
  reason: string;
  code?: number | null;
  signal?: string | null;
}

class ServerUnderTest {
  readonly child: ChildProcess;
  readonly pid: number;
  exit?: { code: number | null; signal: NodeJS.Signals | null; t: number };
  readonly exited: Promise<void>;
  readonly logs: ServerLog[] = [];
  readonly deaths: WorkerDeath[] = [];
  readonly logCounts = new Map<string, number>();
  readonly rawTail: string[] = [];
  /** Every worker pid ever seen, with its start time. */
  readonly workers = new Map<number, { startTime: string; firstSeen: number }>();
  private pending = '';

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, [SERVER_ENTRY], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (this.child.pid === undefined) throw new Error('could not start the server');
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal, t: performance.now() };
        resolve();
      });
    });
    this.child.stdout?.setEncoding('utf8');
    this.child.stdout?.on('data', (chunk: string) => this.onOutput(chunk));
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (chunk: string) => this.keepRaw(`[stderr] ${chunk}`));
  }

  private keepRaw(line: string): void {
    this.rawTail.push(line.length > 400 ? `${line.slice(0, 400)}…` : line);
    if (this.rawTail.length > 40) this.rawTail.shift();
  }

  private onOutput(chunk: string): void {
    const t = performance.now();
    this.pending += chunk;
    let newline: number;
    while ((newline = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, newline);
      this.pending = this.pending.slice(newline + 1);
      if (line.trim() === '') continue;
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        this.keepRaw(line);
        this.count('(not JSON)');
        continue;
      }
      const { level, msg, ...fields } = entry;
      const log = { t, level: String(level), msg: String(msg), fields };
      this.count(`${log.level}: ${log.msg}`);
      if (log.msg === 'worker exited') {
        this.deaths.push({
          t,
          pid: Number(fields.pid),
          reason: String(fields.reason),
          code: fields.code as number | null,
          signal: fields.signal as string | null,
        });
      } else {
        // Worker exits are expected by the hundred; anything else is worth showing.
        this.keepRaw(line);
        if (this.logs.length < 500) this.logs.push(log);
      }
    }
  }

  private count(key: string): void {
    this.logCounts.set(key, (this.logCounts.get(key) ?? 0) + 1);
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Records the server's current workers; returns them. */
  scanWorkers(): ProcInfo[] {
    if (!this.alive) return [];
    const now = performance.now();
    const live = childrenOf(this.pid);
    for (const proc of live) {
      const known = this.workers.get(proc.pid);
      if (!known || known.startTime !== proc.startTime) {
        this.workers.set(proc.pid, { startTime: proc.startTime, firstSeen: now });
      }
    }
    return live;
  }

  /** Workers ever seen that are still alive. */
  survivors(): number[] {
    return [...this.workers].filter(([pid, w]) => isAlive(pid, w.startTime)).map(([pid]) => pid);
  }

  /** Emergency stop: the server and every worker it had, at once. */
  killAll(): void {
    if (this.alive) this.child.kill('SIGKILL');
    for (const pid of this.survivors()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}

let current: ServerUnderTest | undefined;
let tempDir: string | undefined;

function cleanup(): void {
  current?.killAll();
  if (tempDir) {
    fs.rmSync(tempDir, { recursive: true, force: true });
    tempDir = undefined;
  }
}

async function startServer(
  functionsDir: string,
): Promise<{ server: ServerUnderTest; port: number }> {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const server = new ServerUnderTest({
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? os.tmpdir(),
      PORT: String(port),
      HOST,
      FUNCTIONS_DIR: functionsDir,
      WORKERS: String(WORKERS),
      FUNCTION_TIMEOUT_MS: String(TIMEOUT_MS),
      WORKER_MEMORY_MB: String(WORKER_MEMORY_MB),
      MAX_BODY: `${MAX_BODY_BYTES / 1024}kb`,
      MAX_QUEUE: '256',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
    });
    current = server;
    const until = Date.now() + 30_000;
    while (server.alive && Date.now() < until) {
      const pool = await poolFigures(port);
      if (pool && pool.workers === WORKERS) return { server, port };
      await sleep(100);
    }
    if (server.alive) {
      server.killAll();
      throw new Error(`the server did not become ready within 30 s:\n${server.rawTail.join('\n')}`);
    }
    lastError = server.rawTail.join('\n');
    // Port taken in between (freePort races): try another one.
    if (!/EADDRINUSE/.test(lastError)) break;
  }
  throw new Error(`the server did not start:\n${lastError}`);
}

// ---------------------------------------------------------------------------------------------
// The soak

interface Sample {
  kind: number;
  start: number;
  end: number;
  status?: number;
  code?: string;
  message?: string;
  rid: string;
  /** The answer's class: `200`, `504 FUNCTION_TIMEOUT`, `no answer (ECONNRESET)`, … */
  cls: string;
}

interface Kill {
  t: number;
  pid: number;
}

function classOf(
  kind: Kind,
  spec: RequestSpec,
  answer: Answer,
  rid: string,
  n: number,
  elapsedMs: number,
): Omit<Sample, 'kind' | 'start' | 'end' | 'rid'> {
  if (answer.error !== undefined || answer.status === undefined) {
    return { cls: `no answer (${answer.error ?? 'no status'})` };
  }
  const status = answer.status;
  const body = answer.body ?? '';
  let code: string | undefined;
  let message: string | undefined;
  if (status >= 400) {
    try {
      const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
      code = typeof parsed.error?.code === 'string' ? parsed.error.code : 'NO_CODE';
      message = typeof parsed.error?.message === 'string' ? parsed.error.message : undefined;
    } catch {
      code = 'NOT_JSON';
    }
  }
  let cls = code ? `${status} ${code}` : String(status);
  if (status === 200 && kind.check && !kind.check(body, n)) {
    cls = '200 WRONG_BODY';
    message = body.slice(0, 200);
  }
  // Timeouts and crashes name the function: it must be this request's (no crossed answers).
  if (kind.invokes && (code === 'FUNCTION_TIMEOUT' || code === 'WORKER_CRASHED')) {
    const named = /'([^']+)'/.exec(message ?? '')?.[1];
    const fn = spec.path.split('?')[0].replace(/^\/+|\/+$/g, '');
    if (named !== fn) cls += ' WRONG_FUNCTION';
  }
  if (answer.requestId !== rid) cls += ' WRONG_REQUEST_ID';
  // "exceeded its 1000 ms timeout" before 1000 ms have passed since the request was even sent.
  if (code === 'FUNCTION_TIMEOUT' && elapsedMs < EARLY_TIMEOUT_MS) cls += ' EARLY';
  return { status, code, message, cls };
}

type Verdict =
  | 'expected'
  | 'overloaded'
  | 'killCollateral'
  | 'neighbourCollateral'
  | 'unexpected'
  | 'unanswered';

const VERDICTS: Verdict[] = [
  'expected',
  'overloaded',
  'killCollateral',
  'neighbourCollateral',
  'unexpected',
  'unanswered',
];

interface Judge {
  kills: Kill[];
  /** Worker deaths the server logged that the soak did not cause (memory, timeout, …). */
  hostileDeaths: WorkerDeath[];
  /** Hostile calls (loops, bombs) with their time in flight. */
  hostileCalls: { start: number; end: number }[];
}

function judge(sample: Sample, kind: Kind, j: Judge): Verdict {
  if (sample.status === undefined) return 'unanswered';
  if (kind.expected.includes(sample.cls)) return 'expected';
  if (sample.cls === '503 OVERLOADED') return 'overloaded';
  if (!kind.invokes) return 'unexpected';
  const { start, end } = sample;
  if (sample.cls === '502 WORKER_CRASHED') {
    // Our SIGKILL landed while it ran, and the 502 came within the window after it.
    if (j.kills.some((k) => k.t >= start && k.t <= end && end - k.t <= BLAME_WINDOW_MS)) {
      return 'killCollateral';
    }
    // A worker died of a hostile neighbour (memory bomb, microtask loop, stuck worker) while it
    // ran: the server logs that death at about the time it answers its invocations.
    if (
      j.hostileDeaths.some(
        (d) => d.t >= start && d.t <= end + BLAME_WINDOW_MS && end - d.t <= BLAME_WINDOW_MS,
      )
    ) {
      return 'neighbourCollateral';
    }
    return 'unexpected';
  }
  if (sample.cls === '504 FUNCTION_TIMEOUT') {
    // Starved: a loop or bomb held the worker while this invocation waited for its turn.
    if (j.hostileCalls.some((h) => h.start < end && h.end > start)) return 'neighbourCollateral';
  }
  return 'unexpected';
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
const ms = (value: number) => `${Math.round(value)} ms`;

async function soak(options: Options): Promise<boolean> {
  if (!fs.existsSync(SERVER_ENTRY))
    throw new Error(`${SERVER_ENTRY} is missing: run npm run build`);
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-soak-'));
  // Workers may run as an unprivileged user; the server reads the folder, they do not.
  fs.chmodSync(tempDir, 0o755);
  writeFunctions(tempDir);

  const { server, port } = await startServer(tempDir);
  server.scanWorkers();
  const failures: string[] = [];

  // Warm-up: each function once, so the start figures include warm workers.
  const warmAgent = new http.Agent({ keepAlive: false });
  for (const fn of ['hello', 'async-hello', 'nested/deep']) {
    await call(
      warmAgent,
      port,
      { method: 'GET', path: `/${fn}?n=0` },
      `soak-warm-${fn.replace('/', '-')}`,
    );
  }
  await sleep(200);
  server.scanWorkers();
  const rssStart = rssNow(server.pid);
  const poolStart = await poolFigures(port);

  // Background: worker pids (for kills and orphans), RSS peak, pool figures.
  let rssPeak = rssStart.total;
  const scanner = setInterval(() => {
    server.scanWorkers();
  }, 100);
  const rssSampler = setInterval(() => {
    if (server.alive) rssPeak = Math.max(rssPeak, rssNow(server.pid).total);
  }, 1000);

  const kills: Kill[] = [];
  const killFailures: string[] = [];
  const killer =
    options.killEvery > 0
      ? setInterval(() => {
          const live = server.scanWorkers();
          if (live.length === 0) return;
          const victim = live[Math.floor(Math.random() * live.length)];
          try {
            process.kill(victim.pid, 'SIGKILL');
            kills.push({ t: performance.now(), pid: victim.pid });
          } catch (err) {
            killFailures.push(`${victim.pid}: ${String(err)}`);
          }
        }, options.killEvery * 1000)
      : undefined;

  // Traffic: `connections` closed loops over one keep-alive agent.
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections });
  const picker = new KindPicker(KINDS);
  const samples: Sample[] = [];
  const t0 = performance.now();
  const endAt = t0 + options.seconds * 1000;
  let sent = 0;
  const loop = async () => {
    while (performance.now() < endAt && sent < options.maxRequests && server.alive) {
      const kindIndex = picker.pick();
      const kind = KINDS[kindIndex];
      const n = ++sent;
      const rid = `soak-${n}`;
      const start = performance.now();
      const spec = kind.request(n);
      const answer = await call(agent, port, spec, rid);
      const end = performance.now();
      samples.push({
        kind: kindIndex,
        start,
        end,
        rid,
        ...classOf(kind, spec, answer, rid, n, end - start),
      });
    }
  };
  const progress = setInterval(() => {
    const elapsed = (performance.now() - t0) / 1000;
    process.stderr.write(
      `  … ${elapsed.toFixed(0)} s: ${samples.length} answered, ${kills.length} kills\n`,
    );
  }, 10_000);
  await Promise.all(Array.from({ length: options.connections }, loop));
  const trafficMs = performance.now() - t0;
  clearInterval(progress);
  if (killer) clearInterval(killer);
  agent.destroy();
  if (!server.alive)
    failures.push(`the server died during the soak (${JSON.stringify(server.exit)})`);

  // Recovery: the pool back at full strength, with no invocation left running.
  let poolEnd: PoolFigures | undefined;
  const recoverUntil = performance.now() + RECOVERY_MS;
  while (server.alive && performance.now() < recoverUntil) {
    poolEnd = await poolFigures(port);
    if (poolEnd && poolEnd.workers === WORKERS && poolEnd.running === 0 && poolEnd.queued === 0) {
      break;
    }
    await sleep(100);
  }
  const recovered =
    !!poolEnd && poolEnd.workers === WORKERS && poolEnd.running === 0 && poolEnd.queued === 0;
  if (!recovered) {
    failures.push(`the pool did not recover within ${RECOVERY_MS} ms: ${JSON.stringify(poolEnd)}`);
  }
  // A last call: the server still serves after all that.
  const last = server.alive
    ? await call(warmAgent, port, { method: 'GET', path: '/hello?n=0' }, 'soak-last')
    : { error: 'server gone' };
  if (last.status !== 200)
    failures.push(`a healthy call after the soak failed: ${JSON.stringify(last)}`);
  await sleep(500);
  server.scanWorkers();
  const rssEnd = rssNow(server.pid);

  // Stop: SIGTERM, watching for workers until the server is gone.
  clearInterval(scanner);
  clearInterval(rssSampler);
  const termAt = performance.now();
  let exitCode: number | null = null;
  let exitSignal: string | null = null;
  let exitMs = NaN;
  let hung = false;
  if (server.alive) {
    server.child.kill('SIGTERM');
    const watcher = setInterval(() => server.scanWorkers(), 20);
    await Promise.race([server.exited, sleep(EXIT_WAIT_MS)]);
    clearInterval(watcher);
    if (server.alive) {
      hung = true;
      failures.push(`the server did not exit within ${EXIT_WAIT_MS} ms of SIGTERM`);
      server.child.kill('SIGKILL');
      await server.exited;
    }
    exitCode = server.exit?.code ?? null;
    exitSignal = server.exit?.signal ?? null;
    exitMs = (server.exit?.t ?? NaN) - termAt;
    if (!hung && exitCode !== 0) {
      failures.push(`the server exited with ${exitSignal ?? exitCode} after SIGTERM, not 0`);
    }
  }
  const orphansAtExit = server.survivors();
  let orphans: number[] = [];
  if (orphansAtExit.length > 0) {
    await sleep(3000);
    orphans = server.survivors();
  }
  if (orphansAtExit.length > 0) {
    failures.push(
      `worker processes outlived the server: ${orphansAtExit.join(', ')} ` +
        `(${orphans.length} still alive 3 s later${orphans.length ? `: ${orphans.join(', ')}` : ''})`,
    );
  }
  server.killAll();

  // Judge every request.
  const deliberate = new Set(kills.map((k) => k.pid));
  const hostileDeaths = server.deaths.filter((d) => !deliberate.has(d.pid));
  const j: Judge = {
    kills,
    hostileDeaths: hostileDeaths.filter((d) =>
      ['memory', 'timeout', 'unresponsive'].includes(d.reason),
    ),
    hostileCalls: samples
      .filter((s) => KINDS[s.kind].hostile)
      .map((s) => ({ start: s.start, end: s.end })),
  };
  const unexplainedDeaths = hostileDeaths.filter(
    (d) => !['memory', 'timeout', 'unresponsive'].includes(d.reason),
  );
  // The call each of the pool's timeout kills was for: the 504 answered with it (the pool
  // answers the call it blames, then kills the worker, which it logs). A kill blamed on a call
  // that cannot keep its worker busy (hello, cpu, throws) blamed the wrong call.
  const timeoutKillCauses: Record<string, number> = {};
  const misblamed: { t: number; pid: number; blamed: string; rid: string }[] = [];
  for (const d of hostileDeaths.filter((x) => x.reason === 'timeout')) {
    const near = samples
      .filter((s) => s.code === 'FUNCTION_TIMEOUT' && Math.abs(s.end - d.t) <= BLAME_MATCH_MS)
      .sort((a, b) => Math.abs(a.end - d.t) - Math.abs(b.end - d.t));
    const culprit = near.find((s) => KINDS[s.kind].mayOverrun) ?? near[0];
    const key = culprit ? KINDS[culprit.kind].name : 'unknown';
    timeoutKillCauses[key] = (timeoutKillCauses[key] ?? 0) + 1;
    if (culprit && !KINDS[culprit.kind].mayOverrun) {
      misblamed.push({ t: d.t - t0, pid: d.pid, blamed: key, rid: culprit.rid });
    }
  }
  if (misblamed.length > 0) {
    failures.push(
      `${misblamed.length} of the pool's timeout kills answered 504 to a call that cannot ` +
        `overrun (${misblamed
          .slice(0, 5)
          .map((m) => `${m.blamed} ${m.rid}`)
          .join(', ')}${misblamed.length > 5 ? ', …' : ''})`,
    );
  }

  interface KindFigures {
    sent: number;
    verdicts: Record<Verdict, number>;
    classes: Record<string, number>;
    unexpectedClasses: Record<string, number>;
    maxMs: number;
    p50Ms: number;
    p99Ms: number;
  }
  const perKind: Record<string, KindFigures> = {};
  const byStatus: Record<string, number> = {};
  const byCode: Record<string, number> = {};
  const verdictTotals = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Record<Verdict, number>;
  const healthy = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Record<Verdict, number>;
  const unexpectedSamples: (Sample & { kindName: string; verdict: Verdict })[] = [];
  let longest: Sample | undefined;
  const durations = new Map<number, number[]>();
  for (const s of samples) {
    const kind = KINDS[s.kind];
    const figures = (perKind[kind.name] ??= {
      sent: 0,
      verdicts: Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Record<Verdict, number>,
      classes: {},
      unexpectedClasses: {},
      maxMs: 0,
      p50Ms: 0,
      p99Ms: 0,
    });
    const verdict = judge(s, kind, j);
    figures.sent++;
    figures.verdicts[verdict]++;
    figures.classes[s.cls] = (figures.classes[s.cls] ?? 0) + 1;
    verdictTotals[verdict]++;
    if (kind.healthy) healthy[verdict]++;
    if (verdict === 'unexpected' || verdict === 'unanswered') {
      figures.unexpectedClasses[s.cls] = (figures.unexpectedClasses[s.cls] ?? 0) + 1;
      if (unexpectedSamples.length < 20)
        unexpectedSamples.push({ ...s, kindName: kind.name, verdict });
    }
    const statusKey = s.status === undefined ? 'none' : String(s.status);
    byStatus[statusKey] = (byStatus[statusKey] ?? 0) + 1;
    if (s.code) byCode[s.code] = (byCode[s.code] ?? 0) + 1;
    const duration = s.end - s.start;
    if (s.status !== undefined && (!longest || duration > longest.end - longest.start)) longest = s;
    figures.maxMs = Math.max(figures.maxMs, duration);
    const list = durations.get(s.kind) ?? [];
    list.push(duration);
    durations.set(s.kind, list);
  }
  for (const [index, list] of durations) {
    list.sort((a, b) => a - b);
    perKind[KINDS[index].name].p50Ms = percentile(list, 50);
    perKind[KINDS[index].name].p99Ms = percentile(list, 99);
  }
  const healthySent = VERDICTS.reduce((sum, v) => sum + healthy[v], 0);
  const answered = samples.length - verdictTotals.unanswered;

  if (sent !== samples.length) failures.push(`${sent - samples.length} requests never finished`);
  if (verdictTotals.unanswered > 0)
    failures.push(`${verdictTotals.unanswered} requests unanswered`);
  if (verdictTotals.unexpected > 0)
    failures.push(`${verdictTotals.unexpected} unexpected outcomes`);
  if (options.strict && verdictTotals.neighbourCollateral > 0) {
    failures.push(
      `${verdictTotals.neighbourCollateral} calls failed as collateral of hostile neighbours (--strict)`,
    );
  }
  if (healthy.expected === 0) failures.push('no healthy call succeeded');
  if (unexplainedDeaths.length > 0) {
    failures.push(
      `${unexplainedDeaths.length} worker deaths the soak did not cause and cannot explain`,
    );
  }
  const safetyDeadlines = server.logCounts.get('error: invocation safety deadline fired') ?? 0;
  if (safetyDeadlines > 0)
    failures.push(`the pool's safety deadline fired ${safetyDeadlines} times`);
  const rssGrowth = rssEnd.server - rssStart.server;
  if (rssGrowth > SERVER_RSS_GROWTH_LIMIT) {
    failures.push(`server RSS grew by ${mb(rssGrowth)} (limit ${mb(SERVER_RSS_GROWTH_LIMIT)})`);
  }
  const workerRssLimit = WORKER_MEMORY_MB * MB + WORKER_RSS_HEADROOM;
  const fatWorkers = rssEnd.workers.filter((bytes) => bytes > workerRssLimit);
  if (fatWorkers.length > 0) {
    failures.push(
      `worker RSS over ${mb(workerRssLimit)} at the end: ${fatWorkers.map(mb).join(', ')}`,
    );
  }

  const deathReasons: Record<string, number> = {};
  for (const d of server.deaths) {
    const key = deliberate.has(d.pid) ? `${d.reason} (soak's kill)` : d.reason;
    deathReasons[key] = (deathReasons[key] ?? 0) + 1;
  }
  const otherLogs = [...server.logCounts].filter(([key]) => key !== 'warn: worker exited');

  // ------------------------------------------------------------------------------------------
  // Report
  const pass = failures.length === 0;
  const pct = (part: number, whole: number) =>
    whole ? `${((100 * part) / whole).toFixed(2)}%` : 'n/a';
  const line = (label: string, text: string) => console.log(`${label.padEnd(12)}${text}`);
  const sortDesc = (record: Record<string, number>) =>
    Object.entries(record)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  console.log('');
  console.log(
    `koa-faas soak — ${options.seconds} s, ${options.connections} connections, ` +
      `${options.killEvery > 0 ? `SIGKILL a worker every ${options.killEvery} s` : 'no kills'}, ` +
      `${WORKERS} workers, ${TIMEOUT_MS} ms timeout, ${WORKER_MEMORY_MB} MB heaps, ${MAX_BODY_BYTES / 1024} KB bodies`,
  );
  line(
    'requests',
    `sent ${sent}, answered ${answered}, unanswered ${verdictTotals.unanswered} ` +
      `(${((samples.length * 1000) / trafficMs).toFixed(0)} req/s over ${(trafficMs / 1000).toFixed(1)} s)`,
  );
  line('by status', sortDesc(byStatus));
  line('by code', sortDesc(byCode) || '—');
  console.log('');
  console.log(
    `${'kind'.padEnd(18)}${'sent'.padStart(7)}${'expected'.padStart(10)}${'503'.padStart(6)}` +
      `${'kill-coll'.padStart(11)}${'nbr-coll'.padStart(10)}${'unexpected'.padStart(12)}` +
      `${'no-answer'.padStart(11)}${'p50'.padStart(8)}${'p99'.padStart(8)}${'max'.padStart(8)}`,
  );
  for (const kind of KINDS) {
    const f = perKind[kind.name];
    if (!f) continue;
    const v = f.verdicts;
    console.log(
      `${kind.name.padEnd(18)}${String(f.sent).padStart(7)}${String(v.expected).padStart(10)}` +
        `${String(v.overloaded).padStart(6)}${String(v.killCollateral).padStart(11)}` +
        `${String(v.neighbourCollateral).padStart(10)}${String(v.unexpected).padStart(12)}` +
        `${String(v.unanswered).padStart(11)}${ms(f.p50Ms).padStart(8)}${ms(f.p99Ms).padStart(8)}` +
        `${ms(f.maxMs).padStart(8)}`,
    );
    if (Object.keys(f.unexpectedClasses).length > 0) {
      console.log(`${''.padEnd(18)}  unexpected: ${sortDesc(f.unexpectedClasses)}`);
    }
  }
  console.log(
    `${''.padEnd(18)}  (expected: ${KINDS.map((k) => `${k.name} → ${k.expected.join('|')}`).join('; ')}; any → 503 OVERLOADED)`,
  );
  console.log('');
  line(
    'healthy',
    `${healthy.expected}/${healthySent} succeeded (${pct(healthy.expected, healthySent)}); ` +
      `collateral of the soak's kills ${healthy.killCollateral}, ` +
      `of hostile neighbours ${healthy.neighbourCollateral}, 503 OVERLOADED ${healthy.overloaded}, ` +
      `unexplained ${healthy.unexpected}, unanswered ${healthy.unanswered}`,
  );
  line(
    'longest',
    longest
      ? `${ms(longest.end - longest.start)} (${KINDS[longest.kind].name} → ${longest.cls}, ${longest.rid})`
      : '—',
  );
  line(
    'kills',
    `${kills.length} deliberate SIGKILLs${killFailures.length ? ` (${killFailures.length} failed)` : ''}; ` +
      `worker exits logged by the server: ${sortDesc(deathReasons) || 'none'}` +
      (Object.keys(timeoutKillCauses).length
        ? `; the timeout kills were for: ${sortDesc(timeoutKillCauses)}`
        : ''),
  );
  line(
    'restarts',
    `${poolEnd?.restarts ?? '?'} (pool, /_/health; ${poolStart?.restarts ?? '?'} at start); ` +
      `${server.workers.size} worker processes seen in all`,
  );
  line(
    'rss start',
    `server ${mb(rssStart.server)} + workers ${rssStart.workers.map(mb).join(' + ')} = ${mb(rssStart.total)}`,
  );
  line(
    'rss end',
    `server ${mb(rssEnd.server)} + workers ${rssEnd.workers.map(mb).join(' + ')} = ${mb(rssEnd.total)}; ` +
      `server growth ${rssGrowth >= 0 ? '+' : ''}${mb(rssGrowth)} (limit +${mb(SERVER_RSS_GROWTH_LIMIT)}), peak total ${mb(rssPeak)}`,
  );
  line(
    'shutdown',
    hung
      ? 'the server hung after SIGTERM (killed)'
      : `SIGTERM → exit ${exitSignal ?? exitCode} in ${ms(exitMs)}; ` +
          `orphans ${orphansAtExit.length}${orphansAtExit.length ? ` (${orphans.length} still alive after 3 s)` : ''}`,
  );
  if (otherLogs.length > 0) line('server logs', otherLogs.map(([k, v]) => `${k} ×${v}`).join('; '));
  if (unexplainedDeaths.length > 0) {
    line(
      'deaths?',
      unexplainedDeaths
        .slice(0, 5)
        .map((d) => JSON.stringify(d))
        .join('\n            '),
    );
  }
  if (unexpectedSamples.length > 0) {
    console.log('examples of unexpected outcomes (time from start):');
    for (const s of unexpectedSamples.slice(0, 10)) {
      console.log(
        `  +${ms(s.start - t0)}…+${ms(s.end - t0)} ${s.kindName} ${s.rid} → ${s.cls}` +
          `${s.message ? `: ${s.message}` : ''}`,
      );
    }
    // Only the kills and worker exits around the examples shown: the full lists are in --json.
    const shown = unexpectedSamples.slice(0, 10);
    const around = (t: number) => shown.some((x) => t >= x.start - 1500 && t <= x.end + 1500);
    const nearKills = kills.filter((k) => around(k.t)).map((k) => `+${ms(k.t - t0)} pid ${k.pid}`);
    const nearExits = server.deaths
      .filter((d) => around(d.t))
      .map((d) => `+${ms(d.t - t0)} pid ${d.pid} ${d.reason}`);
    console.log(`  soak's kills near them: ${nearKills.join(', ') || 'none'}`);
    console.log(`  worker exits near them: ${nearExits.join(', ') || 'none'}`);
  }
  if (!pass) {
    const tail = server.rawTail.slice(-10);
    if (tail.length > 0) console.log(`server output (tail):\n  ${tail.join('\n  ')}`);
  }
  console.log(`verdict     ${pass ? 'PASS' : `FAIL\n  - ${failures.join('\n  - ')}`}`);

  if (options.json) {
    const report = {
      options,
      server: {
        workers: WORKERS,
        timeoutMs: TIMEOUT_MS,
        workerMemoryMb: WORKER_MEMORY_MB,
        maxBodyBytes: MAX_BODY_BYTES,
      },
      pass,
      failures,
      requests: {
        sent,
        answered,
        unanswered: verdictTotals.unanswered,
        trafficMs,
        byStatus,
        byCode,
      },
      verdicts: verdictTotals,
      healthy: {
        sent: healthySent,
        ...healthy,
        successRate: healthySent ? healthy.expected / healthySent : null,
      },
      perKind,
      longest: longest && {
        ms: longest.end - longest.start,
        kind: KINDS[longest.kind].name,
        cls: longest.cls,
        rid: longest.rid,
      },
      kills: kills.map((k) => ({ atMs: k.t - t0, pid: k.pid })),
      workerExits: server.deaths.map((d) => ({
        ...d,
        t: d.t - t0,
        deliberate: deliberate.has(d.pid),
      })),
      restarts: {
        start: poolStart?.restarts,
        end: poolEnd?.restarts,
        processesSeen: server.workers.size,
      },
      rss: { start: rssStart, end: rssEnd, peakTotal: rssPeak, serverGrowth: rssGrowth },
      shutdown: { exitCode, exitSignal, exitMs, hung, orphansAtExit, orphansAfter3s: orphans },
      serverLogs: Object.fromEntries(server.logCounts),
      timeoutKillCauses,
      misblamedTimeoutKills: misblamed,
      hostileCalls: samples
        .filter((s) => KINDS[s.kind].hostile || KINDS[s.kind].name === 'never')
        .map((s) => ({
          kind: KINDS[s.kind].name,
          start: s.start - t0,
          end: s.end - t0,
          cls: s.cls,
          rid: s.rid,
          message: s.message,
        })),
      unexpectedExamples: unexpectedSamples.map((s) => ({
        ...s,
        start: s.start - t0,
        end: s.end - t0,
      })),
    };
    fs.writeFileSync(options.json, JSON.stringify(report, null, 2) + '\n');
    console.log(`report written to ${options.json}`);
  }
  return pass;
}

// ---------------------------------------------------------------------------------------------

function main(): void {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`soak: ${(err as Error).message}`);
    process.exit(2);
  }
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      console.error(`soak: ${signal}: stopping the server and its workers`);
      cleanup();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    console.error('soak: crashed:', err);
    cleanup();
    process.exit(1);
  });
  soak(options).then(
    (pass) => {
      cleanup();
      process.exit(pass ? 0 : 1);
    },
    (err: unknown) => {
      console.error('soak: failed:', err);
      cleanup();
      process.exit(1);
    },
  );
}

main();
