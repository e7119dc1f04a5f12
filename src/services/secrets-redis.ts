/**
 * Secrets in Redis: two hashes, `kf:secrets:v` (name → value) and `kf:secrets:t` (name → update
 * time), written together in one MULTI. A failing connection is KV_UNAVAILABLE, as for the KV
 * store on the same client.
 */
import type Redis from 'ioredis';
import { KvUnavailableError } from '../errors';
import { unavailable } from '../storage/redis';
import { checkSecretName, checkSecretValue } from './secrets';
import type { SecretStore } from './secrets';

const VALUES = 'kf:secrets:v';
const TIMES = 'kf:secrets:t';

export class RedisSecretStore implements SecretStore {
  readonly #client: Redis;
  readonly #release: () => Promise<void>;
  #closed = false;

  constructor(client: Redis, release: () => Promise<void>) {
    this.#client = client;
    this.#release = release;
  }

  async #call<T>(fn: (client: Redis) => Promise<T>): Promise<T> {
    if (this.#closed) throw new KvUnavailableError('the secret store is closed');
    try {
      return await fn(this.#client);
    } catch (err) {
      throw unavailable(err);
    }
  }

  async set(name: string, value: string): Promise<{ created: boolean }> {
    checkSecretName(name);
    checkSecretValue(value);
    const replies = await this.#call((c) =>
      c.multi().hset(VALUES, name, value).hset(TIMES, name, new Date().toISOString()).exec(),
    );
    const [err, added] = replies?.[0] ?? [new Error('the transaction was aborted'), 0];
    if (err) throw unavailable(err);
    return { created: added === 1 };
  }

  async delete(name: string): Promise<boolean> {
    checkSecretName(name);
    const replies = await this.#call((c) => c.multi().hdel(VALUES, name).hdel(TIMES, name).exec());
    const [err, removed] = replies?.[0] ?? [new Error('the transaction was aborted'), 0];
    if (err) throw unavailable(err);
    return removed === 1;
  }

  async list(): Promise<{ name: string; updatedAt: string }[]> {
    const times = await this.#call((c) => c.hgetall(TIMES));
    return Object.keys(times)
      .sort()
      .map((name) => ({ name, updatedAt: times[name] }));
  }

  async values(names: readonly string[]): Promise<Record<string, string>> {
    if (names.length === 0) return {};
    const values = await this.#call((c) => c.hmget(VALUES, ...names));
    const out: Record<string, string> = {};
    names.forEach((name, i) => {
      const value = values[i];
      if (value !== null) out[name] = value;
    });
    return out;
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#release();
  }
}
