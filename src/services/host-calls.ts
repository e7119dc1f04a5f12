/**
 * The server's end of host calls (docs/spec.md §8): what a running invocation asks of the services,
 * checked against that invocation — its function, taken from the pool's record, is the KV
 * namespace; its deadline bounds every call; its counts bound fetches — and answered as JSON.
 * Nothing a worker sends names a function or a namespace.
 *
 * | op          | args (JSON)                                   | result (JSON)                        | effect |
 * |-------------|-----------------------------------------------|--------------------------------------|--------|
 * | `kv.get`    | `{ key }`                                     | the value, or `null`                 | no     |
 * | `kv.put`    | `{ key, value (JSON text), ttl?, ifAbsent? }`      | `true`, or `false` (ifAbsent, exists) | yes    |
 * | `kv.delete` | `{ key }`                                     | whether it existed                   | yes    |
 * | `kv.incr`   | `{ key, by }`                                 | the new number                       | yes    |
 * | `kv.list`   | `{ prefix?, cursor?, limit? }`                | `{ keys: [{ key, expiresAt? }], cursor? }` | no |
 * | `fetch`     | `{ url, method, headers, body?, redirect }`   | `{ url, status, statusText, headers, body, redirected }` | unless GET/HEAD/OPTIONS |
 *
 * A failure answers `{ name, message, code? }`: `Error` with a `KV_…` code for the store,
 * `TypeError` for fetch (as WHATWG fetch rejects), so the sandbox throws what function code expects.
 */
import { FaasError } from '../errors';
import type { Logger } from '../observe/logger';
import type { HostCall, HostReply } from '../pool/sandbox-pool';
import type { EgressPolicy, OutboundRequest } from './egress';
import { EgressError, performFetch } from './egress';
import type { KvStore } from './kv/kv-store';

/** At most this many fetches per invocation (docs/spec.md §8). */
export const MAX_FETCHES = 50;

/** What the services report per call, for metrics. */
export interface CallObserver {
  /** outcome: `ok`, `error`, or for fetch the refusal or failure code (EGRESS_REFUSED, …). */
  (op: string, backend: string, outcome: string, seconds: number): void;
}

export interface HostCallParts {
  kv: KvStore;
  egress: EgressPolicy;
  fetchMaxBytes: number;
  logger: Logger;
  observe?: CallObserver;
}

/** Serves one service call of an invocation (docs/spec.md §8); never rejects. */
export type HostCallHandler = (call: HostCall) => Promise<HostReply>;

const NOT_OPEN: HostReply = {
  ok: false,
  r: JSON.stringify({
    name: 'Error',
    message: 'the services are not open yet',
    code: 'KV_UNAVAILABLE',
  }),
};

/** The handler before the stores are open: every call fails with KV_UNAVAILABLE. */
export const servicesNotOpen: HostCallHandler = () => Promise.resolve(NOT_OPEN);

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** The ops there are; any other name (a worker can send anything) is counted as `unknown`. */
const OPS = new Set(['kv.get', 'kv.put', 'kv.delete', 'kv.incr', 'kv.list', 'fetch']);

/** An error the sandbox throws as is: its name, message and code reach function code. */
class CallError extends Error {
  constructor(
    readonly errorName: 'Error' | 'TypeError',
    message: string,
    readonly code?: string,
    /** The metrics outcome, when more precise than `error` (a fetch's EgressError code). */
    readonly outcome?: string,
  ) {
    super(message);
  }
}

function args(call: HostCall): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(call.args);
  } catch {
    throw new CallError('TypeError', `${call.op}: malformed arguments`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new CallError('TypeError', `${call.op}: malformed arguments`);
  }
  return parsed as Record<string, unknown>;
}

function optionalNumber(value: unknown, what: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new CallError('TypeError', `${what} must be a number`);
  }
  return value;
}

function key(value: unknown): string {
  if (typeof value !== 'string') throw new CallError('TypeError', 'a KV key must be a string');
  return value;
}

/** Races a call against its invocation's deadline. */
function withinDeadline<T>(call: HostCall, work: Promise<T>): Promise<T> {
  // A fetch rejects as a TypeError (WHATWG); a store call as an Error with KV_UNAVAILABLE.
  const late = (message: string) =>
    call.op === 'fetch'
      ? new CallError('TypeError', `fetch failed: ${message}`, undefined, 'FETCH_TIMEOUT')
      : new CallError('Error', `${call.op}: ${message}`, 'KV_UNAVAILABLE');
  const left = call.deadline - Date.now();
  if (left <= 0) return Promise.reject(late("the invocation's time is up"));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late("no answer before the invocation's deadline")), left);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

async function kvCall(kv: KvStore, call: HostCall): Promise<unknown> {
  const a = args(call);
  const ns = call.fn;
  switch (call.op) {
    case 'kv.get': {
      const json = await kv.get(ns, key(a.key));
      return json === null ? null : (JSON.parse(json) as unknown);
    }
    case 'kv.put': {
      if (typeof a.value !== 'string')
        throw new CallError('TypeError', 'kv.put: the value must be JSON data');
      call.markEffect();
      return kv.put(ns, key(a.key), a.value, {
        ttl: optionalNumber(a.ttl, 'ttl'),
        ifAbsent: a.ifAbsent === true,
      });
    }
    case 'kv.delete':
      call.markEffect();
      return kv.delete(ns, key(a.key));
    case 'kv.incr':
      call.markEffect();
      return kv.incr(ns, key(a.key), optionalNumber(a.by, 'by') ?? 1);
    case 'kv.list':
      return kv.list(ns, {
        prefix: typeof a.prefix === 'string' ? a.prefix : undefined,
        cursor: typeof a.cursor === 'string' ? a.cursor : undefined,
        limit: optionalNumber(a.limit, 'limit'),
      });
    default:
      throw new CallError('TypeError', `unknown service call ${call.op}`);
  }
}

async function fetchCall(parts: HostCallParts, call: HostCall): Promise<unknown> {
  if ((call.counts.get('fetch') ?? 0) >= MAX_FETCHES) {
    throw new CallError('TypeError', `fetch: at most ${MAX_FETCHES} requests per invocation`);
  }
  const request = args(call) as unknown as OutboundRequest;
  const method = typeof request.method === 'string' ? request.method.toUpperCase() : 'GET';
  // Marked before it is sent: a request that fails midway may still have reached its server.
  if (!SAFE_METHODS.has(method)) call.markEffect();
  try {
    return await performFetch(request, {
      policy: parts.egress,
      deadline: call.deadline,
      maxBytes: parts.fetchMaxBytes,
    });
  } catch (err) {
    const message = `fetch failed: ${err instanceof Error ? err.message : String(err)}`;
    const outcome = err instanceof EgressError ? err.code : undefined;
    throw new CallError('TypeError', message, undefined, outcome);
  }
}

/** The `onCall` the pool is given: every host call of every invocation comes through here. */
export function hostCalls(parts: HostCallParts): HostCallHandler {
  return async (call) => {
    const started = performance.now();
    const backend = call.op === 'fetch' ? 'egress' : parts.kv.backend;
    const op = OPS.has(call.op) ? call.op : 'unknown';
    try {
      const work = call.op === 'fetch' ? fetchCall(parts, call) : kvCall(parts.kv, call);
      const result = await withinDeadline(call, work);
      parts.observe?.(op, backend, 'ok', (performance.now() - started) / 1000);
      return { ok: true, r: JSON.stringify(result ?? null) };
    } catch (err) {
      const outcome = err instanceof CallError && err.outcome ? err.outcome : 'error';
      parts.observe?.(op, backend, outcome, (performance.now() - started) / 1000);
      if (err instanceof CallError) {
        return {
          ok: false,
          r: JSON.stringify({ name: err.errorName, message: err.message, code: err.code }),
        };
      }
      if (err instanceof FaasError) {
        return {
          ok: false,
          r: JSON.stringify({ name: 'Error', message: err.message, code: err.code }),
        };
      }
      parts.logger.error('service call failed', { fn: call.fn, op: call.op, err });
      return {
        ok: false,
        r: JSON.stringify({
          name: 'Error',
          message: `${call.op} failed`,
          code: call.op.startsWith('kv.') ? 'KV_UNAVAILABLE' : undefined,
        }),
      };
    }
  };
}
