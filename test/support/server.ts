/**
 * The server under test, two ways. startServer(): the real server (createServer) in this process
 * on an ephemeral port over a temporary functions folder, with real worker processes.
 * startMain() / spawnMain(): the real entry, `node dist/src/main.js`, as a child process with
 * its own environment, in a process group of its own with its workers.
 *
 * Whatever fails to start is stopped before the error is thrown, and everything still running
 * when a test file's tests are over is ended by a last hook, so that a failed test never leaves
 * a process (or its IPC channel) keeping the file, and `npm test`, waiting.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import supertest from 'supertest';
import { loadConfig } from '../../src/config';
import type { Config } from '../../src/config';
import { createLogger } from '../../src/observe/logger';
import { createServer } from '../../src/server';
import type { FaasServer } from '../../src/server';
import { childPids, killGroup } from './system';
import { eventually } from './wait';

export { childPids, isAlive } from './system';

export const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'functions');
export const MAIN = path.join(__dirname, '..', '..', 'src', 'main.js');

/** What this file started and has not stopped yet: ended by the last hook (below). */
const running = new Set<{ stop(): Promise<void>; kill(): void }>();

export interface TestServer {
  url: string;
  dir: string;
  config: Readonly<Config>;
  server: FaasServer;
  /** A supertest agent bound to the live server. */
  request: ReturnType<typeof supertest>;
  /** Every log line the server wrote, parsed. */
  logs: Record<string, unknown>[];
  /** Writes functions/<name>.js (or `<name>.ts` given so) atomically, creating folders. */
  writeFunction(name: string, source: string): Promise<void>;
  removeFunction(name: string): Promise<void>;
  /** Stops the server and removes its folders; calling it again waits for the same stop. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** name → source, written before start. */
  functions?: Record<string, string>;
  /** Copy these fixture files (names without .js) from test/fixtures/functions. */
  fixtures?: string[];
  env?: Record<string, string>;
}

/**
 * Starts the real server in this process. @throws when it does not start; what it had started
 * (workers, stores, folders) is stopped and removed first.
 */
export async function startServer(options: StartOptions = {}): Promise<TestServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-test-'));
  // Each server gets its own embedded store (SQLite), removed with it.
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-data-'));
  const functionFile = (name: string) =>
    // A name may carry its extension (`a/b.ts`); `.js` when it has none.
    path.join(dir, ...name.split('/')) + (/\.(js|ts)$/.test(name) ? '' : '.js');
  const writeFunction = async (name: string, source: string) => {
    const file = functionFile(name);
    await fs.mkdir(path.dirname(file), { recursive: true });
    const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    await fs.writeFile(temp, source);
    await fs.rename(temp, file);
  };
  let server: FaasServer | undefined;
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      running.delete(handle);
      await server?.close();
      await fs.rm(dir, { recursive: true, force: true });
      await fs.rm(dataDir, { recursive: true, force: true });
    })();
    return closed;
  };
  const handle = { stop: close, kill: () => undefined };
  running.add(handle);
  try {
    for (const [name, source] of Object.entries(options.functions ?? {})) {
      await writeFunction(name, source);
    }
    for (const name of options.fixtures ?? []) {
      await fs.copyFile(path.join(FIXTURES, `${name}.js`), path.join(dir, `${name}.js`));
    }
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      FUNCTIONS_DIR: dir,
      DATA_DIR: dataDir,
      WORKERS: '2',
      FUNCTION_TIMEOUT_MS: '1000',
      SHUTDOWN_GRACE_MS: '2000',
      ...options.env,
    });
    const logs: Record<string, unknown>[] = [];
    const logger = createLogger({
      level: 'debug',
      write: (line) => {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      },
    });
    server = createServer(config, logger);
    const address = await server.listen();
    const url = `http://127.0.0.1:${address.port}`;
    return {
      url,
      dir,
      config,
      server,
      request: supertest(url),
      logs,
      writeFunction,
      removeFunction: (name) => fs.rm(functionFile(name), { force: true }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Closes the server and returns the worker processes still running afterwards, after killing
 * them (by pid: they are ours), so that a leak fails the test instead of hanging the file.
 */
export async function closeAndReap(t: TestServer): Promise<number[]> {
  await t.close();
  await eventually(async () => childPids().length === 0, 2000).catch(() => undefined);
  const left = childPids();
  for (const pid of left) process.kill(pid, 'SIGKILL');
  return left;
}

export interface MainOptions {
  /** Over the defaults: PORT=0, HOST=127.0.0.1, WORKERS=2, LOG_FORMAT=json and PATH. */
  env?: Record<string, string>;
  /** Start from this process's environment rather than PATH alone. */
  inheritEnv?: boolean;
  cwd?: string;
}

export interface MainProcess {
  child: ChildProcess;
  pid: number;
  /** Its stdout lines parsed as JSON (a line that is not JSON as `{ raw }`). */
  lines: Record<string, unknown>[];
  /** The first line with this `msg`. */
  logged(msg: string): Record<string, unknown> | undefined;
  /** What it wrote to stderr. */
  stderr(): string;
  /** The last 4000 characters of its stdout and stderr, for an assertion's message. */
  tail(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** When it exited (performance.now()), or undefined while it runs. */
  exitedAt(): number | undefined;
  /** SIGKILLs its process group (it and its workers) and waits for it to exit. */
  kill(): Promise<void>;
}

/** Spawns `node dist/src/main.js`; does not wait for it (see startMain). */
export function spawnMain(options: MainOptions = {}): MainProcess {
  const child = spawn(process.execPath, [MAIN], {
    cwd: options.cwd,
    detached: true, // its own process group: its workers are ended with it (kill())
    env: {
      ...(options.inheritEnv ? process.env : { PATH: process.env.PATH ?? '' }),
      PORT: '0',
      HOST: '127.0.0.1',
      WORKERS: '2',
      LOG_FORMAT: 'json',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let partial = '';
  let err = '';
  let tail = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-4000);
    const split = (partial + chunk).split('\n');
    partial = split.pop() ?? '';
    for (const line of split) {
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ raw: line });
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    tail = (tail + chunk).slice(-4000);
  });
  let exitedAt: number | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      exitedAt = performance.now();
      resolve({ code, signal });
    }),
  );
  const kill = async () => {
    running.delete(handle);
    killGroup(child.pid);
    await exited;
  };
  // The last hook stops it if it still runs; workers it left behind after exiting are a leak for
  // the test to see, ended only if they still hold the file open (see endLeftovers).
  const handle = {
    stop: async () => {
      if (exitedAt === undefined) await kill();
    },
    kill: () => killGroup(child.pid),
  };
  running.add(handle);
  return {
    child,
    pid: child.pid as number,
    lines,
    logged: (msg) => lines.find((l) => l.msg === msg),
    stderr: () => err,
    tail: () => tail,
    exited,
    exitedAt: () => exitedAt,
    kill,
  };
}

/**
 * Spawns `node dist/src/main.js` and waits for its `listening` line; resolves with the process
 * and the port it listens on. @throws when it exits first or does not listen within `timeoutMs`,
 * after killing it and its workers.
 */
export async function startMain(
  options: MainOptions & { timeoutMs?: number } = {},
): Promise<MainProcess & { port: number }> {
  const proc = spawnMain(options);
  const timeoutMs = options.timeoutMs ?? 30_000;
  try {
    await eventually(
      async () => proc.logged('listening') !== undefined || proc.exitedAt() !== undefined,
      timeoutMs,
    );
    const port = Number(proc.logged('listening')?.port);
    if (!(port > 0)) throw new Error('exited before listening');
    return { ...proc, port };
  } catch (err) {
    await proc.kill();
    throw new Error(`dist/src/main.js did not start (${(err as Error).message}):\n${proc.tail()}`);
  }
}

/**
 * The last hook of a test file (node:test runs root hooks in the order they were added, and
 * this module is imported before the file's own): stops every server and main process still
 * running, so a test that failed half-way leaves nothing behind. Should the file still be alive
 * half a minute later (a leaked worker holding a pipe or IPC channel open), what this module
 * started and this process's child processes are killed (an unref'd timer: it does not keep the
 * file alive itself). Registered only under the test runner, not when the bench imports the
 * cluster.
 */
function endLeftovers(): void {
  after(async () => {
    for (const handle of [...running]) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 15_000)));
      await Promise.race([handle.stop().catch(() => undefined), late]);
      clearTimeout(timer);
    }
    setTimeout(() => {
      for (const handle of running) handle.kill();
      for (const pid of childPids()) process.kill(pid, 'SIGKILL');
    }, 30_000).unref();
  });
  // The runner ends a file that outlives --test-timeout with SIGTERM: end its servers too.
  process.once('SIGTERM', () => {
    for (const handle of running) handle.kill();
    process.kill(process.pid, 'SIGTERM');
  });
  process.once('exit', () => {
    for (const handle of running) handle.kill();
  });
}

if (process.env.NODE_TEST_CONTEXT !== undefined || /\.test\.js$/.test(process.argv[1] ?? '')) {
  endLeftovers();
}
