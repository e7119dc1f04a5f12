/**
 * Benchmark helpers: process-tree RSS from /proc, child servers that are started and stopped
 * without leaving orphans, single timed HTTP requests, and small statistics.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

// ---------------------------------------------------------------------------------------------
// Statistics

export function median(values: number[]): number {
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

export function max(values: number[]): number {
  return values.reduce((a, b) => Math.max(a, b), -Infinity);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// /proc: process tree and RSS

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** Field 3: R, S, D, Z (zombie: exited, not yet reaped), … */
  state: string;
  /** utime + stime, in clock ticks. */
  cpuTicks: number;
  /** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot; tells a reused pid apart. */
  startTime: string;
}

function readStat(pid: number): ProcInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: parse after it.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      pid,
      ppid: Number(rest[1]),
      state: rest[0],
      cpuTicks: Number(rest[11]) + Number(rest[12]),
      startTime: rest[19],
    };
  } catch {
    return undefined;
  }
}

/** Every live process, by pid. */
function processTable(): Map<number, ProcInfo> {
  const table = new Map<number, ProcInfo>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = readStat(Number(entry));
    if (info) table.set(info.pid, info);
  }
  return table;
}

const exited = (info: ProcInfo) => info.state === 'Z' || info.state === 'X';

/** Live (not zombie) children of `ppid`. */
export function childrenOf(ppid: number): ProcInfo[] {
  return [...processTable().values()].filter((info) => info.ppid === ppid && !exited(info));
}

/** `root` and all its descendants that are alive now. */
export function processTree(root: number): ProcInfo[] {
  const table = processTable();
  const children = new Map<number, ProcInfo[]>();
  for (const info of table.values()) {
    const list = children.get(info.ppid) ?? [];
    list.push(info);
    children.set(info.ppid, list);
  }
  const rootInfo = table.get(root);
  if (!rootInfo) return [];
  const out: ProcInfo[] = [];
  const stack = [rootInfo];
  while (stack.length > 0) {
    const info = stack.pop() as ProcInfo;
    out.push(info);
    stack.push(...(children.get(info.pid) ?? []));
  }
  return out;
}

/** VmRSS of one process in bytes (0 when it is gone). */
export function rssOf(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

// Linux's USER_HZ: /proc reports CPU time in hundredths of a second on every common build.
const TICKS_PER_SECOND = 100;

/** CPU time (ms) used so far by each process of a tree, keyed by pid and start time. */
export function treeCpu(root: number): Map<string, { pid: number; ms: number }> {
  const out = new Map<string, { pid: number; ms: number }>();
  for (const p of processTree(root)) {
    out.set(`${p.pid}:${p.startTime}`, { pid: p.pid, ms: (p.cpuTicks * 1000) / TICKS_PER_SECOND });
  }
  return out;
}

/** CPU ms the root and its descendants used between two treeCpu snapshots. */
export function cpuBetween(
  root: number,
  before: Map<string, { pid: number; ms: number }>,
  after: Map<string, { pid: number; ms: number }>,
): { serverMs: number; workersMs: number } {
  let serverMs = 0;
  let workersMs = 0;
  for (const [key, { pid, ms }] of after) {
    const delta = ms - (before.get(key)?.ms ?? 0);
    if (pid === root) serverMs += delta;
    else workersMs += delta;
  }
  return { serverMs, workersMs };
}

export interface TreeRss {
  bytes: number;
  processes: number;
}

export function treeRss(root: number): TreeRss {
  const tree = processTree(root);
  return { bytes: tree.reduce((sum, p) => sum + rssOf(p.pid), 0), processes: tree.length };
}

/** Samples the RSS of a process tree every `everyMs` until stopped. */
export class RssSampler {
  readonly samples: { at: number; bytes: number; processes: number }[] = [];
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly root: number,
    private readonly everyMs = 200,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    return this;
  }

  private sample(): void {
    const { bytes, processes } = treeRss(this.root);
    if (processes > 0) this.samples.push({ at: performance.now(), bytes, processes });
  }

  stop(): this {
    clearInterval(this.timer);
    this.sample();
    return this;
  }

  get peak(): number {
    return max(this.samples.map((s) => s.bytes));
  }

  /** Median RSS of the samples taken in [from, to) ms after the first one. */
  window(fromMs: number, toMs: number): number {
    const t0 = this.samples[0]?.at ?? 0;
    return median(
      this.samples.filter((s) => s.at - t0 >= fromMs && s.at - t0 < toMs).map((s) => s.bytes),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Child servers

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface ServerSpec {
  name: string;
  /** Script (a .js file) run with `node`. */
  script: string;
  env: Record<string, string>;
  /** Path answering 200 once the server is ready. */
  readyPath: string;
}

export interface RunningServer {
  name: string;
  pid: number;
  url: string;
  child: ChildProcess;
  /** The last lines the server wrote (stdout and stderr), for error reports. */
  output: string[];
  /** Every process seen in its tree, by pid; swept at stop so no worker outlives the bench. */
  seen: Map<number, string>;
  stopped: boolean;
}

const live = new Set<RunningServer>();

export function liveServers(): RunningServer[] {
  return [...live];
}

/** Records the server's current process tree, so a stop can find workers whose parent died. */
export function rememberTree(server: RunningServer): void {
  for (const p of processTree(server.pid)) server.seen.set(p.pid, p.startTime);
}

function capture(server: RunningServer, stream: NodeJS.ReadableStream | null, tag: string): void {
  if (!stream) return;
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      server.output.push(`${tag} ${line}`);
      if (server.output.length > 200) server.output.shift();
    }
  });
}

/** Starts a server on a free port and waits until `readyPath` answers 200. */
export async function startServer(spec: ServerSpec, timeoutMs = 20_000): Promise<RunningServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [spec.script], {
    env: { ...process.env, ...spec.env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const server: RunningServer = {
    name: spec.name,
    pid: child.pid ?? -1,
    url: `http://127.0.0.1:${port}`,
    child,
    output: [],
    seen: new Map(),
    stopped: false,
  };
  live.add(server);
  capture(server, child.stdout, 'out');
  capture(server, child.stderr, 'err');
  child.once('exit', (code, signal) => {
    if (server.stopped) return;
    console.error(
      `!! ${spec.name} (pid ${server.pid}) exited unexpectedly (${signal ?? code}); last output:\n` +
        server.output.slice(-30).join('\n'),
    );
  });
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      live.delete(server);
      throw new Error(
        `${spec.name} exited during start-up (${child.exitCode ?? child.signalCode}):\n` +
          server.output.join('\n'),
      );
    }
    const answer = await timedGet(`${server.url}${spec.readyPath}`, 1000).catch(() => undefined);
    if (answer?.status === 200) break;
    if (Date.now() > until) {
      await stopServer(server);
      throw new Error(
        `${spec.name} was not ready within ${timeoutMs} ms:\n${server.output.join('\n')}`,
      );
    }
    await sleep(50);
  }
  rememberTree(server);
  return server;
}

/** Whether the process that was `pid` at `startTime` still runs (a zombie does not). */
export function isAlive(pid: number, startTime: string): boolean {
  const info = readStat(pid);
  return !!info && info.startTime === startTime && !exited(info);
}

/**
 * SIGTERM, wait for the exit (SIGKILL after `graceMs`), then SIGKILL any process of its tree that
 * is still alive (the same process: pid and start time match). Idempotent.
 */
export async function stopServer(server: RunningServer, graceMs = 10_000): Promise<void> {
  if (server.stopped) return;
  server.stopped = true;
  const { child } = server;
  if (child.exitCode === null && child.signalCode === null) rememberTree(server);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  // Workers exit when their IPC channel closes; give them a moment before sweeping.
  const until = Date.now() + 2000;
  const leftovers = () =>
    [...server.seen].filter(([pid, start]) => pid !== server.pid && isAlive(pid, start));
  while (leftovers().length > 0 && Date.now() < until) await sleep(20);
  for (const [pid] of leftovers()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  live.delete(server);
}

// ---------------------------------------------------------------------------------------------
// HTTP

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

export interface TimedAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** From sending the request to the last byte of the body, in ms. */
  ms: number;
  /** performance.now() when the last byte arrived. */
  doneAt: number;
}

/** One GET over a kept-alive connection, timed. */
export function timedGet(url: string, timeoutMs = 30_000): Promise<TimedAnswer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const request = http.get(url, { agent, timeout: timeoutMs }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        const doneAt = performance.now();
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body,
          ms: doneAt - started,
          doneAt,
        });
      });
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on('error', reject);
  });
}

export function closeAgent(): void {
  agent.destroy();
}
