/** Secrets in the server's SQLite file (storage/sqlite.ts opens it), table `secrets`. */
import type { Database as Db, Statement } from 'better-sqlite3';
import { KvUnavailableError } from '../errors';
import { whenUnlocked } from '../storage/sqlite';
import { checkSecretName, checkSecretValue } from './secrets';
import type { SecretStore } from './secrets';

export class SqliteSecretStore implements SecretStore {
  readonly #db: Db;
  readonly #release: () => Promise<void>;
  #closed = false;
  readonly #sql: Record<'get' | 'upsert' | 'remove' | 'list', Statement>;

  constructor(db: Db, release: () => Promise<void>) {
    this.#db = db;
    this.#release = release;
    db.exec(
      'CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, ' +
        'updated_at TEXT NOT NULL) WITHOUT ROWID',
    );
    this.#sql = {
      get: db.prepare('SELECT value FROM secrets WHERE name = ?').pluck(),
      upsert: db.prepare(
        'INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) ' +
          'DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      ),
      remove: db.prepare('DELETE FROM secrets WHERE name = ?'),
      list: db.prepare('SELECT name, updated_at AS updatedAt FROM secrets ORDER BY name'),
    };
  }

  #open(): void {
    if (this.#closed) throw new KvUnavailableError('the secret store is closed');
  }

  async set(name: string, value: string): Promise<{ created: boolean }> {
    checkSecretName(name);
    checkSecretValue(value);
    this.#open();
    return whenUnlocked(
      () =>
        this.#db
          .transaction(() => {
            const created = this.#sql.get.get(name) === undefined;
            this.#sql.upsert.run(name, value, new Date().toISOString());
            return { created };
          })
          .immediate(),
      'the secret store',
    );
  }

  async delete(name: string): Promise<boolean> {
    checkSecretName(name);
    this.#open();
    return whenUnlocked(() => this.#sql.remove.run(name).changes > 0, 'the secret store');
  }

  async list(): Promise<{ name: string; updatedAt: string }[]> {
    this.#open();
    return whenUnlocked(
      () => this.#sql.list.all() as { name: string; updatedAt: string }[],
      'the secret store',
    );
  }

  async values(names: readonly string[]): Promise<Record<string, string>> {
    this.#open();
    return whenUnlocked(() => {
      const out: Record<string, string> = {};
      for (const name of names) {
        const value = this.#sql.get.get(name) as string | undefined;
        if (value !== undefined) out[name] = value;
      }
      return out;
    }, 'the secret store');
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#release();
  }
}
