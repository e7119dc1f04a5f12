/**
 * The embedded KV backend: better-sqlite3 on `<DATA_DIR>/koa-faas.db` in WAL mode, the default,
 * so one machine needs nothing else. better-sqlite3 is synchronous: each call runs whole, in
 * one transaction, before the event loop moves on, so every call is atomic and a read sees
 * every write that finished before it.
 *
 * Keys are stored as BLOBs of their UTF-8 bytes: BLOB comparison is memcmp, the same order as
 * Redis ZRANGEBYLEX, and it lets `prefix <= key < prefix||0xFF` select a prefix on the primary
 * key's index (see prefixEnd). A table of per-namespace byte counts, updated in the same
 * transaction as each write, enforces KV_MAX_BYTES without summing the namespace.
 */
import type { Database as Db, Statement } from 'better-sqlite3';
import { KvNotANumberError, KvQuotaExceededError, KvUnavailableError } from '../../errors';
import type { Logger } from '../../observe/logger';
import { isBusy, whenUnlocked } from '../../storage/sqlite';
import {
  SWEEP_INTERVAL_MS,
  addNumbers,
  encodeCursor,
  incrStep,
  keyBytes,
  listQuery,
  numberOf,
  prefixEnd,
  ttlMs,
  valueBytes,
} from './kv-store';
import type { KvLimits, KvListOptions, KvListPage, KvPutOptions, KvStore } from './kv-store';

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL,
    key BLOB NOT NULL,
    value TEXT NOT NULL,
    size INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (ns, key)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE IF NOT EXISTS kv_usage (ns TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID;
`;

interface Row {
  key: Buffer;
  value: string;
  size: number;
  expires_at: number | null;
}

const SWEEP_BATCH = 1000;

export class SqliteKvStore implements KvStore {
  readonly backend = 'sqlite' as const;
  readonly #db: Db;
  readonly #limits: KvLimits;
  readonly #release: () => Promise<void>;
  readonly #logger: Logger | undefined;
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;
  readonly #sql: Record<
    | 'get'
    | 'upsert'
    | 'remove'
    | 'usage'
    | 'addUsage'
    | 'listFrom'
    | 'listAfter'
    | 'clearCount'
    | 'clear'
    | 'clearUsage'
    | 'expiredOf'
    | 'expired',
    Statement
  >;

  /**
   * @param release closes the shared database once its last user is done (see sharedRelease).
   */
  constructor(
    db: Db,
    limits: KvLimits,
    options: { release: () => Promise<void>; logger?: Logger; sweepIntervalMs?: number },
  ) {
    this.#db = db;
    this.#limits = limits;
    this.#release = options.release;
    this.#logger = options.logger;
    db.exec(SCHEMA);
    // Prepared once: each call only binds and steps.
    this.#sql = {
      get: db.prepare('SELECT key, value, size, expires_at FROM kv WHERE ns = ? AND key = ?'),
      upsert: db.prepare(
        'INSERT INTO kv (ns, key, value, size, expires_at) VALUES (?, ?, ?, ?, ?) ' +
          'ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, size = excluded.size, ' +
          'expires_at = excluded.expires_at',
      ),
      remove: db.prepare('DELETE FROM kv WHERE ns = ? AND key = ?'),
      usage: db.prepare('SELECT bytes FROM kv_usage WHERE ns = ?').pluck(),
      addUsage: db.prepare(
        'INSERT INTO kv_usage (ns, bytes) VALUES (?, ?) ' +
          'ON CONFLICT (ns) DO UPDATE SET bytes = bytes + excluded.bytes',
      ),
      listFrom: db.prepare(
        'SELECT key, expires_at FROM kv WHERE ns = ? AND key >= ? AND key < ? ' +
          'AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?',
      ),
      listAfter: db.prepare(
        'SELECT key, expires_at FROM kv WHERE ns = ? AND key > ? AND key < ? ' +
          'AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?',
      ),
      clearCount: db
        .prepare('SELECT count(*) FROM kv WHERE ns = ? AND (expires_at IS NULL OR expires_at > ?)')
        .pluck(),
      clear: db.prepare('DELETE FROM kv WHERE ns = ?'),
      clearUsage: db.prepare('DELETE FROM kv_usage WHERE ns = ?'),
      expiredOf: db.prepare(
        'SELECT key, size FROM kv WHERE ns = ? AND expires_at IS NOT NULL AND expires_at <= ?',
      ),
      expired: db.prepare(
        'SELECT ns, key, size FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?',
      ),
    };
    this.#sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? SWEEP_INTERVAL_MS);
    this.#sweeper.unref();
  }

  /**
   * Runs `fn` in one write transaction, waiting off the event loop while another process holds
   * the lock (whenUnlocked); a closed, broken or long-locked database is KV_UNAVAILABLE.
   */
  #run<T>(fn: () => T): Promise<T> {
    return whenUnlocked(() => this.#runNow(fn, 'immediate'), 'the KV store');
  }

  /**
   * Runs `fn` in one read transaction (WAL: a writer, even another process's, never blocks it),
   * waiting off the event loop in the rare cases it is busy.
   */
  #read<T>(fn: () => T): Promise<T> {
    return whenUnlocked(() => this.#runNow(fn, 'deferred'), 'the KV store');
  }

  #runNow<T>(fn: () => T, mode: 'immediate' | 'deferred'): T {
    if (this.#closed) throw new KvUnavailableError('the KV store is closed');
    try {
      return this.#db.transaction(fn)[mode]();
    } catch (err) {
      if (err instanceof Error && 'code' in err && String(err.code).startsWith('SQLITE_')) {
        throw new KvUnavailableError(`the KV store failed: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  /** The live row of a key: an expired one is removed here and reads as absent. */
  #live(ns: string, key: Buffer, now: number): Row | undefined {
    const row = this.#sql.get.get(ns, key) as Row | undefined;
    if (row && row.expires_at !== null && row.expires_at <= now) {
      this.#sql.remove.run(ns, key);
      this.#sql.addUsage.run(ns, -row.size);
      return undefined;
    }
    return row;
  }

  /** Writes a row, keeping the namespace's byte count, or throws KV_QUOTA_EXCEEDED. */
  #write(
    ns: string,
    key: Buffer,
    value: string,
    size: number,
    expiresAt: number | null,
    old?: Row,
  ) {
    const delta = size - (old?.size ?? 0);
    if (delta > 0) {
      let used = (this.#sql.usage.get(ns) as number | undefined) ?? 0;
      if (used + delta > this.#limits.maxBytes) used -= this.#purgeExpired(ns, Date.now());
      if (used + delta > this.#limits.maxBytes) {
        throw new KvQuotaExceededError(
          `the namespace of '${ns}' holds ${used} bytes: this write needs ${delta} more, ` +
            `over its ${this.#limits.maxBytes}`,
        );
      }
    }
    this.#sql.upsert.run(ns, key, value, size, expiresAt);
    if (delta !== 0) this.#sql.addUsage.run(ns, delta);
  }

  /** Removes a namespace's expired keys; returns the bytes freed. */
  #purgeExpired(ns: string, now: number): number {
    let freed = 0;
    for (const row of this.#sql.expiredOf.all(ns, now) as Row[]) {
      this.#sql.remove.run(ns, row.key);
      freed += row.size;
    }
    if (freed > 0) this.#sql.addUsage.run(ns, -freed);
    return freed;
  }

  async get(ns: string, key: string): Promise<string | null> {
    const k = keyBytes(key);
    // A read takes no write lock: an expired row reads as absent and is left to the sweeper
    // (and to the next write of its namespace), which keeps the byte count.
    return this.#read(() => {
      const row = this.#sql.get.get(ns, k) as Row | undefined;
      if (!row || (row.expires_at !== null && row.expires_at <= Date.now())) return null;
      return row.value;
    });
  }

  async put(ns: string, key: string, valueJson: string, options?: KvPutOptions): Promise<boolean> {
    const k = keyBytes(key);
    const size = k.length + valueBytes(valueJson, this.#limits.maxValue);
    const ttl = ttlMs(options);
    return this.#run(() => {
      const now = Date.now();
      const old = this.#live(ns, k, now);
      if (old && options?.ifAbsent) return false;
      this.#write(ns, k, valueJson, size, ttl === undefined ? null : now + ttl, old);
      return true;
    });
  }

  async delete(ns: string, key: string): Promise<boolean> {
    const k = keyBytes(key);
    return this.#run(() => {
      const old = this.#live(ns, k, Date.now());
      if (!old) return false;
      this.#sql.remove.run(ns, k);
      this.#sql.addUsage.run(ns, -old.size);
      return true;
    });
  }

  async incr(ns: string, key: string, by?: number): Promise<number> {
    const k = keyBytes(key);
    const step = incrStep(by);
    return this.#run(() => {
      const old = this.#live(ns, k, Date.now());
      const current = old ? numberOf(old.value) : 0;
      if (current === undefined) {
        throw new KvNotANumberError(`the value of ${JSON.stringify(key)} is not a number`);
      }
      const result = addNumbers(current, step);
      if (result === undefined) {
        throw new KvNotANumberError(
          `${current} + ${step} leaves the safe range of numbers (integers up to 2^53 - 1)`,
        );
      }
      const text = JSON.stringify(result);
      this.#write(ns, k, text, k.length + Buffer.byteLength(text), old?.expires_at ?? null, old);
      return result;
    });
  }

  async list(ns: string, options?: KvListOptions): Promise<KvListPage> {
    const query = listQuery(options);
    const end = prefixEnd(query.prefix);
    return this.#read(() => {
      const now = Date.now();
      // One row more than the page says whether another page follows.
      const rows = (
        query.after
          ? this.#sql.listAfter.all(ns, query.after, end, now, query.limit + 1)
          : this.#sql.listFrom.all(ns, query.prefix, end, now, query.limit + 1)
      ) as Row[];
      const page = rows.slice(0, query.limit);
      const keys = page.map((row) =>
        row.expires_at === null
          ? { key: row.key.toString('utf8') }
          : { key: row.key.toString('utf8'), expiresAt: row.expires_at },
      );
      return rows.length > query.limit
        ? { keys, cursor: encodeCursor(page[page.length - 1].key) }
        : { keys };
    });
  }

  async clear(ns: string): Promise<number> {
    return this.#run(() => {
      const count = this.#sql.clearCount.get(ns, Date.now()) as number;
      this.#sql.clear.run(ns);
      this.#sql.clearUsage.run(ns);
      return count;
    });
  }

  /** Removes expired keys, a batch at a time (the sweeper's tick; public for tests). */
  sweep(): number {
    if (this.#closed) return 0;
    try {
      return this.#db.transaction(() => {
        const rows = this.#sql.expired.all(Date.now(), SWEEP_BATCH) as (Row & { ns: string })[];
        for (const row of rows) {
          this.#sql.remove.run(row.ns, row.key);
          this.#sql.addUsage.run(row.ns, -row.size);
        }
        return rows.length;
      })();
    } catch (err) {
      // Another process holds the lock: the next tick sweeps.
      if (!isBusy(err)) this.#logger?.warn('kv sweep failed', { err });
      return 0;
    }
  }

  ping(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    try {
      this.#db.prepare('SELECT 1').get();
      return Promise.resolve(true);
    } catch {
      return Promise.resolve(false);
    }
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#sweeper);
    return this.#release();
  }
}
