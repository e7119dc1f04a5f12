/**
 * The JSON the admin API under /_/ answers (docs/spec.md §3, §6, §8, §9, §11), one type per
 * answer: the routes beside this file annotate what they send with these types, and the web
 * console (ui/src/api.ts) reads its answers with them (`import type`), so a change to a shape on
 * either side fails `tsc` on the other.
 *
 * Type declarations only: no runtime import and no Node type, because the console's tsconfig (DOM,
 * no Node) compiles this file too. A shape the server already declares in a module with no import
 * at all (records.ts, quarantine.ts, async-queue.ts, errors.ts) is re-exported from there. The
 * others are declared here: their server modules import Node, and a lower layer may not import
 * from http (docs/architecture.md), so the route that sends one assigns the server's value to the
 * type declared here, and tsc checks that it has every field, of the right type.
 */
import type { BundleInfo, PackageInfo } from '../../functions/bundle-info';
import type { InvocationRecord } from '../../observe/records';
import type { QuarantineEntry } from '../../pool/quarantine';
import type { InvocationState } from '../../async/queue/async-queue';
import type { ErrorBody } from '../../errors';

export type { InvocationRecord } from '../../observe/records';
export type { QuarantineEntry } from '../../pool/quarantine';
export type {
  AsyncStatus,
  CallbackState,
  InvocationState,
  StoredError,
  StoredResponse,
} from '../../async/queue/async-queue';
/** Every error answer: `{ error: { code, message, … }, requestId }` (docs/spec.md §3). */
export type { ErrorBody } from '../../errors';

// ---- functions: GET /_/functions, GET|PUT /_/functions/<name> ----

/** An HTTP method a function may list in `config.methods` (function-config.ts HTTP_METHODS). */
export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';

/** A function's validated `config` (docs/spec.md §7); the server's is function-config.ts. */
export interface FunctionConfig {
  readonly timeoutMs?: number;
  readonly methods?: readonly HttpMethod[];
  readonly rawBody?: boolean;
  readonly cors?: 'server' | 'function';
  readonly env?: Readonly<Record<string, string>>;
  readonly secrets?: readonly string[];
  readonly maxConcurrency?: number;
  readonly schedule?: readonly string[];
  readonly timezone?: string;
  readonly overlap?: 'skip' | 'allow';
  readonly async?: Readonly<Partial<{ retries: number; maxAgeSeconds: number }>>;
}

/**
 * Where a version comes from: `file` (FUNCTIONS_DIR, or an API deploy without Redis), `shared`
 * (an API deploy in Redis), `draft` (a console draft run, never listed).
 */
export type Layer = 'file' | 'shared' | 'draft';

/** A version as the store lists it (function-version.ts functionInfo). */
export interface FunctionInfo {
  name: string;
  /** Relative to FUNCTIONS_DIR: `a/b.js` or `a/b.ts`. */
  file: string;
  /** Content hash of the source (16 hex digits). */
  version: string;
  bytes: number;
  /** ISO 8601. */
  modified: string;
  status: 'ok' | 'compile_error';
  /** With `compile_error`: why, and where in the file when known. */
  error?: string;
  /** With `compile_error` in another file of a package than its entry: that file. */
  errorFile?: string;
  line?: number;
  column?: number;
  config: FunctionConfig;
  layer: Layer;
  /** A package function's package.json: entry, name, version, declared dependencies. */
  package?: PackageInfo;
  /** For a bundle (a package, or a file that imports): its size and what it holds. */
  bundle?: BundleInfo;
}

/** Why a version is quarantined (docs/spec.md §3): it runs alone until it has run clean. */
export type FunctionQuarantine = Omit<QuarantineEntry, 'name' | 'version'>;

/** One entry of `GET /_/functions`. */
export interface FunctionListing extends FunctionInfo {
  quarantined: boolean;
  /** Present when `quarantined`. */
  quarantine?: FunctionQuarantine;
  /** Invocations this server counted, by outcome (`ok`, an error code, a status). */
  invocations: Record<string, number>;
}

/** `GET /_/functions`. */
export interface FunctionListAnswer {
  functions: FunctionListing[];
}

/** `GET /_/functions/<name>`: the listing with the source. */
export interface FunctionDetail extends FunctionListing {
  source: string;
}

/** `PUT /_/functions/<name>` (201 created, 200 replaced). */
export interface DeployAnswer {
  name: string;
  file: string;
  version: string;
  bytes: number;
  config: FunctionConfig;
  /** For a bundle (uploaded, or a file that imports packages): its size and what it holds. */
  bundle?: BundleInfo;
  package?: PackageInfo;
}

// ---- health: GET /_/health, GET /_/ready ----

/** The sandbox pool now (sandbox-pool.ts stats()). */
export interface PoolStats {
  workers: number;
  configuredWorkers: number;
  running: number;
  queued: number;
  restarts: number;
  closing: boolean;
  /** The solo lane: its live workers, invocations running and waiting there. */
  solo: { workers: number; running: number; queued: number };
  /** Function versions quarantined now. */
  quarantined: number;
}

/** What confines a worker process beyond the sandbox (pool/confinement.ts). */
export interface ConfinementReport {
  environment: 'empty';
  heapLimitMb: number;
  permissionModel: boolean;
  user: string;
  cgroup: 'v2' | 'v1' | 'none';
  cgroupNote?: string;
  memoryLimitMb?: number;
  cpuQuota?: number;
}

/** What the server adds to /_/health beside the pool. */
export interface HealthExtras {
  /** What confines the workers (the field keeps the name `isolation`). */
  isolation?: ConfinementReport;
  /** The KV backend, once open. */
  kv?: 'sqlite' | 'redis';
}

/** `GET /_/health` (503 SHUTTING_DOWN while draining). */
export interface HealthAnswer extends HealthExtras {
  status: 'ok';
  uptimeSeconds: number;
  pool: PoolStats;
}

/** `GET /_/ready`: 200, or 503 while no worker is live. */
export interface ReadyAnswer {
  status: 'ready' | 'starting' | 'degraded';
  /** With REDIS_URL: whether Redis answered a ping, and if not, why. */
  redis?: 'ok' | 'unavailable';
  error?: ErrorBody['error'];
  pool: PoolStats;
}

// ---- invocations and schedules: GET /_/invocations, /_/invocations/<id>, .../stream, /_/schedules ----

/** `GET /_/invocations`: records (newest first), or async states when `status` names one. */
export interface InvocationListAnswer {
  invocations: InvocationRecord[] | InvocationState[];
}

/** An async invocation's state with its last attempt's record (timing, console output). */
export interface AsyncInvocationAnswer extends InvocationState {
  lastAttempt?: Partial<InvocationRecord>;
}

/** `GET /_/invocations/<id>`: an async invocation's state, or a synchronous one's record. */
export type InvocationAnswer = AsyncInvocationAnswer | InvocationRecord;

/**
 * `GET /_/invocations/stream` (text/event-stream): the `data` of each `event: invocation`, one
 * record as `GET /_/invocations` lists them.
 */
export type InvocationStreamRecord = InvocationRecord;

/** The `data` of the `event: end` the server sends before it ends a stream as it stops. */
export interface InvocationStreamEnd {
  code: 'SHUTTING_DOWN';
  message: string;
}

/** One cron expression of one function (async/schedules/schedules.ts ScheduleListing). */
export interface ScheduleListing {
  function: string;
  schedule: string;
  /** IANA zone, `UTC` by default. */
  timezone: string;
  overlap: 'skip' | 'allow';
  /** The next tick, ISO; absent when the expression never fires again. */
  next?: string;
  /** Ticks this server skipped since it started (overlap `skip`), and the last one's time. */
  skipped: number;
  lastSkipped?: string;
}

/** `GET /_/schedules`. */
export interface ScheduleListAnswer {
  schedules: ScheduleListing[];
}

// ---- data: /_/kv/<fn>, /_/secrets (the value of `GET /_/kv/<fn>?key=` is the stored JSON) ----

/** `GET /_/kv/<fn>?prefix=&cursor=&limit=`: one page of keys. */
export interface KvListAnswer {
  keys: { key: string; /** epoch ms */ expiresAt?: number }[];
  /** Absent on the last page. */
  cursor?: string;
}

/** `PUT /_/kv/<fn>?key=`: false when `ifAbsent` and the key exists. */
export interface KvPutAnswer {
  written: boolean;
}

/** `DELETE /_/kv/<fn>?key=`: whether the key existed. */
export interface KvDeleteAnswer {
  deleted: boolean;
}

/** `DELETE /_/kv/<fn>?all=true`: how many keys the namespace held. */
export interface KvClearAnswer {
  deleted: number;
}

/** A secret as listed: never its value. */
export interface SecretListing {
  name: string;
  /** ISO 8601. */
  updatedAt: string;
}

/** `GET /_/secrets`. */
export interface SecretListAnswer {
  secrets: SecretListing[];
}

/** `PUT /_/secrets/<name>` (201 created, 200 replaced). */
export interface SecretPutAnswer {
  name: string;
  created: boolean;
}

// ---- the console: POST /_/drafts/<name>, GET /_/console/stats ----

/** `POST /_/drafts/<name>`: the response the function's caller would get, and how it ran. */
export interface DraftRunAnswer {
  status: number;
  headers: Record<string, string | string[]>;
  /** UTF-8 text, or base64 when `bodyEncoding` is `base64` (bytes that are not UTF-8). */
  body: string;
  bodyEncoding: 'utf8' | 'base64';
  requestId: string;
  version: string;
  config: FunctionConfig;
  cold: boolean;
  durationMs: { queue?: number; exec?: number; total: number };
  logs: string[];
  logsTruncated?: true;
}

/** One function's figures, from the invocation records this server keeps. */
export interface FunctionFigures {
  count: number;
  errors: number;
  errorRate: number;
  /** Total durations in ms (nearest rank). */
  p50: number;
  p99: number;
  /** The newest record's start (ISO 8601). */
  last: string;
}

/** One bucket of the traffic series. */
export interface TrafficBucket {
  /** The bucket's start, epoch ms. */
  t: number;
  requests: number;
  errors: number;
}

/** Requests and errors per bucket, oldest first; the last bucket is still filling. */
export interface TrafficFigures {
  bucketSeconds: number;
  buckets: TrafficBucket[];
}

/** `GET /_/console/stats` (console-data.ts). */
export interface ConsoleStatsAnswer {
  /** By function name, sorted. */
  functions: Record<string, FunctionFigures>;
  /** How many records the figures come from, and the oldest one's start. */
  records: { count: number; since?: string };
  traffic: TrafficFigures;
  /** Async invocations queued or running, when the queue is open. */
  asyncDepth?: number;
}
