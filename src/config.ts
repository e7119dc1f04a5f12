import os from 'node:os';
import path from 'node:path';
import { ConfigError } from './errors';
import { parseEgressAllow } from './services/egress-policy';
import type { Level, LogFormat } from './observe/logger';

/** Whether each invocation gets a new vm2 context (`fresh`) or reuses a warm one per version. */
export type Isolation = 'warm' | 'fresh';

export interface Config {
  /** Listening port; 0 picks a free one. */
  readonly port: number;
  /** Listening address. */
  readonly host: string;
  /** Absolute path of the folder that holds the function files. */
  readonly functionsDir: string;
  /** Wall-clock limit of one invocation, sync and async alike. */
  readonly timeoutMs: number;
  /** The largest `config.timeoutMs` a function may ask for (docs/spec.md §7). */
  readonly maxTimeoutMs: number;
  /** Worker processes in the pool. */
  readonly workers: number;
  /** Request body limit in bytes. */
  readonly maxBodyBytes: number;
  /** Body limit of a deploy (`PUT /_/functions/<name>`), bytes: a bundle with its source map. */
  readonly maxDeployBytes: number;
  /** The largest bundle (a package, or a file that imports packages), bytes (docs/spec.md §2). */
  readonly maxBundleBytes: number;
  /** The longest a version's top-level code may run when it loads, ms (docs/spec.md §2). */
  readonly maxStartupMs: number;
  /** Value of Access-Control-Allow-Origin. */
  readonly corsOrigin: string;
  /** Bearer token for the admin API's writing routes; undefined disables them. */
  readonly adminToken: string | undefined;
  /** `warm` keeps one vm2 context per function version in each worker; `fresh` builds one per call. */
  readonly isolation: Isolation;
  /** Most warm contexts per worker; the worker keeps fewer when they would not fit its heap (worker/warm-set.ts). */
  readonly warmContexts: number;
  /** How long a graceful stop waits for in-flight invocations before killing workers. */
  readonly shutdownGraceMs: number;
  /** V8 heap limit of a worker, MB (its cgroup, where there is one, allows 96 MB more). */
  readonly workerMemoryMb: number;
  /** CPU quota per worker in cores, where cgroups allow; 0 = none. */
  readonly workerCpuQuota: number;
  /** The user workers run as when the server runs as root. */
  readonly workerUser: string;
  /** Largest result a function may return, bytes. */
  readonly maxResultBytes: number;
  /** Invocations that may wait for a worker; past it, 503 OVERLOADED. */
  readonly maxQueue: number;
  /** Whether GET /_/metrics needs the admin token too. */
  readonly metricsAuth: boolean;
  /** How many invocation records are kept in memory. */
  readonly recordsMax: number;
  /** Where the embedded store (SQLite: KV, secrets) lives; created at start when missing. */
  readonly dataDir: string;
  /** Redis for everything shared (docs/spec.md §10); undefined = the embedded store. */
  readonly redisUrl: string | undefined;
  /** Largest KV value, bytes of JSON (docs/spec.md §8). */
  readonly kvMaxValue: number;
  /** Largest KV namespace (one function's data), bytes. */
  readonly kvMaxBytes: number;
  /** Outbound fetch: `on` (the policy of docs/spec.md §8) or `off` (every request refused). */
  readonly egress: 'on' | 'off';
  /** Destinations allowed besides public addresses: host names, `*.suffix`, CIDRs, `:port`. */
  readonly egressAllow: readonly string[];
  /** Largest response body one fetch may read, bytes. */
  readonly fetchMaxBytes: number;
  /** Async invocations queued or running at once (docs/spec.md §9); past it, 503 OVERLOADED. */
  readonly maxAsyncQueue: number;
  /** Async invocations running at once on this server; always fewer than the workers. */
  readonly asyncConcurrency: number;
  /** Callbacks (`X-Callback-Url`) in flight at once to one receiver (URL origin); more wait. */
  readonly callbacksPerOrigin: number;
  readonly logLevel: Level;
  /** `json`: one JSON object per line; `text`: readable lines and koa-logger's access log. */
  readonly logFormat: LogFormat;
}

/**
 * After SIGTERM the server drains for SHUTDOWN_GRACE_MS, and exits anyway this much later if the
 * drain itself hangs (main.ts). An orchestrator's grace period covers both.
 */
export const DRAIN_MARGIN_MS = 5000;

type Env = Readonly<Record<string, string | undefined>>;

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

function read(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function decimal(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || value < min || value > max) {
    throw new ConfigError(`${name} must be a number between ${min} and ${max}, got "${raw}"`);
  }
  return value;
}

/** Parses `1mb`, `512kb`, `100` (bytes) the way koa-bodyparser's `bytes` does, case-insensitive. */
export function parseSize(name: string, raw: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(raw);
  if (!match) throw new ConfigError(`${name} must be a size like 100kb or 1mb, got "${raw}"`);
  const bytes = Math.floor(Number(match[1]) * SIZE_UNITS[(match[2] ?? 'b').toLowerCase()]);
  if (bytes < 1 || bytes > 1024 ** 3) {
    throw new ConfigError(`${name} must be between 1b and 1gb, got "${raw}"`);
  }
  return bytes;
}

function oneOf<T extends string>(env: Env, name: string, values: readonly T[], fallback: T): T {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (!(values as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

/**
 * Reads, validates and freezes the configuration. The only module that reads the environment.
 * @param terminal whether stdout is a terminal: LOG_FORMAT's default is `text` there, else `json`.
 * @throws ConfigError naming the variable when a value is out of range or malformed.
 */
export function loadConfig(
  env: Env = process.env,
  terminal: boolean = process.stdout.isTTY === true,
): Readonly<Config> {
  const host = read(env, 'HOST') ?? '0.0.0.0';
  if (/\s/.test(host)) throw new ConfigError(`HOST must be an address, got "${host}"`);
  const adminToken = read(env, 'ADMIN_TOKEN');
  if (adminToken !== undefined && adminToken.length < 16) {
    throw new ConfigError('ADMIN_TOKEN must be at least 16 characters long');
  }
  const timeoutMs = integer(env, 'FUNCTION_TIMEOUT_MS', 5000, 10, 15 * 60 * 1000);
  const maxTimeoutMs = integer(
    env,
    'MAX_TIMEOUT_MS',
    Math.max(60_000, timeoutMs),
    10,
    15 * 60 * 1000,
  );
  if (maxTimeoutMs < timeoutMs) {
    throw new ConfigError(
      `MAX_TIMEOUT_MS (${maxTimeoutMs}) must be at least FUNCTION_TIMEOUT_MS (${timeoutMs})`,
    );
  }
  const corsOrigin = read(env, 'CORS_ORIGIN') ?? '*';
  // It becomes a header value: visible ASCII only, e.g. * or https://app.example.
  if (!/^[\x21-\x7e]+$/.test(corsOrigin)) {
    throw new ConfigError(`CORS_ORIGIN must be * or an origin like https://app.example`);
  }
  const redisUrl = read(env, 'REDIS_URL');
  if (redisUrl !== undefined && !/^rediss?:\/\/[^\s]+$/.test(redisUrl)) {
    throw new ConfigError(
      `REDIS_URL must be redis://[user:password@]host:port[/db], got "${redisUrl}"`,
    );
  }
  const egressAllow = Object.freeze(
    (read(env, 'EGRESS_ALLOW') ?? '')
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== ''),
  );
  // Checked here so that a bad entry stops the server at start, naming EGRESS_ALLOW.
  parseEgressAllow(egressAllow);
  // safeify silently raises fewer than 2 workers to 2; refuse instead, so the logged config runs.
  const workers = integer(env, 'WORKERS', Math.max(2, os.availableParallelism()), 2, 256);
  // Async work never takes every worker: synchronous calls always find one (docs/spec.md §9).
  const asyncConcurrency = integer(
    env,
    'ASYNC_CONCURRENCY',
    Math.max(1, Math.floor(workers / 2)),
    1,
    256,
  );
  if (asyncConcurrency >= workers) {
    throw new ConfigError(
      `ASYNC_CONCURRENCY (${asyncConcurrency}) must be less than WORKERS (${workers}): ` +
        'async work never takes every worker',
    );
  }
  return Object.freeze({
    port: integer(env, 'PORT', 3000, 0, 65535),
    host,
    functionsDir: path.resolve(read(env, 'FUNCTIONS_DIR') ?? './functions'),
    timeoutMs,
    maxTimeoutMs,
    workers,
    maxBodyBytes: parseSize('MAX_BODY', read(env, 'MAX_BODY') ?? '1mb'),
    maxDeployBytes: parseSize('MAX_DEPLOY_BODY', read(env, 'MAX_DEPLOY_BODY') ?? '16mb'),
    maxBundleBytes: parseSize('MAX_BUNDLE_BYTES', read(env, 'MAX_BUNDLE_BYTES') ?? '5mb'),
    maxStartupMs: integer(env, 'MAX_STARTUP_MS', 1000, 10, 60_000),
    corsOrigin,
    adminToken,
    isolation: oneOf(env, 'FUNCTION_ISOLATION', ['warm', 'fresh'] as const, 'warm'),
    warmContexts: integer(env, 'WARM_CONTEXTS', 1000, 1, 10000),
    shutdownGraceMs: integer(env, 'SHUTDOWN_GRACE_MS', timeoutMs + 1000, 0, 15 * 60 * 1000),
    workerMemoryMb: integer(env, 'WORKER_MEMORY_MB', 128, 16, 16384),
    workerCpuQuota: decimal(env, 'WORKER_CPU_QUOTA', 1, 0, 256),
    workerUser: read(env, 'WORKER_USER') ?? 'nobody',
    maxResultBytes: parseSize('MAX_RESULT_BYTES', read(env, 'MAX_RESULT_BYTES') ?? '6mb'),
    maxQueue: integer(env, 'MAX_QUEUE', 256, 0, 1_000_000),
    metricsAuth: oneOf(env, 'METRICS_AUTH', ['0', '1'] as const, '0') === '1',
    recordsMax: integer(env, 'RECORDS_MAX', 1000, 0, 100_000),
    dataDir: path.resolve(read(env, 'DATA_DIR') ?? './data'),
    redisUrl,
    kvMaxValue: parseSize('KV_MAX_VALUE', read(env, 'KV_MAX_VALUE') ?? '1mb'),
    kvMaxBytes: parseSize('KV_MAX_BYTES', read(env, 'KV_MAX_BYTES') ?? '64mb'),
    egress: oneOf(env, 'EGRESS', ['on', 'off'] as const, 'on'),
    egressAllow,
    fetchMaxBytes: parseSize('FETCH_MAX_BYTES', read(env, 'FETCH_MAX_BYTES') ?? '6mb'),
    maxAsyncQueue: integer(env, 'MAX_ASYNC_QUEUE', 10_000, 1, 10_000_000),
    asyncConcurrency,
    callbacksPerOrigin: integer(env, 'CALLBACK_PER_ORIGIN', 8, 1, 1000),
    logLevel: oneOf(
      env,
      'LOG_LEVEL',
      ['debug', 'info', 'warn', 'error', 'silent'] as const,
      'info',
    ),
    // A person at a terminal reads lines (and koa-logger's access log); a collector reads JSON.
    logFormat: oneOf(env, 'LOG_FORMAT', ['json', 'text'] as const, terminal ? 'text' : 'json'),
  });
}
