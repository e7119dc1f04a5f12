/**
 * The Redis KV backend (REDIS_URL), shared by every replica. Per namespace, under a prefix that
 * escapes the function name (`kf:kv:{a%2Fb}:`; the braces keep a namespace in one cluster slot):
 *
 * | key | type | holds |
 * |-----|------|-------|
 * | `…:h` | hash | key → value (JSON text) |
 * | `…:z` | sorted set, score 0 | every key, for `list` in byte order (ZRANGEBYLEX); SCAN has no order and may repeat |
 * | `…:e` | sorted set | key → expiry (epoch ms), only keys with a TTL |
 * | `…:n` | string | bytes of keys + values (KV_MAX_BYTES) |
 *
 * and `kf:kv:expiring`, the set of namespaces that have TTL keys, for the sweeper.
 *
 * Each call is one Lua script, so it is atomic however many servers share the Redis. Expiry is
 * the `…:e` score checked against the Redis server's clock on every read (one clock for all
 * replicas), not PEXPIRE: a hash field has no TTL before Redis 7.4, and a value vanishing by
 * itself would leave its bytes counted and its key listed. The sweeper and every write remove
 * expired keys. Redis must run with `maxmemory-policy noeviction`: an evicted hash would lose a
 * whole namespace silently.
 *
 * Connection loss fails calls at once with KV_UNAVAILABLE (no offline queue, a command timeout:
 * a call never hangs); the client reconnects by itself. A write that timed out may still have
 * been applied (Redis ran it after the client gave up): KV_UNAVAILABLE on a write means its
 * outcome is unknown (docs/spec.md §8); it is never resent by the client.
 */
import type Redis from 'ioredis';
import { KvNotANumberError, KvQuotaExceededError, KvUnavailableError } from '../../errors';
import type { Logger } from '../../observe/logger';
import { unavailable } from '../../storage/redis';
import {
  SWEEP_INTERVAL_MS,
  encodeCursor,
  incrStep,
  keyBytes,
  listQuery,
  ttlMs,
  valueBytes,
} from './kv-store';
import type { KvLimits, KvListOptions, KvListPage, KvPutOptions, KvStore } from './kv-store';

const PRELUDE = `
local h, z, e, n = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function purge(k)
  local size = #k + redis.call('HSTRLEN', h, k)
  redis.call('HDEL', h, k)
  redis.call('ZREM', z, k)
  redis.call('ZREM', e, k)
  redis.call('DECRBY', n, size)
end
local function live(k)
  local exp = redis.call('ZSCORE', e, k)
  if exp and tonumber(exp) <= now then
    purge(k)
    return false
  end
  return redis.call('HEXISTS', h, k) == 1
end
local function fits(delta, max)
  if delta <= 0 then return true end
  if tonumber(redis.call('GET', n) or '0') + delta <= max then return true end
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', e, '-inf', now)) do purge(k) end
  return tonumber(redis.call('GET', n) or '0') + delta <= max
end
`;

const SCRIPTS = {
  kvGet: `${PRELUDE}
if not live(ARGV[1]) then return false end
return redis.call('HGET', h, ARGV[1])`,

  // ARGV: key, value, ttl ms or '', ifAbsent '1'/'0', max bytes, namespace. → 1, 0, -1 (quota)
  kvPut: `${PRELUDE}
local k, v = ARGV[1], ARGV[2]
local exists = live(k)
if exists and ARGV[4] == '1' then return 0 end
local old = 0
if exists then old = #k + redis.call('HSTRLEN', h, k) end
local delta = #k + #v - old
if not fits(delta, tonumber(ARGV[5])) then return -1 end
redis.call('HSET', h, k, v)
redis.call('ZADD', z, 0, k)
redis.call('INCRBY', n, delta)
if ARGV[3] ~= '' then
  redis.call('ZADD', e, now + tonumber(ARGV[3]), k)
  redis.call('SADD', KEYS[5], ARGV[6])
else
  redis.call('ZREM', e, k)
end
return 1`,

  kvDelete: `${PRELUDE}
if not live(ARGV[1]) then return 0 end
purge(ARGV[1])
return 1`,

  // ARGV: key, step, max bytes. → {1, text} or {-1} quota, {-2} not a number, {-3} out of range.
  // The TTL is kept. The number rule is kv-store.ts addNumbers; text round-trips exactly.
  kvIncr: `${PRELUDE}
local k = ARGV[1]
local by = tonumber(ARGV[2])
local cur, old = 0, 0
if live(k) then
  local raw = redis.call('HGET', h, k)
  old = #k + #raw
  local ok, val = pcall(cjson.decode, raw)
  if not ok or type(val) ~= 'number' then return {-2} end
  cur = val
end
local function isint(x) return x == math.floor(x) end
local r = cur + by
local text
if isint(cur) and isint(by) then
  if math.abs(r) > 9007199254740991 then return {-3} end
  text = string.format('%d', r)
else
  if r ~= r or r == math.huge or r == -math.huge then return {-3} end
  for digits = 15, 17 do
    text = string.format('%.' .. digits .. 'g', r)
    if tonumber(text) == r then break end
  end
end
if not fits(#k + #text - old, tonumber(ARGV[3])) then return {-1} end
redis.call('HSET', h, k, text)
redis.call('ZADD', z, 0, k)
redis.call('INCRBY', n, #k + #text - old)
return {1, text}`,

  // ARGV: start, end (ZRANGEBYLEX bounds), limit + 1. → key, expiry or '', key, expiry or '', …
  kvList: `${PRELUDE}
local want = tonumber(ARGV[3])
local out, count, start = {}, 0, ARGV[1]
while count < want do
  local batch = redis.call('ZRANGEBYLEX', z, start, ARGV[2], 'LIMIT', 0, want - count)
  if #batch == 0 then break end
  for _, k in ipairs(batch) do
    local exp = redis.call('ZSCORE', e, k)
    if exp and tonumber(exp) <= now then
      purge(k)
    else
      count = count + 1
      out[#out + 1] = k
      out[#out + 1] = exp or ''
    end
  end
  start = '(' .. batch[#batch]
end
return out`,

  kvClear: `${PRELUDE}
local count = redis.call('ZCARD', z) - redis.call('ZCOUNT', e, '-inf', now)
redis.call('DEL', h, z, e, n)
return count`,

  // ARGV: namespace, batch. Removes expired keys; forgets the namespace once none expire.
  kvSweep: `${PRELUDE}
local ks = redis.call('ZRANGEBYSCORE', e, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, k in ipairs(ks) do purge(k) end
if redis.call('ZCARD', e) == 0 then redis.call('SREM', KEYS[5], ARGV[1]) end
return #ks`,
};

type Arg = string | Buffer | number;
type Scripts = {
  [name in keyof typeof SCRIPTS]: (...args: Arg[]) => Promise<unknown>;
};

const EXPIRING = 'kf:kv:expiring';
const SWEEP_BATCH = 1000;

function keysOf(ns: string): string[] {
  const base = `kf:kv:{${encodeURIComponent(ns)}}:`;
  return [`${base}h`, `${base}z`, `${base}e`, `${base}n`, EXPIRING];
}

export class RedisKvStore implements KvStore {
  readonly backend = 'redis' as const;
  readonly #client: Redis;
  readonly #scripts: Scripts;
  readonly #limits: KvLimits;
  readonly #release: () => Promise<void>;
  readonly #logger: Logger | undefined;
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(
    client: Redis,
    limits: KvLimits,
    options: { release: () => Promise<void>; logger?: Logger; sweepIntervalMs?: number },
  ) {
    this.#client = client;
    this.#limits = limits;
    this.#release = options.release;
    this.#logger = options.logger;
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      if (!(name in client)) client.defineCommand(name, { numberOfKeys: 5, lua });
    }
    this.#scripts = client as unknown as Scripts;
    this.#sweeper = setInterval(
      () => void this.sweep(),
      options.sweepIntervalMs ?? SWEEP_INTERVAL_MS,
    );
    this.#sweeper.unref();
  }

  async #call(name: keyof Scripts, ns: string, ...args: Arg[]): Promise<unknown> {
    if (this.#closed) throw new KvUnavailableError('the KV store is closed');
    try {
      return await this.#scripts[name](...keysOf(ns), ...args);
    } catch (err) {
      throw unavailable(err);
    }
  }

  #quota(ns: string): KvQuotaExceededError {
    return new KvQuotaExceededError(
      `the namespace of '${ns}' would go over its ${this.#limits.maxBytes} bytes`,
    );
  }

  async get(ns: string, key: string): Promise<string | null> {
    const k = keyBytes(key);
    return (await this.#call('kvGet', ns, k)) as string | null;
  }

  async put(ns: string, key: string, valueJson: string, options?: KvPutOptions): Promise<boolean> {
    const k = keyBytes(key);
    valueBytes(valueJson, this.#limits.maxValue);
    const ttl = ttlMs(options);
    const answer = await this.#call(
      'kvPut',
      ns,
      k,
      valueJson,
      ttl === undefined ? '' : String(ttl),
      options?.ifAbsent ? '1' : '0',
      this.#limits.maxBytes,
      ns,
    );
    if (answer === -1) throw this.#quota(ns);
    return answer === 1;
  }

  async delete(ns: string, key: string): Promise<boolean> {
    const k = keyBytes(key);
    return (await this.#call('kvDelete', ns, k)) === 1;
  }

  async incr(ns: string, key: string, by?: number): Promise<number> {
    const k = keyBytes(key);
    const step = incrStep(by);
    const [code, text] = (await this.#call(
      'kvIncr',
      ns,
      k,
      String(step),
      this.#limits.maxBytes,
    )) as [number, string?];
    if (code === -1) throw this.#quota(ns);
    if (code === -2)
      throw new KvNotANumberError(`the value of ${JSON.stringify(key)} is not a number`);
    if (code === -3) {
      throw new KvNotANumberError(
        `adding ${step} to ${JSON.stringify(key)} leaves the safe range of numbers (integers up to 2^53 - 1)`,
      );
    }
    return Number(text);
  }

  async list(ns: string, options?: KvListOptions): Promise<KvListPage> {
    const query = listQuery(options);
    const bound = (mark: string, bytes: Buffer) => Buffer.concat([Buffer.from(mark), bytes]);
    const start = query.after
      ? bound('(', query.after)
      : query.prefix.length > 0
        ? bound('[', query.prefix)
        : '-';
    const end =
      query.prefix.length > 0
        ? bound('(', Buffer.concat([query.prefix, Buffer.from([0xff])]))
        : '+';
    const flat = (await this.#call('kvList', ns, start, end, query.limit + 1)) as string[];
    const keys: KvListPage['keys'] = [];
    for (let i = 0; i < flat.length && keys.length < query.limit; i += 2) {
      keys.push(
        flat[i + 1] === '' ? { key: flat[i] } : { key: flat[i], expiresAt: Number(flat[i + 1]) },
      );
    }
    return flat.length / 2 > query.limit
      ? { keys, cursor: encodeCursor(Buffer.from(keys[keys.length - 1].key, 'utf8')) }
      : { keys };
  }

  async clear(ns: string): Promise<number> {
    return (await this.#call('kvClear', ns)) as number;
  }

  /** Removes expired keys of every namespace that has some (the sweeper's tick; public for tests). */
  async sweep(): Promise<number> {
    if (this.#closed || this.#client.status !== 'ready') return 0;
    let removed = 0;
    try {
      for (const ns of await this.#client.smembers(EXPIRING)) {
        removed += (await this.#call('kvSweep', ns, ns, SWEEP_BATCH)) as number;
      }
    } catch (err) {
      this.#logger?.debug('kv sweep failed', { err });
    }
    return removed;
  }

  async ping(): Promise<boolean> {
    if (this.#closed || this.#client.status !== 'ready') return false;
    try {
      return (await this.#client.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#sweeper);
    return this.#release();
  }
}
