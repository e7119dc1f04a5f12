/**
 * Functions deployed through the admin API, shared by every replica through Redis (REDIS_URL,
 * docs/spec.md §10). The file layer (FUNCTIONS_DIR) stays each replica's own and read-only; a deployed
 * function of the same name takes precedence, and deleting it uncovers the file again.
 *
 * | key | type | holds |
 * |-----|------|-------|
 * | `kf:fn:index` | hash | name → `{"language","version","hash","bytes","modified"}` (JSON) |
 * | `kf:fn:src:<hash>` | string | a source, by the SHA-256 of its text (shared by names with the same text) |
 * | `kf:fn:refs` | hash | hash → how many names use that source (the source goes with the last) |
 * | `kf:fn:gen` | string | bumped on every deploy and delete |
 *
 * and the channel `kf:fn:changed`, on which a deploy or delete publishes the name.
 *
 * Each replica keeps the index in memory and serves from it (no Redis call on an invocation),
 * reading it again whole on a message, and every `CHECK_MS` when `kf:fn:gen` moved: a message
 * lost while a connection was down heals within that period. Sources are fetched once per
 * version and kept while a name uses them. So with Redis down, every function a replica already
 * holds keeps working; a deploy, a delete, or a first invocation of a version this replica has
 * not read fails at once with KV_UNAVAILABLE.
 */
import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { KvUnavailableError } from '../errors';
import type { Logger } from '../observe/logger';
import {
  closeRedisClient,
  createRedisClient,
  firstConnection,
  unavailable,
} from '../storage/redis';
import type { Language } from './function-version';

/** One deployed function as the shared index holds it. */
export interface DeployedFunction {
  name: string;
  language: Language;
  /** The version (function-source.ts versionOf: it covers the language). */
  version: string;
  /** The SHA-256 of the source text, hex: the key of its source. */
  hash: string;
  bytes: number;
  /** Deploy time, epoch ms. */
  modified: number;
}

/** Told that `name` was deployed, replaced or deleted (undefined: anything may have). */
export type LayerListener = (name: string | undefined) => void;

const INDEX = 'kf:fn:index';
const REFS = 'kf:fn:refs';
const GEN = 'kf:fn:gen';
const CHANNEL = 'kf:fn:changed';
const SOURCE_PREFIX = 'kf:fn:src:';
const sourceKey = (hash: string) => `${SOURCE_PREFIX}${hash}`;

/** How often a replica checks `kf:fn:gen` for changes it was not told of, in ms. */
export const CHECK_MS = 500;

/** Drops one use of a source: the source goes with its last name. */
const RELEASE = `
local function release(hash)
  if redis.call('HINCRBY', KEYS[2], hash, -1) <= 0 then
    redis.call('HDEL', KEYS[2], hash)
    redis.call('DEL', ARGV[#ARGV] .. hash)
  end
end
`;

/**
 * KEYS: index, refs, gen. ARGV: name, entry JSON, source, hash, source key prefix.
 * Replaces the name's entry atomically. Returns {created (1/0), gen}.
 */
const DEPLOY = `${RELEASE}
local old = redis.call('HGET', KEYS[1], ARGV[1])
local oldHash = ''
if old then oldHash = cjson.decode(old).hash end
if oldHash ~= ARGV[4] then
  if redis.call('HINCRBY', KEYS[2], ARGV[4], 1) == 1 then
    redis.call('SET', ARGV[5] .. ARGV[4], ARGV[3])
  end
  if oldHash ~= '' then release(oldHash) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local gen = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', '${CHANNEL}', ARGV[1])
if old then return {0, gen} end
return {1, gen}
`;

/** KEYS: index, refs, gen. ARGV: name, source key prefix. Returns {removed (1/0), gen}. */
const REMOVE = `${RELEASE}
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return {0, tonumber(redis.call('GET', KEYS[3]) or '0')} end
redis.call('HDEL', KEYS[1], ARGV[1])
release(cjson.decode(old).hash)
local gen = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', '${CHANNEL}', ARGV[1])
return {1, gen}
`;

export interface SharedFunctionsOptions {
  redisUrl: string;
  logger: Logger;
  /** How often to check for missed changes (default CHECK_MS). */
  checkMs?: number;
}

/** The deployed layer of docs/spec.md §10 on Redis. */
export class SharedFunctions {
  readonly #logger: Logger;
  readonly #client: Redis;
  readonly #subscriber: Redis;
  readonly #checkMs: number;
  /** The index as last read (or as this replica changed it). */
  #index = new Map<string, DeployedFunction>();
  /** The `kf:fn:gen` the index reflects. */
  #gen = -1;
  /** Sources by hash, for the names in the index. */
  readonly #sources = new Map<string, string>();
  readonly #listeners = new Set<LayerListener>();
  #timer?: NodeJS.Timeout;
  #refreshing?: Promise<void>;
  #again = false;
  #closed = false;

  constructor(options: SharedFunctionsOptions) {
    this.#logger = options.logger;
    this.#checkMs = options.checkMs ?? CHECK_MS;
    this.#client = createRedisClient(options.redisUrl, options.logger);
    this.#client.defineCommand('faasDeploy', { numberOfKeys: 3, lua: DEPLOY });
    this.#client.defineCommand('faasRemove', { numberOfKeys: 3, lua: REMOVE });
    // A subscribed connection can send nothing else; ioredis subscribes it again on reconnect.
    this.#subscriber = createRedisClient(options.redisUrl, options.logger);
    this.#subscriber.on('message', () => this.refresh());
    this.#subscriber.on('ready', () => {
      this.#subscriber.subscribe(CHANNEL).catch(() => undefined);
      // Whatever was published while it was away.
      void this.refresh();
    });
  }

  /**
   * Reads the index (waiting at most about 2 s for Redis: a Redis that is down at start leaves
   * the layer empty until it answers, and the periodic check fills it) and starts the checks.
   */
  async start(): Promise<void> {
    await firstConnection(this.#client);
    this.#timer = setInterval(() => void this.check(), this.#checkMs);
    this.#timer.unref();
    await this.refresh();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.all([closeRedisClient(this.#subscriber), closeRedisClient(this.#client)]);
  }

  /** Tells `listener` of every change. Returns the unsubscribe. */
  subscribe(listener: LayerListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The deployed function `name`, as this replica knows it (no Redis call). */
  get(name: string): DeployedFunction | undefined {
    return this.#index.get(name);
  }

  /** Every deployed name, as this replica knows them. */
  names(): IterableIterator<string> {
    return this.#index.keys();
  }

  /**
   * The source of a deployed version: from memory when this replica has read it, else from Redis.
   * @throws KvUnavailableError when Redis does not answer, or the source is gone (replaced
   *   meanwhile: the caller reads the index again).
   */
  async source(fn: DeployedFunction): Promise<string> {
    const known = this.#sources.get(fn.hash);
    if (known !== undefined) return known;
    let source: string | null;
    try {
      source = await this.#client.get(sourceKey(fn.hash));
    } catch (err) {
      throw unavailable(err);
    }
    if (source === null || sha256(source) !== fn.hash) {
      throw new KvUnavailableError(`the source of function '${fn.name}' changed while read`);
    }
    if (this.#index.get(fn.name)?.hash === fn.hash) this.#sources.set(fn.hash, source);
    return source;
  }

  /**
   * Deploys `source` as `name` for every replica (this one at once).
   * @returns whether the name was new to the layer.
   * @throws KvUnavailableError when Redis does not answer.
   */
  async deploy(
    name: string,
    source: string,
    language: Language,
    version: string,
  ): Promise<{ created: boolean }> {
    const hash = sha256(source);
    const fn: DeployedFunction = {
      name,
      language,
      version,
      hash,
      bytes: Buffer.byteLength(source),
      modified: Date.now(),
    };
    let reply: [number, number];
    try {
      reply = (await (this.#client as unknown as RedisWithScripts).faasDeploy(
        INDEX,
        REFS,
        GEN,
        name,
        JSON.stringify(fn),
        source,
        hash,
        SOURCE_PREFIX,
      )) as [number, number];
    } catch (err) {
      throw unavailable(err);
    }
    this.#sources.set(hash, source);
    this.#apply(name, fn, reply[1]);
    return { created: reply[0] === 1 };
  }

  /**
   * Deletes the deployed function `name` for every replica.
   * @returns false when the layer has no such name.
   * @throws KvUnavailableError when Redis does not answer.
   */
  async remove(name: string): Promise<boolean> {
    let reply: [number, number];
    try {
      reply = (await (this.#client as unknown as RedisWithScripts).faasRemove(
        INDEX,
        REFS,
        GEN,
        name,
        SOURCE_PREFIX,
      )) as [number, number];
    } catch (err) {
      throw unavailable(err);
    }
    this.#apply(name, undefined, reply[1]);
    return reply[0] === 1;
  }

  /**
   * A change this replica made, applied at once. Replies on one connection come in order, so a
   * generation not above the one held means Redis lost its data (a restart without
   * persistence): the index is read again whole.
   */
  #apply(name: string, fn: DeployedFunction | undefined, gen: number): void {
    if (gen <= this.#gen) {
      void this.refresh();
      return;
    }
    const before = this.#index.get(name);
    if (fn) this.#index.set(name, fn);
    else this.#index.delete(name);
    this.#dropUnused(before);
    // Only this one name changed when the generation moved by one; else read it all.
    if (gen === this.#gen + 1) this.#gen = gen;
    else void this.refresh();
    this.#notify(name);
  }

  async check(): Promise<void> {
    if (this.#closed || this.#client.status !== 'ready') return;
    try {
      const gen = Number((await this.#client.get(GEN)) ?? 0);
      if (gen !== this.#gen) await this.refresh();
    } catch {
      // Redis is away: the layer serves what it holds; the next check tries again.
    }
  }

  /** Reads the whole index again (one at a time; a request meanwhile runs once more after). */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      do {
        this.#again = false;
        await this.#read();
      } while (this.#again && !this.#closed);
    })()
      // Never rejects: callers fire it and forget (a reconnect, a message, a generation gap).
      .catch((err: unknown) => this.#logger.warn('shared functions: cannot refresh', { err }))
      .finally(() => {
        this.#refreshing = undefined;
      });
    return this.#refreshing;
  }

  async #read(): Promise<void> {
    if (this.#closed) return;
    let gen: number;
    let raw: Record<string, string>;
    try {
      const replies = await this.#client.multi().get(GEN).hgetall(INDEX).exec();
      if (!replies || replies.some(([err]) => err)) return;
      gen = Number(replies[0][1] ?? 0);
      raw = replies[1][1] as Record<string, string>;
    } catch {
      return;
    }
    // A generation below the one held: Redis lost its data; what it has now is the truth.
    const next = new Map<string, DeployedFunction>();
    for (const [name, json] of Object.entries(raw)) {
      const fn = parseEntry(name, json);
      if (fn) next.set(name, fn);
      else this.#logger.warn('unreadable deployed function entry in Redis; ignored', { fn: name });
    }
    const changed: string[] = [];
    for (const [name, fn] of next) {
      if (
        this.#index.get(name)?.hash !== fn.hash ||
        this.#index.get(name)?.language !== fn.language
      ) {
        changed.push(name);
      }
    }
    for (const name of this.#index.keys()) if (!next.has(name)) changed.push(name);
    const before = [...this.#index.values()];
    this.#index = next;
    this.#gen = gen;
    for (const fn of before) this.#dropUnused(fn);
    for (const name of changed) this.#notify(name);
  }

  /** Forgets a source no name in the index uses any more. */
  #dropUnused(fn: DeployedFunction | undefined): void {
    if (!fn || !this.#sources.has(fn.hash)) return;
    for (const other of this.#index.values()) if (other.hash === fn.hash) return;
    this.#sources.delete(fn.hash);
  }

  #notify(name: string | undefined): void {
    for (const listener of this.#listeners) {
      try {
        listener(name);
      } catch (err) {
        this.#logger.error('a deployed-function listener threw', { err });
      }
    }
  }
}

interface RedisWithScripts {
  faasDeploy(...args: (string | number)[]): Promise<unknown>;
  faasRemove(...args: (string | number)[]): Promise<unknown>;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function parseEntry(name: string, json: string): DeployedFunction | undefined {
  try {
    const fn = JSON.parse(json) as Partial<DeployedFunction>;
    if (
      (fn.language === 'js' || fn.language === 'ts') &&
      typeof fn.version === 'string' &&
      typeof fn.hash === 'string' &&
      typeof fn.bytes === 'number' &&
      typeof fn.modified === 'number'
    ) {
      return { ...(fn as DeployedFunction), name };
    }
  } catch {
    // not JSON
  }
  return undefined;
}
