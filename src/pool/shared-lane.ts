/**
 * The shared lane: the pool's WORKERS, each running up to `concurrency` invocations of any
 * function at once. It is safeify's pool, subclassed (the only importer of safeify): safeify keeps
 * the worker list, the pending queue, `createWorkers` back to full strength and `destroy`; this
 * subclass replaces the parts with known gaps:
 * - `createWorker`: our runner (worker/runner.ts: warm contexts, not one new vm2 context per
 *   script), forked and confined by worker-process.ts, in the lowest free slot;
 * - `execute`: affinity routing (affinity.ts), not the least-loaded worker;
 * - `destroyWorker`: a kill that keeps the worker's listeners. safeify's leaves a dead worker's
 *   scripts pending forever, and its timeout kill re-queues them all, so they may run twice;
 *   here they settle when the channel closes, an invocation that may have started runs again
 *   only when that cannot matter (death-rules.ts), and every job also races the pool's own
 *   deadlines (admission.ts).
 * Never used: safeify's messages (errors reduced to a message, `throw 'x'` a success: ours are
 * tagged strings, wire.ts; its reply to a dead worker crashes the host: transport.ts guards every
 * send, worker-process.ts listens to `error`) and its cgroup code (v1 and root only:
 * confinement.ts does both versions).
 */
import { Safeify } from 'safeify';
import type { Logger } from '../observe/logger';
import { pickWorker } from './affinity';
import type { Job, PoolWorker } from './job';
import { killWorker } from './worker-process';

// Silent this long (a few missed heartbeats), a worker is busy or blocked: dispatch elsewhere.
const QUIET_MS = 250;

/** The members of safeify 5.0.6 this subclass uses; its .d.ts declares them private. */
interface SafeifyInternals {
  options: { workers: number };
  workers: PoolWorker[];
  pendingScripts: Job[];
  init(): Promise<void>;
  destroy: () => void;
  readonly healthyWorkers: PoolWorker[];
  createWorkers(): Promise<PoolWorker[]>;
  // Overridden below.
  createWorker(): Promise<PoolWorker>;
  execute(): void;
  destroyWorker(worker: PoolWorker): void;
}

const SafeifyBase = Safeify as unknown as new (options: object) => SafeifyInternals;

export interface SharedLaneOptions {
  workers: number;
  timeoutMs: number;
  /** Invocations one worker runs at once. */
  concurrency: number;
  logger: Logger;
}

export interface SharedLaneHooks {
  /** Forks a shared worker for this slot (worker-process.ts), resolved when it is ready. */
  spawn(slot: number): Promise<PoolWorker>;
  dispatch(worker: PoolWorker, job: Job): void;
  closing(): boolean;
}

export class SharedLane extends SafeifyBase {
  /** Shared workers that died outside a shutdown (each was replaced). */
  restarts = 0;
  private refilling: Promise<unknown> = Promise.resolve();
  /** Slots of shared workers being started (a live worker's slot is on the worker). */
  private readonly startingSlots = new Set<number>();

  constructor(
    private readonly opts: SharedLaneOptions,
    private readonly hooks: SharedLaneHooks,
  ) {
    // unrestricted: safeify's cgroup code is v1-only and needs root; we never let it run.
    super({ workers: opts.workers, timeout: opts.timeoutMs, unrestricted: true });
  }

  /** The jobs waiting for a shared worker (safeify's pending queue). */
  get queue(): Job[] {
    return this.pendingScripts;
  }

  /** Slots in use on the workers: invocations running, answered or not. */
  get running(): number {
    return this.workers.reduce((sum, worker) => sum + worker.runningScripts.length, 0);
  }

  /** Queues a job behind the others (`execute` hands it out). */
  push(job: Job): void {
    this.pendingScripts.push(job);
  }

  /** Puts jobs at the front of the queue (they waited already, or ran and must run again). */
  requeue(...jobs: Job[]): void {
    this.pendingScripts.unshift(...jobs);
  }

  /** Empties the queue, for a shutdown: the jobs that were waiting. */
  takeQueue(): Job[] {
    return this.pendingScripts.splice(0);
  }

  /** Takes a waiting job off the queue. */
  unqueue(job: Job): void {
    const index = this.pendingScripts.indexOf(job);
    if (index >= 0) this.pendingScripts.splice(index, 1);
  }

  /**
   * One shared worker, forked and confined by worker-process.ts; resolves when it is ready. It
   * takes the lowest slot no healthy worker holds: a replacement takes its predecessor's, so the
   * versions that hashed there come back to it (affinity.ts).
   */
  override createWorker(): Promise<PoolWorker> {
    let slot = 0;
    const taken = (s: number) =>
      this.startingSlots.has(s) || this.workers.some((w) => w.slot === s && w.state === 'healthy');
    while (taken(slot)) slot++;
    this.startingSlots.add(slot);
    const release = () => this.startingSlots.delete(slot);
    const spawned = this.hooks.spawn(slot);
    spawned.then(release, release);
    return spawned;
  }

  /**
   * Hands queued jobs to healthy workers with a free slot (up to `concurrency` each): to the worker
   * that holds the job's version warm, else to the version's home, spilling over to another only
   * when that is cheaper than a cold start there (affinity.ts).
   */
  override execute(): void {
    const now = performance.now();
    const { concurrency } = this.opts;
    const open = (worker: PoolWorker) =>
      worker.state === 'healthy' &&
      worker.process.connected &&
      worker.runningScripts.length < concurrency;
    // A worker that has missed a few heartbeats is busy in a long synchronous part, or blocked:
    // it goes last, so work waits on it only when every worker is in that state.
    const load = (worker: PoolWorker) =>
      worker.runningScripts.length + (now - worker.lastHeard > QUIET_MS ? concurrency : 0);
    while (this.pendingScripts.length > 0) {
      const best = pickWorker(this.workers, this.pendingScripts[0].version, now, open, load);
      if (!best) return;
      this.hooks.dispatch(best, this.pendingScripts.shift() as Job);
    }
  }

  /** safeify's destroyWorker, without dropping the listeners that settle the worker's jobs. */
  override destroyWorker(worker: PoolWorker): void {
    this.kill(worker, worker.killReason ?? 'destroyed');
  }

  /** Kills a shared worker; its replacement starts now, not when the old one's channel closes. */
  kill(worker: PoolWorker, reason: string): void {
    killWorker(worker, reason);
    if (!this.hooks.closing()) this.refill();
  }

  /** A worker whose channel closed leaves the list: a restart, outside a shutdown. */
  remove(worker: PoolWorker): void {
    const index = this.workers.indexOf(worker);
    if (index >= 0) this.workers.splice(index, 1);
    if (!this.hooks.closing()) this.restarts++;
  }

  /** Brings the pool back to its configured size, one refill at a time. */
  refill(): void {
    this.refilling = this.refilling
      .then(() => (this.hooks.closing() ? [] : this.createWorkers()))
      .then(
        () => this.execute(),
        (err: unknown) => {
          this.opts.logger.error('could not restart a worker; retrying in 1 s', { err });
          setTimeout(() => !this.hooks.closing() && this.refill(), 1000).unref();
        },
      );
  }

  /** Kills every shared worker (safeify's destroy) and waits for a refill under way to end. */
  async stop(): Promise<void> {
    this.destroy();
    // A replacement that was starting when the pool began closing kills itself when ready.
    await this.refilling.catch(() => undefined);
  }
}
