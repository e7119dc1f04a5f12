/**
 * The server's SQLite file (`<DATA_DIR>/koa-faas.db`, WAL mode), shared by the embedded KV store,
 * secrets and the async queue (docs/spec.md §8), and the rule all of them follow once the server
 * serves: never wait for another process's lock on the event loop (stopBlocking), wait for it
 * off the loop instead, bounded (whenUnlocked).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import { KvUnavailableError } from '../errors';

export const DB_FILE = 'koa-faas.db';

/**
 * Opens (creating it and its folder when missing) the server's SQLite file, in WAL mode.
 * @throws KvUnavailableError when the folder or file cannot be created or opened.
 */
export function openDatabase(dataDir: string): Db {
  try {
    fs.mkdirSync(dataDir, { recursive: true });
    const db = new Database(path.join(dataDir, DB_FILE));
    db.pragma('journal_mode = WAL');
    // WAL makes NORMAL durable against a process crash; only a power loss may lose the last
    // transactions (https://www.sqlite.org/pragma.html#pragma_synchronous).
    db.pragma('synchronous = NORMAL');
    // At start only (schemas, recounts): the server is not serving yet. Once its stores are
    // built, stopBlocking() sets 0, and a lock is waited for off the event loop (whenUnlocked).
    db.pragma('busy_timeout = 5000');
    return db;
  } catch (err) {
    throw new KvUnavailableError(
      `the KV store cannot open ${path.join(dataDir, DB_FILE)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * How long a call waits for another process's write lock on the database (ms), in short sleeps
 * off the event loop, before it fails with KV_UNAVAILABLE: as long as a Redis command may take.
 */
export const BUSY_WAIT_MS = 2000;

/**
 * Makes a database that is in service fail at once, never wait, when another process holds its
 * write lock (`SQLITE_BUSY`): better-sqlite3 is synchronous, so SQLite's own busy wait would
 * stop the whole event loop — health checks, functions that never touch KV — for as long as the
 * lock is held (docs/spec.md §8). whenUnlocked waits instead.
 */
export function stopBlocking(db: Db): void {
  db.pragma('busy_timeout = 0');
}

/** Whether an error (or its cause) is SQLite's "the database is locked by another connection". */
export function isBusy(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 3; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code === 'SQLITE_LOCKED')) {
      return true;
    }
    e = e.cause;
  }
  return false;
}

/**
 * Runs `fn` (one whole transaction: a busy one was rolled back, so it runs again from the start)
 * and, while the database is locked by another process, runs it again after short sleeps (2 ms
 * doubling to 50 ms) that leave the event loop free, for at most `waitMs`.
 * @throws KvUnavailableError naming `what` when the lock outlasts `waitMs`; whatever `fn` throws.
 */
export async function whenUnlocked<T>(
  fn: () => T,
  what: string,
  waitMs = BUSY_WAIT_MS,
): Promise<T> {
  const until = Date.now() + waitMs;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err)) throw err;
      if (Date.now() + delay > until) {
        throw new KvUnavailableError(
          `${what} is locked by another process (the SQLite database stayed busy for ` +
            `${waitMs} ms): try again`,
          { cause: err },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
