/**
 * A cluster of real processes on loopback ports, as docs/spec.md §10 runs it: one `redis-server`, N
 * replicas of the real entry (`node dist/src/main.js`, each with REDIS_URL and its own
 * FUNCTIONS_DIR and DATA_DIR, as separate machines or pods would have) and HAProxy in front,
 * health-checking `/_/ready`. Each replica listens on a port picked before its first start, so a
 * restarted replica comes back where HAProxy expects it. Everything it starts, close() ends (by
 * process id: each replica runs in a process group of its own with its workers).
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';
import { BACKEND, HAPROXY_MISSING, startHaproxy } from '../support/haproxy';
import type { Haproxy } from '../support/haproxy';
import { spawnMain } from '../support/server';
import type { MainProcess } from '../support/server';
import { freePort, killGroup } from '../support/system';
import { until } from '../support/wait';

export const TOKEN = 'replicas-admin-token-0123456789';
export const AUTH = { Authorization: `Bearer ${TOKEN}` };

/** Why the replica tests cannot run here, or false. */
export const CLUSTER_MISSING = REDIS_MISSING || HAPROXY_MISSING;

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: unknown;
  ms: number;
}

export interface CallOptions {
  headers?: Record<string, string>;
  body?: string;
  /** The whole exchange must end within this; default 5 s. */
  timeoutMs?: number;
  agent?: http.Agent;
}

/** One HTTP request to 127.0.0.1:`port`. Rejects on a network error or after `timeoutMs`. */
export function call(
  port: number,
  method: string,
  urlPath: string,
  options: CallOptions = {},
): Promise<Reply> {
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        headers: options.headers,
        agent: options.agent ?? false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          clearTimeout(timer);
          let json: unknown;
          try {
            json = JSON.parse(text) as unknown;
          } catch {
            json = undefined;
          }
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            json,
            ms: performance.now() - started,
          });
        });
        res.on('error', fail);
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error(`no answer to ${method} ${urlPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    function fail(err: Error) {
      clearTimeout(timer);
      reject(err);
    }
    req.on('error', fail);
    req.end(options.body);
  });
}

export interface Replica {
  /** `r1`, `r2`, …: its server name in HAProxy too. */
  name: string;
  port: number;
  /** Its own FUNCTIONS_DIR (the read-only layer of docs/spec.md §10, as baked into an image). */
  functionsDir: string;
  /** The running process's id (undefined while stopped). */
  pid(): number | undefined;
  /** Whether its process runs. */
  running(): boolean;
  /** Its log lines since its last start, parsed. */
  logs(): Record<string, unknown>[];
  /** Starts it (again) on its port; resolves once it logged `listening`. */
  start(): Promise<void>;
  /**
   * Sends `signal` to the server process and waits for it to exit (bounded); the rest of its
   * process group (its workers) is then killed if still there. Resolves with how it ended.
   */
  stop(
    signal: NodeJS.Signals,
    ms?: number,
  ): Promise<{ code: number | null; signal: string | null }>;
}

export interface ClusterOptions {
  replicas?: number;
  /** Function files written into every replica's FUNCTIONS_DIR before start: name → source. */
  files?: Record<string, string>;
  env?: Record<string, string>;
  /** More redis-server options (`--appendonly yes`: the data survives a stop). */
  redisArgs?: string[];
  /** HAProxy's health-check interval, ms. */
  checkMs?: number;
}

export interface Cluster {
  redis: TestRedis;
  replicas: Replica[];
  haproxy: Haproxy;
  /** Writes a function file into every replica's FUNCTIONS_DIR (atomically). */
  writeFile(name: string, source: string): void;
  removeFile(name: string): void;
  /** Waits until HAProxy has `server` UP (or DOWN). */
  waitStatus(server: string, status: 'UP' | 'DOWN', ms?: number): Promise<void>;
  close(): Promise<void>;
}

function writeAtomically(file: string, source: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temp, source);
  fs.renameSync(temp, file);
}

function makeReplica(
  name: string,
  port: number,
  root: string,
  env: Record<string, string>,
): Replica {
  const functionsDir = path.join(root, name, 'functions');
  const dataDir = path.join(root, name, 'data');
  fs.mkdirSync(functionsDir, { recursive: true });
  fs.mkdirSync(dataDir, { recursive: true });
  let main: MainProcess | undefined;

  const start = async () => {
    if (main && main.exitedAt() === undefined) throw new Error(`${name} is running already`);
    const proc = spawnMain({
      env: {
        PORT: String(port),
        FUNCTIONS_DIR: functionsDir,
        DATA_DIR: dataDir,
        ADMIN_TOKEN: TOKEN,
        ASYNC_CONCURRENCY: '1',
        FUNCTION_TIMEOUT_MS: '5000',
        SHUTDOWN_GRACE_MS: '3000',
        LOG_LEVEL: 'warn',
        ...env,
      },
    });
    main = proc;
    await until(
      `${name} logs "listening"`,
      () => proc.logged('listening') !== undefined || proc.exitedAt() !== undefined,
      30_000,
    ).catch(() => undefined);
    if (!proc.logged('listening')) {
      await proc.kill();
      throw new Error(`${name} did not start on port ${port}:\n${proc.tail()}`);
    }
  };

  const stop = async (signal: NodeJS.Signals, ms = 15_000) => {
    const proc = main;
    if (!proc) return { code: null, signal: null };
    if (proc.exitedAt() === undefined) proc.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms);
    });
    const how = await Promise.race([proc.exited, late]);
    clearTimeout(timer);
    killGroup(proc.pid); // workers left behind by a SIGKILL, or a server that did not exit
    if (how === 'timeout') {
      await proc.exited;
      throw new Error(`${name} did not exit within ${ms} ms of ${signal}:\n${proc.tail()}`);
    }
    return how;
  };

  return {
    name,
    port,
    functionsDir,
    pid: () => (main && main.exitedAt() === undefined ? main.pid : undefined),
    running: () => main !== undefined && main.exitedAt() === undefined,
    logs: () => main?.lines ?? [],
    start,
    stop,
  };
}

/**
 * Starts redis-server, the replicas (in parallel) and HAProxy; resolves once HAProxy has every
 * replica UP. @throws when a part does not start (callers skip on CLUSTER_MISSING first).
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-replicas-'));
  const count = options.replicas ?? 3;
  let redis: TestRedis | undefined;
  let haproxy: Haproxy | undefined;
  const replicas: Replica[] = [];
  const close = async () => {
    await haproxy?.close();
    await Promise.all(replicas.map((r) => r.stop('SIGKILL').catch(() => undefined)));
    await redis?.close();
    fs.rmSync(root, { recursive: true, force: true });
  };
  try {
    redis = await startRedis(options.redisArgs);
    const env = { REDIS_URL: redis.url, ...options.env };
    for (let i = 1; i <= count; i++) {
      replicas.push(makeReplica(`r${i}`, await freePort(), root, env));
    }
    const writeFile = (name: string, source: string) => {
      for (const r of replicas) writeAtomically(path.join(r.functionsDir, `${name}.js`), source);
    };
    for (const [name, source] of Object.entries(options.files ?? {})) writeFile(name, source);
    await Promise.all(replicas.map((r) => r.start()));
    haproxy = await startHaproxy(root, {
      bind: `127.0.0.1:${await freePort()}`,
      servers: replicas.map((r) => ({ name: r.name, address: `127.0.0.1:${r.port}` })),
      checkMs: options.checkMs ?? 500,
    });
    const proxy = haproxy;
    const waitStatus = async (server: string, status: 'UP' | 'DOWN', ms = 10_000) => {
      let seen = '';
      await until(
        `haproxy sees ${server} ${status}`,
        async () => {
          const mine = (await proxy.stats()).filter((s) => s.server === server);
          seen = mine.map((s) => `${s.backend}: ${s.status}`).join(', ');
          return mine.length === 1 && mine[0].backend === BACKEND && mine[0].status === status;
        },
        ms,
      ).catch((err: Error) => {
        throw new Error(`${err.message} (last seen: ${seen})`);
      });
    };
    for (const r of replicas) await waitStatus(r.name, 'UP');
    return {
      redis,
      replicas,
      haproxy,
      writeFile,
      removeFile: (name) => {
        for (const r of replicas)
          fs.rmSync(path.join(r.functionsDir, `${name}.js`), { force: true });
      },
      waitStatus,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
