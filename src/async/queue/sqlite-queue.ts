/**
 * The embedded async queue: a table in DATA_DIR's SQLite file (its own connection, WAL), so
 * queued invocations survive a restart and one machine needs nothing else. Each row is one
 * invocation: its job (the event, until it finishes) and its state record (async-queue.ts).
 *
 * Attempts are taken by a lease: a row `running` names the server that took it (`owner`) and
 * until when (`lease_until`, renewed every few seconds while it runs). A graceful stop releases
 * the rows it could not finish (queued again at once, the attempt uncounted); the rows of a
 * server that died keep their lease until it lapses (LEASE_MS), then any server sharing the file
 * queues them again: at least once. better-sqlite3 is synchronous: each step below is one
 * transaction, whole before the event loop moves on.
 */
import { randomUUID } from 'node:crypto';
import type { Database as Db, Statement } from 'better-sqlite3';
import { KvUnavailableError, OverloadedError } from '../../errors';
import type { Logger } from '../../observe/logger';
import { isBusy, openDatabase, stopBlocking, whenUnlocked } from '../../storage/sqlite';
import {
  FULL_RETRY_AFTER_S,
  RETENTION_MS,
  afterStep,
  nextStep,
  queuedState,
  refusal,
} from './async-queue';
import type {
  AsyncJob,
  AsyncQueue,
  CallbackState,
  InvocationState,
  ListQuery,
  NewInvocation,
  QueueWorker,
  Step,
} from './async-queue';

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS async_invocations (
    id TEXT PRIMARY KEY,
    fn TEXT NOT NULL,
    status TEXT NOT NULL,
    run_at INTEGER NOT NULL,
    entered_at INTEGER NOT NULL,
    owner TEXT,
    lease_until INTEGER,
    expires_at INTEGER,
    job TEXT,
    state TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS async_due ON async_invocations (status, run_at);
  CREATE INDEX IF NOT EXISTS async_listed ON async_invocations (status, entered_at);
  CREATE INDEX IF NOT EXISTS async_expiry ON async_invocations (expires_at)
    WHERE expires_at IS NOT NULL;
  CREATE TABLE IF NOT EXISTS async_counts (k TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
`;

/** How long a taken attempt stays this server's without a renewal. */
const LEASE_MS = 30_000;
/** Renewals, lapsed leases and expired records are looked at this often. */
const MAINTENANCE_MS = 5_000;
/** Other servers sharing the file may queue work: looked for at least this often. */
const POLL_MS = 1_000;

export interface SqliteQueueOptions {
  dataDir: string;
  maxQueued: number;
  logger?: Logger;
  /** The first retry's delay (default 1 s; doubled for each retry after it). */
  retryBaseMs?: number;
}

interface Row {
  id: string;
  job: string;
  state: string;
}

type Job = Omit<AsyncJob, 'attempt'>;

export class SqliteAsyncQueue implements AsyncQueue {
  readonly backend = 'sqlite' as const;
  readonly #db: Db;
  readonly #options: SqliteQueueOptions;
  readonly #owner = randomUUID();
  readonly #sql: Record<string, Statement>;
  readonly #running = new Map<string, Promise<void>>();
  #worker?: QueueWorker;
  #stopped = false;
  #closed = false;
  #timer?: NodeJS.Timeout;
  #maintenance?: NodeJS.Timeout;
  #lastSweep = 0;
  #wakePending = false;
  /** Enqueues waiting for their group commit. */
  #arriving: {
    invocation: NewInvocation;
    resolve: (answer: { created: boolean; state: InvocationState }) => void;
    reject: (err: unknown) => void;
  }[] = [];

  constructor(options: SqliteQueueOptions) {
    this.#options = options;
    this.#db = openDatabase(options.dataDir);
    this.#db.exec(SCHEMA);
    const db = this.#db;
    this.#sql = {
      state: db.prepare('SELECT state FROM async_invocations WHERE id = ?').pluck(),
      insert: db.prepare(
        'INSERT INTO async_invocations (id, fn, status, run_at, entered_at, job, state) ' +
          "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
      ),
      depth: db.prepare("SELECT n FROM async_counts WHERE k = 'pending'").pluck(),
      addDepth: db.prepare(
        "INSERT INTO async_counts (k, n) VALUES ('pending', ?) " +
          'ON CONFLICT (k) DO UPDATE SET n = n + excluded.n',
      ),
      recount: db.prepare(
        "INSERT OR REPLACE INTO async_counts (k, n) SELECT 'pending', count(*) " +
          "FROM async_invocations WHERE status IN ('queued', 'running')",
      ),
      due: db.prepare(
        'SELECT id, job, state FROM async_invocations ' +
          "WHERE status = 'queued' AND run_at <= ? ORDER BY run_at LIMIT ?",
      ),
      nextDue: db
        .prepare("SELECT min(run_at) FROM async_invocations WHERE status = 'queued'")
        .pluck(),
      take: db.prepare(
        "UPDATE async_invocations SET status = 'running', owner = ?, lease_until = ?, " +
          'entered_at = ?, state = ? WHERE id = ?',
      ),
      settle: db.prepare(
        'UPDATE async_invocations SET status = ?, run_at = ?, entered_at = ?, owner = NULL, ' +
          'lease_until = NULL, expires_at = ?, job = CASE WHEN ? THEN NULL ELSE job END, ' +
          "state = ? WHERE id = ? AND owner = ? AND status = 'running'",
      ),
      renew: db.prepare(
        'UPDATE async_invocations SET lease_until = ? ' + "WHERE owner = ? AND status = 'running'",
      ),
      lapsed: db.prepare(
        'SELECT id, job, state FROM async_invocations ' +
          "WHERE status = 'running' AND lease_until < ? LIMIT 1000",
      ),
      requeue: db.prepare(
        "UPDATE async_invocations SET status = 'queued', run_at = ?, entered_at = ?, " +
          "owner = NULL, lease_until = NULL, state = ? WHERE id = ? AND status = 'running'",
      ),
      expired: db.prepare(
        'DELETE FROM async_invocations WHERE id IN (SELECT id FROM async_invocations ' +
          'WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT 1000)',
      ),
      list: db.prepare(
        'SELECT state FROM async_invocations WHERE status = ? ' +
          'ORDER BY entered_at DESC LIMIT ?',
      ),
      listFn: db.prepare(
        'SELECT state FROM async_invocations WHERE status = ? AND fn = ? ' +
          'ORDER BY entered_at DESC LIMIT ?',
      ),
      setState: db.prepare('UPDATE async_invocations SET state = ? WHERE id = ?'),
    };
    // The count that MAX_ASYNC_QUEUE checks is kept beside the rows; recounted once at start.
    this.#sql.recount.run();
    // From now on another process's lock is waited for off the event loop (docs/spec.md §8):
    // requests wait in whenUnlocked, the pump and maintenance try again at their next tick.
    stopBlocking(db);
  }

  /** #tx, waiting off the event loop while another process holds the lock (whenUnlocked). */
  #txWhenUnlocked<T>(fn: () => T, waitMs?: number): Promise<T> {
    return whenUnlocked(() => this.#tx(fn), 'the async queue', waitMs);
  }

  /** Runs `fn` in one transaction; a closed or broken database is KV_UNAVAILABLE. */
  #tx<T>(fn: () => T): T {
    if (this.#closed) throw new KvUnavailableError('the async queue is closed');
    try {
      return this.#db.transaction(fn).immediate();
    } catch (err) {
      if (err instanceof Error && 'code' in err && String(err.code).startsWith('SQLITE_')) {
        throw new KvUnavailableError(`the async queue failed: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  /**
   * Queues an invocation (see AsyncQueue). Enqueues that arrive in the same turn of the event
   * loop share one transaction (group commit: its WAL write is most of an enqueue's cost), each
   * still answered on its own.
   */
  enqueue(invocation: NewInvocation): Promise<{ created: boolean; state: InvocationState }> {
    return new Promise((resolve, reject) => {
      this.#arriving.push({ invocation, resolve, reject });
      if (this.#arriving.length === 1) setImmediate(() => void this.#commitArrivals());
    });
  }

  async #commitArrivals(): Promise<void> {
    const batch = this.#arriving;
    this.#arriving = [];
    const now = Date.now();
    let answers: ({ created: boolean; state: InvocationState } | OverloadedError)[];
    try {
      answers = await this.#txWhenUnlocked(() => {
        let depth = (this.#sql.depth.get() as number | undefined) ?? 0;
        const added = depth;
        const out = batch.map(({ invocation }) => {
          const existing = this.#sql.state.get(invocation.id) as string | undefined;
          if (existing !== undefined) {
            return { created: false, state: JSON.parse(existing) as InvocationState };
          }
          if (depth >= this.#options.maxQueued) {
            const err = new OverloadedError(
              `the async queue is full: ${depth} invocations are queued or running (MAX_ASYNC_QUEUE)`,
            );
            err.headers = { 'Retry-After': String(FULL_RETRY_AFTER_S) };
            return err;
          }
          const state = queuedState(invocation, now);
          const job: Job = { ...invocation, createdAt: now };
          this.#sql.insert.run(
            invocation.id,
            invocation.fn,
            now,
            now,
            JSON.stringify(job),
            JSON.stringify(state),
          );
          depth += 1;
          return { created: true, state };
        });
        if (depth > added) this.#sql.addDepth.run(depth - added);
        return out;
      });
    } catch (err) {
      for (const { reject } of batch) reject(err);
      return;
    }
    batch.forEach(({ resolve, reject }, i) => {
      const answer = answers[i];
      if (answer instanceof OverloadedError) reject(answer);
      else resolve(answer);
    });
    this.#wake();
  }

  async get(id: string): Promise<InvocationState | undefined> {
    const text = await this.#txWhenUnlocked(() => this.#sql.state.get(id) as string | undefined);
    return text === undefined ? undefined : (JSON.parse(text) as InvocationState);
  }

  async list({ status, fn, limit }: ListQuery): Promise<InvocationState[]> {
    const rows = await this.#txWhenUnlocked(
      () =>
        (fn === undefined
          ? this.#sql.list.all(status, limit)
          : this.#sql.listFn.all(status, fn, limit)) as { state: string }[],
    );
    return rows.map((r) => JSON.parse(r.state) as InvocationState);
  }

  async depth(): Promise<number> {
    return this.#txWhenUnlocked(() => (this.#sql.depth.get() as number | undefined) ?? 0);
  }

  async setCallback(id: string, callback: CallbackState): Promise<void> {
    await this.#txWhenUnlocked(() => {
      const text = this.#sql.state.get(id) as string | undefined;
      if (text === undefined) return;
      const state = JSON.parse(text) as InvocationState;
      this.#sql.setState.run(JSON.stringify({ ...state, callback }), id);
    });
  }

  start(worker: QueueWorker): void {
    this.#worker = worker;
    this.#maintenance = setInterval(() => this.#maintain(), MAINTENANCE_MS);
    this.#maintenance.unref();
    this.#maintain();
    this.#wake();
  }

  /** Takes due invocations while there is room, then sleeps until the next is due. */
  #pump(): void {
    const worker = this.#worker;
    if (!worker || this.#stopped || this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    let next: number | undefined;
    try {
      while (this.#running.size < worker.concurrency) {
        const jobs = this.#take(worker.concurrency - this.#running.size);
        if (jobs.length === 0) break;
        for (const job of jobs) this.#attempt(worker, job);
      }
      next = this.#tx(() => this.#sql.nextDue.get() as number | null) ?? undefined;
    } catch (err) {
      // Another process holds the lock: the next tick tries again (never a wait in here).
      if (isBusy(err)) this.#options.logger?.debug('async queue: the database is busy', { err });
      else this.#options.logger?.error('async queue: cannot take invocations', { err });
    }
    const wait = next === undefined ? POLL_MS : Math.min(POLL_MS, Math.max(0, next - Date.now()));
    // Full: a finishing attempt pumps again.
    if (this.#running.size < worker.concurrency) {
      this.#timer = setTimeout(() => this.#pump(), wait);
      this.#timer.unref();
    }
  }

  /** Pumps soon, once however many ask before it runs. */
  #wake(): void {
    if (!this.#worker || this.#stopped || this.#wakePending) return;
    this.#wakePending = true;
    setImmediate(() => {
      this.#wakePending = false;
      this.#pump();
    });
  }

  /** Takes up to `n` due invocations: each is `running`, this server's, its attempt counted. */
  #take(n: number): AsyncJob[] {
    const now = Date.now();
    return this.#tx(() => {
      const rows = this.#sql.due.all(now, n) as Row[];
      return rows.map((row) => {
        const state = JSON.parse(row.state) as InvocationState;
        state.status = 'running';
        state.attempts += 1;
        state.startedAt = new Date(now).toISOString();
        delete state.nextAttemptAt;
        this.#sql.take.run(this.#owner, now + LEASE_MS, now, JSON.stringify(state), row.id);
        const job = JSON.parse(row.job) as Job;
        return { ...job, attempt: state.attempts };
      });
    });
  }

  #attempt(worker: QueueWorker, job: AsyncJob): void {
    const run = (async () => {
      const refused = refusal(job, Date.now());
      const outcome = refused
        ? { kind: 'failed' as const, error: refused, retry: false }
        : await worker.run(job).catch((err: unknown) => {
            this.#options.logger?.error('async attempt failed in the server', { err });
            return {
              kind: 'failed' as const,
              error: { status: 500, code: 'INTERNAL_ERROR', message: 'Internal Server Error' },
              retry: true,
            };
          });
      const now = Date.now();
      const step = nextStep(job, outcome, now, this.#options.retryBaseMs ?? 1000);
      const finished = await this.#settle(job, step, now);
      if (finished) worker.finished(finished);
    })()
      .catch((err: unknown) => {
        this.#options.logger?.error('async queue: cannot record an attempt', { err, id: job.id });
      })
      .finally(() => {
        this.#running.delete(job.id);
        this.#wake();
      });
    this.#running.set(job.id, run);
  }

  /**
   * Records a step; returns the state when it is final (and was still this server's). Waits off
   * the event loop for a lock up to a lease's length: past it the lease lapses, and the
   * invocation runs again (at least once).
   */
  #settle(job: AsyncJob, step: Step, now: number): Promise<InvocationState | undefined> {
    return this.#txWhenUnlocked(() => {
      const text = this.#sql.state.get(job.id) as string | undefined;
      if (text === undefined) return undefined;
      const state = afterStep(JSON.parse(text) as InvocationState, step, now);
      const final = step.status !== 'queued';
      const expiresAt = final ? now + RETENTION_MS[step.status] : null;
      const changed = this.#sql.settle.run(
        step.status,
        step.status === 'queued' ? step.runAt : now,
        now,
        expiresAt,
        final ? 1 : 0,
        JSON.stringify(state),
        job.id,
        this.#owner,
      ).changes;
      if (changed === 0) {
        // Its lease lapsed (this server stalled) and it was queued again: the other run counts.
        this.#options.logger?.warn('async attempt finished after its lease lapsed', { id: job.id });
        return undefined;
      }
      if (final) this.#sql.addDepth.run(-1);
      return final ? state : undefined;
    }, LEASE_MS);
  }

  /** Renews this server's leases, queues lapsed ones again, drops records past retention. */
  #maintain(): void {
    if (this.#closed) return;
    const now = Date.now();
    try {
      this.#tx(() => {
        this.#sql.renew.run(now + LEASE_MS, this.#owner);
        for (const row of this.#sql.lapsed.all(now) as Row[]) {
          const state = JSON.parse(row.state) as InvocationState;
          state.status = 'queued';
          this.#sql.requeue.run(now, now, JSON.stringify(state), row.id);
          this.#options.logger?.warn('async attempt lost with its server: queued again', {
            id: row.id,
            attempt: state.attempts,
          });
        }
        if (now - this.#lastSweep >= 60_000) {
          this.#lastSweep = now;
          this.#sql.expired.run(now);
        }
      });
    } catch (err) {
      if (!isBusy(err)) this.#options.logger?.error('async queue: maintenance failed', { err });
    }
    this.#wake();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    // Leases are still renewed (maintenance) while the running attempts finish.
    await Promise.all(this.#running.values());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.stop();
    clearInterval(this.#maintenance);
    this.#closed = true;
    this.#db.close();
  }
}
