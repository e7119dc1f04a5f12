/**
 * Test harness: the real server (createServer) on an ephemeral port over a temporary functions
 * folder, with real worker processes. Everything it starts, close() stops.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import supertest from 'supertest';
import { loadConfig } from '../src/config';
import type { Config } from '../src/config';
import { createLogger } from '../src/logger';
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
  /** Writes functions/<name>.js atomically (temp file + rename), creating folders. */
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
    const file = path.join(dir, ...name.split('/')) + '.js';
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
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    FUNCTIONS_DIR: dir,
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
    removeFunction: (name) => fs.rm(path.join(dir, ...name.split('/')) + '.js', { force: true }),
    async close() {
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
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

/** Whether a process with this pid is alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
