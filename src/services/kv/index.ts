/**
 * Builds the KV store (and the secret store beside it) on the backend the config chooses:
 * Redis when REDIS_URL is set, else SQLite in DATA_DIR. The two stores share one connection,
 * closed when both are.
 */
import type { Logger } from '../../observe/logger';
import type { SecretStore } from '../secrets';
import { RedisSecretStore } from '../secrets-redis';
import { SqliteSecretStore } from '../secrets-sqlite';
import { sharedRelease } from './kv-store';
import type { KvStore } from './kv-store';
import { closeRedisClient, createRedisClient, firstConnection } from '../../storage/redis';
import { openDatabase, stopBlocking } from '../../storage/sqlite';
import { RedisKvStore } from './redis-kv';
import { SqliteKvStore } from './sqlite-kv';

export type { KvStore, KvListOptions, KvListPage, KvPutOptions } from './kv-store';

export interface StoreOptions {
  dataDir: string;
  redisUrl?: string;
  kvMaxValue: number;
  kvMaxBytes: number;
  logger?: Logger;
  /** How often expired keys are removed (default 30 s). */
  sweepIntervalMs?: number;
}

export interface Stores {
  kv: KvStore;
  secrets: SecretStore;
  /** Closes both stores and their connection. */
  close(): Promise<void>;
}

/**
 * The KV store and the secret store on one connection.
 * @throws KvUnavailableError when the SQLite file cannot be opened. A Redis that is down does not
 *   throw: after waiting up to 2 s for it, calls fail with KV_UNAVAILABLE and `kv.ping()` is
 *   false until it answers (an orchestrator sees /_/ready fail rather than a crash loop).
 */
export async function createStores(options: StoreOptions): Promise<Stores> {
  const limits = { maxValue: options.kvMaxValue, maxBytes: options.kvMaxBytes };
  const common = { logger: options.logger, sweepIntervalMs: options.sweepIntervalMs };
  let kv: KvStore;
  let secrets: SecretStore;
  if (options.redisUrl) {
    const client = createRedisClient(options.redisUrl, options.logger);
    await firstConnection(client);
    const release = sharedRelease(2, () => closeRedisClient(client));
    kv = new RedisKvStore(client, limits, { ...common, release });
    secrets = new RedisSecretStore(client, release);
  } else {
    const db = openDatabase(options.dataDir);
    const release = sharedRelease(2, async () => {
      db.close();
    });
    kv = new SqliteKvStore(db, limits, { ...common, release });
    secrets = new SqliteSecretStore(db, release);
    stopBlocking(db);
  }
  return {
    kv,
    secrets,
    close: async () => {
      await Promise.all([kv.close(), secrets.close()]);
    },
  };
}

/** The KV store alone (its close() closes the connection). */
export async function createKvStore(options: StoreOptions): Promise<KvStore> {
  const limits = { maxValue: options.kvMaxValue, maxBytes: options.kvMaxBytes };
  const common = { logger: options.logger, sweepIntervalMs: options.sweepIntervalMs };
  if (options.redisUrl) {
    const client = createRedisClient(options.redisUrl, options.logger);
    await firstConnection(client);
    return new RedisKvStore(client, limits, { ...common, release: () => closeRedisClient(client) });
  }
  const db = openDatabase(options.dataDir);
  const kv = new SqliteKvStore(db, limits, {
    ...common,
    release: async () => {
      db.close();
    },
  });
  stopBlocking(db);
  return kv;
}
