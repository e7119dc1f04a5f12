/**
 * The KV store of docs/spec.md §8 (`context.kv` and the /_/kv admin routes): one interface, two backends
 * (sqlite-kv.ts, the default; redis-kv.ts when REDIS_URL is set), and the checks both share, so
 * that a limit answers the same code whichever backend runs.
 *
 * Semantics both backends keep (test/services/kv.test.ts runs one suite against each):
 * - A namespace is a function name; no call reaches another namespace.
 * - Keys are 1–512 bytes of UTF-8, any characters (`/`, spaces, NUL included), but well-formed:
 *   a lone surrogate has no UTF-8 form, so it could not be stored and read back as sent.
 * - Keys sort by their UTF-8 bytes (SQLite BLOB order = Redis lexicographic order), so `list`
 *   pages come in the same order on both.
 * - A value is JSON text of at most `maxValue` bytes; a namespace holds at most `maxBytes`,
 *   counting each key's bytes plus its value's bytes. Expired keys count until they are removed;
 *   a write that would go over first removes the namespace's expired keys, then decides.
 * - `ttl` is whole seconds, 1 … MAX_TTL_S (10 years). An expired key is never returned by get, list or incr; it is
 *   removed by the next write to it, by list, or by the background sweeper.
 * - `incr` adds to a number value (a missing key counts 0) and keeps the key's TTL, as Redis
 *   INCRBY does. Integers stay integers and must stay safe integers (|n| ≤ 2^53 − 1); with a
 *   fraction on either side the result must be finite. Otherwise KV_NOT_A_NUMBER, nothing written.
 * - Reads see every write that finished before them (one SQLite connection in the server
 *   process; one Redis primary).
 */
import { KvInvalidArgumentError, KvInvalidKeyError, KvValueTooLargeError } from '../../errors';

export interface KvPutOptions {
  /** Seconds, a whole number ≥ 1. */
  ttl?: number;
  /** Write only when the key does not exist (an expired key does not). */
  ifAbsent?: boolean;
}

export interface KvListOptions {
  prefix?: string;
  /** The `cursor` of the previous page. */
  cursor?: string;
  /** 1–1000, default 100. */
  limit?: number;
}

export interface KvListPage {
  keys: { key: string; /** epoch ms */ expiresAt?: number }[];
  /** Absent on the last page. */
  cursor?: string;
}

export interface KvStore {
  readonly backend: 'sqlite' | 'redis';
  /** The value as JSON text, or null. */
  get(ns: string, key: string): Promise<string | null>;
  /** valueJson: the value as JSON text (already serialized by the caller). true; false when ifAbsent and it exists. */
  put(ns: string, key: string, valueJson: string, options?: KvPutOptions): Promise<boolean>;
  /** true if the key existed. */
  delete(ns: string, key: string): Promise<boolean>;
  /** The new number. */
  incr(ns: string, key: string, by?: number): Promise<number>;
  list(ns: string, options?: KvListOptions): Promise<KvListPage>;
  /** Deletes every key of a namespace; resolves with how many. */
  clear(ns: string): Promise<number>;
  /** Whether the backend answers now (for /_/ready and /_/health). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** What both backends are built with. */
export interface KvLimits {
  /** Largest value, in bytes of JSON text (KV_MAX_VALUE). */
  maxValue: number;
  /** Largest namespace, in bytes of keys plus values (KV_MAX_BYTES). */
  maxBytes: number;
}

export const MAX_KEY_BYTES = 512;
export const MAX_LIST_LIMIT = 1000;
export const DEFAULT_LIST_LIMIT = 100;
/** How often expired keys are removed in the background. */
export const SWEEP_INTERVAL_MS = 30_000;

/** In a `u` regexp a pair is one code point, so this matches only unpaired surrogates. */
const LONE_SURROGATE = /\p{Cs}/u;

function shown(key: string): string {
  const text = JSON.stringify(key);
  return text.length > 60 ? `${text.slice(0, 60)}…"` : text;
}

/**
 * The key's UTF-8 bytes.
 * @throws KvInvalidKeyError when it is not a string, empty, over 512 bytes or not well-formed.
 */
export function keyBytes(key: unknown): Buffer {
  if (typeof key !== 'string') throw new KvInvalidKeyError('a key must be a string');
  if (key === '') throw new KvInvalidKeyError('a key must not be empty');
  if (LONE_SURROGATE.test(key)) {
    throw new KvInvalidKeyError(`key ${shown(key)} holds a lone surrogate: it has no UTF-8 form`);
  }
  const bytes = Buffer.from(key, 'utf8');
  if (bytes.length > MAX_KEY_BYTES) {
    throw new KvInvalidKeyError(
      `key ${shown(key)} is ${bytes.length} bytes of UTF-8: at most ${MAX_KEY_BYTES}`,
    );
  }
  return bytes;
}

/**
 * The value's size in bytes.
 * @throws KvValueTooLargeError over `maxValue`; KvInvalidArgumentError when it is not a string.
 */
export function valueBytes(valueJson: unknown, maxValue: number): number {
  if (typeof valueJson !== 'string' || valueJson === '') {
    throw new KvInvalidArgumentError('a value must be JSON text');
  }
  const size = Buffer.byteLength(valueJson, 'utf8');
  if (size > maxValue) {
    throw new KvValueTooLargeError(`the value is ${size} bytes of JSON: at most ${maxValue}`);
  }
  return size;
}

/** The longest `ttl`, seconds: 10 years (a longer one is almost surely a unit mistake). */
export const MAX_TTL_S = 10 * 365 * 86_400;

/** The TTL in milliseconds, or undefined. @throws KvInvalidArgumentError */
export function ttlMs(options: KvPutOptions | undefined): number | undefined {
  const ttl = options?.ttl;
  if (ttl === undefined) return undefined;
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_S) {
    throw new KvInvalidArgumentError(
      `ttl must be a whole number of seconds from 1 to ${MAX_TTL_S} (10 years), got ${ttl}`,
    );
  }
  return ttl * 1000;
}

/** `incr`'s step. @throws KvInvalidArgumentError */
export function incrStep(by: unknown): number {
  if (by === undefined) return 1;
  if (typeof by !== 'number' || !Number.isFinite(by)) {
    throw new KvInvalidArgumentError(`incr's step must be a finite number, got ${String(by)}`);
  }
  if (Number.isInteger(by) && !Number.isSafeInteger(by)) {
    throw new KvInvalidArgumentError(`incr's step ${by} is not a safe integer`);
  }
  return by;
}

/**
 * current + by, by the rule in the header, or undefined when the result is refused.
 * (The Redis backend applies the same rule in Lua.)
 */
export function addNumbers(current: number, by: number): number | undefined {
  const result = current + by;
  if (Number.isInteger(current) && Number.isInteger(by)) {
    return Number.isSafeInteger(result) ? result : undefined;
  }
  return Number.isFinite(result) ? result : undefined;
}

/** A stored value read as a number for incr, or undefined when it is not one. */
export function numberOf(valueJson: string): number | undefined {
  try {
    const value: unknown = JSON.parse(valueJson);
    return typeof value === 'number' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** A list call's options, checked, with the cursor decoded to the last key it returned. */
export interface ListQuery {
  prefix: Buffer;
  after: Buffer | undefined;
  limit: number;
}

/** @throws KvInvalidArgumentError */
export function listQuery(options: KvListOptions | undefined): ListQuery {
  const { prefix = '', cursor, limit = DEFAULT_LIST_LIMIT } = options ?? {};
  if (typeof prefix !== 'string' || LONE_SURROGATE.test(prefix)) {
    throw new KvInvalidArgumentError('prefix must be a well-formed string');
  }
  const prefixBytes = Buffer.from(prefix, 'utf8');
  if (prefixBytes.length > MAX_KEY_BYTES) {
    throw new KvInvalidArgumentError(`prefix is over ${MAX_KEY_BYTES} bytes`);
  }
  if (
    typeof limit !== 'number' ||
    !Number.isInteger(limit) ||
    limit < 1 ||
    limit > MAX_LIST_LIMIT
  ) {
    throw new KvInvalidArgumentError(`limit must be a whole number 1–${MAX_LIST_LIMIT}`);
  }
  let after: Buffer | undefined;
  if (cursor !== undefined) {
    after = typeof cursor === 'string' ? decodeCursor(cursor) : undefined;
    if (!after) throw new KvInvalidArgumentError('cursor is not one this store returned');
  }
  // A cursor before the prefix range starts the range at the prefix itself.
  if (after && Buffer.compare(after, prefixBytes) < 0) after = undefined;
  return { prefix: prefixBytes, after, limit };
}

/** The cursor after `key`: opaque to callers (base64url of the key's bytes). */
export function encodeCursor(key: Buffer): string {
  return key.toString('base64url');
}

function decodeCursor(cursor: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]{1,700}$/.test(cursor)) return undefined;
  const key = Buffer.from(cursor, 'base64url');
  if (key.length === 0 || key.length > MAX_KEY_BYTES || key.toString('base64url') !== cursor) {
    return undefined;
  }
  return key;
}

/**
 * The first byte string after every string that starts with `prefix`: the prefix with 0xFF
 * appended. Keys are UTF-8, where no byte is 0xFF, so `prefix <= key < end` holds exactly for
 * the keys that start with the prefix.
 */
export function prefixEnd(prefix: Buffer): Buffer {
  return Buffer.concat([prefix, Buffer.from([0xff])]);
}

/**
 * Runs `release` once, after every holder of a shared connection has let it go: the KV store
 * and the secret store share one SQLite handle or one Redis client.
 */
export function sharedRelease(holders: number, release: () => Promise<void>): () => Promise<void> {
  let left = holders;
  let done: Promise<void> | undefined;
  return () => {
    left--;
    if (left > 0) return Promise.resolve();
    done ??= release();
    return done;
  };
}
