/**
 * The server under the soak: `node dist/src/main.js` as a child with the soak's configuration,
 * its JSON log read line by line (worker exits, with their reasons), its workers found in /proc
 * (which of them the soak may kill: the shared pool's, never a quarantine's solo worker), and an
 * emergency stop that leaves no process behind.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { childrenOf, freePort, isAlive, rssOf, sleep } from './measure';
import type { ProcInfo } from './measure';
import { HOST, poolFigures } from './soak-http';

const ROOT = path.join(__dirname, '..', '..');
export const SERVER_ENTRY = path.join(ROOT, 'dist', 'src', 'main.js');

/** The server's configuration for the soak. */
export interface SoakConfig {
  workers: number;
  timeoutMs: number;
  workerMemoryMb: number;
  maxBodyBytes: number;
  functionsDir: string;
  dataDir: string;
  adminToken: string;
}

export interface WorkerDeath {
  t: number;
  pid: number;
  reason: string;
  code?: number | null;
  signal?: string | null;
}

export interface WorkerProc extends ProcInfo {
  /** Runs src/worker/runner.js (the server has no other children today; esbuild would be one). */
  runner: boolean;
  /** Its argv JSON says `"lane":"solo"`: a quarantine's worker, never killed. */
  solo: boolean;
}

/**
 * What a child of the server is, from /proc/<pid>/cmdline, read now (not cached: between fork and
 * exec a child still shows the server's own command line).
 */
export function describeChild(proc: ProcInfo): WorkerProc {
  let args: string[] = [];
  try {
    args = fs.readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8').split('\0');
  } catch {
    // Gone: neither runner nor solo.
  }
  const runner = args.some((arg) => /[\\/]worker[\\/]runner\.js$/.test(arg));
  const solo = args.some((arg) => {
    if (!arg.startsWith('{')) return false;
    try {
      return (JSON.parse(arg) as { lane?: unknown }).lane === 'solo';
    } catch {
      return arg.includes('"lane":"solo"');
    }
  });
  return { ...proc, runner, solo };
}

export interface RssFigures {
  server: number;
  workers: number[];
  total: number;
}

export function rssNow(serverPid: number): RssFigures {
  const server = rssOf(serverPid);
  const workers = childrenOf(serverPid).map((p) => rssOf(p.pid));
  return { server, workers, total: server + workers.reduce((a, b) => a + b, 0) };
}

export class ServerUnderTest {
  readonly child: ChildProcess;
  readonly pid: number;
  exit?: { code: number | null; signal: NodeJS.Signals | null; t: number };
  readonly exited: Promise<void>;
  readonly deaths: WorkerDeath[] = [];
  readonly logCounts = new Map<string, number>();
  readonly rawTail: string[] = [];
  /** Every child pid ever seen, with its start time. */
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
      this.count(`${String(level)}: ${String(msg)}`);
      if (msg === 'worker exited') {
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
      }
    }
  }

  private count(key: string): void {
    this.logCounts.set(key, (this.logCounts.get(key) ?? 0) + 1);
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Records the server's current children; returns them. */
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

  /** The server's children alive now, each with what it is. */
  describedWorkers(): WorkerProc[] {
    return this.scanWorkers().map(describeChild);
  }

  /** The shared pool's workers alive now: the ones the soak may kill. */
  sharedWorkers(): WorkerProc[] {
    return this.describedWorkers().filter((w) => w.runner && !w.solo);
  }

  /** Children ever seen that are still alive. */
  survivors(): number[] {
    return [...this.workers].filter(([pid, w]) => isAlive(pid, w.startTime)).map(([pid]) => pid);
  }

  /** Emergency stop: the server and every child it had, at once. */
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

/**
 * Starts the server on a free port and waits until its pool has all its workers.
 * `onStart` sees each attempt's server at once (for the emergency stop).
 * @throws when it does not start or become ready within 30 s.
 */
export async function startServer(
  config: SoakConfig,
  onStart: (server: ServerUnderTest) => void,
): Promise<{ server: ServerUnderTest; port: number }> {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const server = new ServerUnderTest({
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? os.tmpdir(),
      PORT: String(port),
      HOST,
      FUNCTIONS_DIR: config.functionsDir,
      DATA_DIR: config.dataDir,
      ADMIN_TOKEN: config.adminToken,
      WORKERS: String(config.workers),
      FUNCTION_TIMEOUT_MS: String(config.timeoutMs),
      WORKER_MEMORY_MB: String(config.workerMemoryMb),
      MAX_BODY: `${config.maxBodyBytes}b`,
      MAX_QUEUE: '256',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
    });
    onStart(server);
    const until = Date.now() + 30_000;
    while (server.alive && Date.now() < until) {
      const pool = await poolFigures(port);
      if (pool && pool.workers >= config.workers) return { server, port };
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
