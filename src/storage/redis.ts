/**
 * The Redis connection every Redis-backed part shares the rules of (KV, secrets, the async queue,
 * shared records, shared functions; docs/spec.md §8): a client that fails fast while
 * disconnected (no offline queue, a command timeout: a call never hangs), never resends a command
 * whose caller was already told it failed, reconnects by itself, and logs one line per outage.
 */
import Redis from 'ioredis';
import { KvUnavailableError } from '../errors';
import type { Logger } from '../observe/logger';

/** The longest any one Redis command may take before the call fails with KV_UNAVAILABLE. */
export const COMMAND_TIMEOUT_MS = 2000;

/**
 * A Redis client that fails fast while disconnected and reconnects by itself. It connects in the
 * background: a Redis that is down at start makes calls fail (and /_/ready say so) until it
 * answers, instead of stopping the server.
 */
export function createRedisClient(url: string, logger?: Logger): Redis {
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: COMMAND_TIMEOUT_MS,
    // A command whose caller was told KV_UNAVAILABLE (its timeout) is never sent again after a
    // reconnect: a resent `incr` would be applied twice, silently (docs/spec.md §8).
    autoResendUnfulfilledCommands: false,
    connectTimeout: COMMAND_TIMEOUT_MS,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  // One line per outage, not one per reconnect attempt; without a listener ioredis prints them.
  let down = false;
  client.on('error', (err: Error) => {
    if (down) return;
    down = true;
    logger?.warn('redis connection failed', { err });
  });
  client.on('ready', () => {
    if (down) logger?.info('redis connection restored');
    down = false;
  });
  client.connect().catch(() => undefined);
  return client;
}

/** Resolves once the client is connected, or after `ms` (then calls fail until it is). */
export function firstConnection(client: Redis, ms = COMMAND_TIMEOUT_MS): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ready);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), ms);
    client.once('ready', onReady);
  });
}

/** Closes a client whatever its state. */
export async function closeRedisClient(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit();
      return;
    } catch {
      // fall through: drop the connection
    }
  }
  client.disconnect();
}

/** Any failure of the client itself (not one of our answers) is KV_UNAVAILABLE. */
export function unavailable(err: unknown): KvUnavailableError {
  const message = err instanceof Error ? err.message : String(err);
  return new KvUnavailableError(`the KV store (Redis) is unavailable: ${message}`, { cause: err });
}
