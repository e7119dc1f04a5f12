/**
 * The solo lane: extra workers that each run one invocation at a time, for the invocations that
 * must run alone (death-rules.ts): suspects (started on a worker that died beside them, run
 * again) and the invocations of quarantined functions (quarantine.ts). A solo worker runs only
 * the function it first ran (another function gets a fresh process), so no two functions ever
 * share one. Suspects go first and run side by side, each on its own worker (they are somebody's
 * healthy calls, most of them); a quarantined function runs one invocation at a time, behind a
 * bounded queue of its own (429 past it), and quarantined functions together hold at most half
 * the solo workers. At most `soloWorkers` run at once; one is kept started and unused (the
 * spare); one that ran a function and has nothing left to run ends after SOLO_IDLE_MS.
 */
import { TooManyRequestsError } from '../errors';
import type { Logger } from '../observe/logger';
import type { Job, PoolWorker } from './job';
import { killWorker } from './worker-process';

// A solo worker left with nothing to run ends after this.
const SOLO_IDLE_MS = 10_000;

export interface SoloLaneOptions {
  /** Solo workers at most at once. */
  soloWorkers: number;
  /** Invocations of one quarantined function that may wait for their turn. */
  quarantineQueue: number;
  logger: Logger;
}

export interface SoloLaneHooks {
  /** Forks a solo worker (worker-process.ts), resolved when it is ready. */
  spawn(): Promise<PoolWorker>;
  dispatch(worker: PoolWorker, job: Job): void;
  closing(): boolean;
}

export class SoloLane {
  /** Its live workers (one invocation each), those starting, and its queue. */
  readonly workers: PoolWorker[] = [];
  private starting = 0;
  private readonly queue: Job[] = [];

  constructor(
    private readonly opts: SoloLaneOptions,
    private readonly hooks: SoloLaneHooks,
  ) {}

  get stats(): { workers: number; running: number; queued: number } {
    return {
      workers: this.workers.length,
      running: this.workers.reduce((sum, w) => sum + w.runningScripts.length, 0),
      queued: this.queue.length,
    };
  }

  /** A 429 when a quarantined function's own queue is full. */
  refuse(name: string): Error | undefined {
    const { quarantineQueue } = this.opts;
    if (this.waitingAlone(name) < quarantineQueue) return undefined;
    return new TooManyRequestsError(
      `function '${name}' is quarantined (it broke a worker) and runs one invocation at a ` +
        `time; ${quarantineQueue} are already waiting`,
    );
  }

  /** Queues a job behind the others (`execute` hands it out). */
  push(job: Job): void {
    this.queue.push(job);
  }

  /** Puts jobs at the front of the queue (they never started on a solo worker that died). */
  requeue(...jobs: Job[]): void {
    this.queue.unshift(...jobs);
  }

  /** Takes a waiting job off the queue. */
  unqueue(job: Job): void {
    const index = this.queue.indexOf(job);
    if (index >= 0) this.queue.splice(index, 1);
  }

  /** Empties the queue, for a shutdown: the jobs that were waiting. */
  takeQueue(): Job[] {
    return this.queue.splice(0);
  }

  /** Hands waiting jobs to idle solo workers (see the file's comment), and keeps the spare. */
  execute(): void {
    if (this.hooks.closing()) return;
    this.handOut('suspect');
    this.handOut('quarantined');
    this.keepSpare();
  }

  /**
   * One solo worker is kept started and unused (the spare), so a suspect or a quarantined call
   * does not wait for a process to start. It runs nothing until it is needed, and is never
   * retired for idleness.
   */
  keepSpare(): void {
    if (this.hooks.closing() || this.starting > 0) return;
    if (this.workers.length >= this.opts.soloWorkers) return;
    const spare = this.workers.some(
      (w) => w.owner === undefined && w.state === 'healthy' && w.runningScripts.length === 0,
    );
    if (!spare) this.start();
  }

  /** A solo worker's slot is free: it idles until retired, and waiting jobs are handed out. */
  next(worker: PoolWorker): void {
    if (worker.runningScripts.length === 0 && worker.state === 'healthy' && worker.owner) {
      clearTimeout(worker.idleTimer);
      worker.idleTimer = setTimeout(() => {
        if (worker.runningScripts.length === 0) this.retire(worker, 'idle');
      }, SOLO_IDLE_MS).unref();
    }
    this.execute();
  }

  /** A worker whose channel closed leaves the lane. */
  remove(worker: PoolWorker): void {
    clearTimeout(worker.idleTimer);
    const index = this.workers.indexOf(worker);
    if (index >= 0) this.workers.splice(index, 1);
  }

  /**
   * Ends a solo worker that runs nothing (idle, or its place is needed for another function): a
   * retirement, not a death (no restart is counted or logged).
   */
  retire(worker: PoolWorker, why: string): void {
    const index = this.workers.indexOf(worker);
    if (index >= 0) this.workers.splice(index, 1);
    clearTimeout(worker.idleTimer);
    this.opts.logger.debug('solo worker retired', { pid: worker.process.pid, why });
    killWorker(worker, 'retired');
  }

  private handOut(lane: 'suspect' | 'quarantined'): void {
    const quarantinedShare = Math.max(1, Math.floor(this.opts.soloWorkers / 2));
    for (let i = 0; i < this.queue.length; i++) {
      const job = this.queue[i];
      if (job.lane !== lane) continue;
      if (lane === 'quarantined') {
        if (this.running('quarantined') >= quarantinedShare) return;
        if (this.runsAlone(job.name)) continue;
      }
      const worker = this.workerFor(job.name);
      if (!worker) continue;
      this.queue.splice(i--, 1);
      worker.owner = job.name;
      clearTimeout(worker.idleTimer);
      this.hooks.dispatch(worker, job);
    }
  }

  /** Quarantined invocations of a function waiting for their turn. */
  private waitingAlone(name: string): number {
    let waiting = 0;
    for (const job of this.queue) if (job.name === name && job.lane === 'quarantined') waiting++;
    return waiting;
  }

  /** Invocations of one kind running on the lane. */
  private running(lane: 'suspect' | 'quarantined'): number {
    let running = 0;
    for (const worker of this.workers) {
      for (const job of worker.runningScripts) if (job.lane === lane && !job.settled) running++;
    }
    return running;
  }

  /** Whether a quarantined invocation of this function is running. */
  private runsAlone(name: string): boolean {
    for (const worker of this.workers) {
      for (const job of worker.runningScripts) {
        if (job.name === name && job.lane === 'quarantined' && !job.settled) return true;
      }
    }
    return false;
  }

  /**
   * An idle solo worker that ran this function, or a fresh one. None: one is started (within
   * `soloWorkers`, recycling an idle worker of another function when at the limit) and the job
   * waits for it.
   */
  private workerFor(name: string): PoolWorker | undefined {
    let fresh: PoolWorker | undefined;
    let other: PoolWorker | undefined;
    for (const worker of this.workers) {
      if (worker.state !== 'healthy' || worker.runningScripts.length > 0) continue;
      if (worker.owner === name) return worker;
      if (worker.owner === undefined) fresh ??= worker;
      else other ??= worker;
    }
    if (fresh) return fresh;
    if (this.workers.length + this.starting >= this.opts.soloWorkers) {
      if (!other) return undefined;
      this.retire(other, 'recycled');
    }
    this.start();
    return undefined;
  }

  private start(): void {
    this.starting++;
    this.hooks.spawn().then(
      (worker) => {
        this.starting--;
        if (this.hooks.closing()) return killWorker(worker, 'shutdown');
        this.workers.push(worker);
        // Takes a waiting job, or starts its idle timer (another worker may have taken the job).
        this.next(worker);
      },
      (err: unknown) => {
        this.starting--;
        this.opts.logger.error('could not start a solo worker; retrying in 1 s', { err });
        setTimeout(() => this.execute(), 1000).unref();
      },
    );
  }
}
