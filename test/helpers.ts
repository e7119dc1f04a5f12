/**
 * Test harness: the real server (createServer) on an ephemeral port over a temporary functions
 * folder, with real worker processes. Everything it starts, close() stops.
 */
import fs_ from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import supertest from 'supertest';
import { loadConfig } from '../src/config';
import type { Config } from '../src/config';
import { createLogger } from '../src/observe/logger';
import { createServer } from '../src/server';
import type { FaasServer } from '../src/server';

export const FIXTURES = path.join(__dirname, '..', '..', 'test', 'fixtures', 'functions');

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
  close(): Promise<void>;
}

export interface StartOptions {
  /** name → source, written before start. */
  functions?: Record<string, string>;
  /** Copy these fixture files (names without .js) from test/fixtures/functions. */
  fixtures?: string[];
  env?: Record<string, string>;
}

export async function startServer(options: StartOptions = {}): Promise<TestServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-test-'));
  const writeFunction = async (name: string, source: string) => {
    // A name may carry its extension (`a/b.ts`); `.js` when it has none.
    const file = path.join(dir, ...name.split('/')) + (/\.(js|ts)$/.test(name) ? '' : '.js');
    await fs.mkdir(path.dirname(file), { recursive: true });
    const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    await fs.writeFile(temp, source);
    await fs.rename(temp, file);
  };
  for (const [name, source] of Object.entries(options.functions ?? {})) {
    await writeFunction(name, source);
  }
  for (const name of options.fixtures ?? []) {
    await fs.copyFile(path.join(FIXTURES, `${name}.js`), path.join(dir, `${name}.js`));
  }
  // Each server gets its own embedded store (SQLite), removed with it.
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-data-'));
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
  const server = createServer(config, logger);
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
    removeFunction: (name) =>
      fs.rm(path.join(dir, ...name.split('/')) + (/\.(js|ts)$/.test(name) ? '' : '.js'), {
        force: true,
      }),
    async close() {
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns true or `ms` pass; for changes that land asynchronously. */
export async function eventually(check: () => Promise<boolean>, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether a process with this pid is alive (a zombie, exited but not yet reaped, is not). */
export function isAlive(pid: number): boolean {
  try {
    const stat = fs_.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Pids of this process's live child processes (the servers' workers run as our children). */
export function childPids(): number[] {
  const pids: number[] = [];
  for (const entry of fs_.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs_.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z') pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
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
