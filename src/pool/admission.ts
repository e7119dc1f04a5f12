/**
 * Admission: the invocations the pool has accepted and not yet answered.
 * - At the door, the bulkheads (`refuse`): the function's maxConcurrency (429), the shared queue
 *   (503), and a fair share of it: one function may hold at most half the queue's places (429),
 *   so a flood of one function never takes the others'. A quarantined function's own queue is
 *   the solo lane's (solo-lane.ts).
 * - An accepted invocation becomes a Job with its deadlines (`accept`), and is answered exactly
 *   once (`answer`, `fail`), whatever happens to its worker.
 * - The sweep: one timer for every job, each SWEEP_MS while jobs or busy workers exist. It
 *   refuses jobs that waited too long for a worker (503), answers started jobs past their
 *   deadline (504), and kills workers that stopped beating.
 */
import { FunctionTimeoutError, OverloadedError, TooManyRequestsError } from '../errors';
import type { Logger } from '../observe/logger';
import { OVERDUE_MARGIN_MS, recordFacts, safetyDeadline, timeoutMessage } from './job';
import type { Invocation, InvocationResult, Job, PoolWorker } from './job';

// How often the pool checks deadlines and heartbeats (one timer for all jobs, not one per job).
const SWEEP_MS = 20;
// On the solo lane (suspects, quarantined calls) an invocation may wait this many queue
// allowances: its workers run one invocation each, and are often started for it.
const SOLO_WAIT_FACTOR = 6;
const BLOCKED_BY_SOMEONE = 'its worker was blocked (by this or another invocation)';

/** How long a job may wait for a worker, ms: longer for one waiting to run `alone`. */
export function waitAllowance(queueTimeoutMs: number, alone: boolean): number {
  return alone ? queueTimeoutMs * SOLO_WAIT_FACTOR : queueTimeoutMs;
}

/** A 503 OVERLOADED, with the Retry-After it always carries. */
export function overloaded(message: string): OverloadedError {
  const err = new OverloadedError(message);
  err.headers = { 'Retry-After': '1' };
  return err;
}

export interface AdmissionOptions {
  timeoutMs: number;
  queueTimeoutMs: number;
  maxQueue: number;
  logger: Logger;
}

/**
 * When a silent worker is killed (performance.now() ms): once it has been silent as long as the
 * longest timeout among its invocations, the same arithmetic as a job's execDeadline, so the
 * two agree to the last bit.
 */
function killDue(worker: PoolWorker): number {
  let longest = 0;
  for (const job of worker.runningScripts) longest = Math.max(longest, job.timeoutMs);
  return worker.lastHeard + longest + OVERDUE_MARGIN_MS;
}

/** What admission reads of the lanes, and how its sweep stops a worker. */
export interface AdmissionHooks {
  /** The shared lane's queue, for the bulkheads. */
  sharedQueue(): readonly Job[];
  /** Takes a job waiting for a worker off its lane's queue. */
  unqueue(job: Job): void;
  /** Every live worker, shared and solo. */
  workers(): readonly PoolWorker[];
  kill(worker: PoolWorker, reason: string): void;
}

export class Admission {
  private nextId = 1;
  private readonly jobs = new Map<number, Job>();
  /** Invocations of functions with a maxConcurrency, accepted and not yet answered, by name. */
  private readonly inflight = new Map<string, number>();
  private sweeper?: NodeJS.Timeout;
  private lastSweep = performance.now();
  private deferredLast = false;

  constructor(
    private readonly opts: AdmissionOptions,
    private readonly hooks: AdmissionHooks,
  ) {}

  /** An accepted job not yet answered, by id. */
  find(id: number): Job | undefined {
    return this.jobs.get(id);
  }

  /**
   * Why this invocation is refused at the door, if it is. The queue is empty most of the time:
   * its fair-share scan runs only when it is at least half full.
   */
  refuse(invocation: Invocation): Error | undefined {
    const { name, maxConcurrency } = invocation;
    if (maxConcurrency !== undefined && (this.inflight.get(name) ?? 0) >= maxConcurrency) {
      return new TooManyRequestsError(
        `function '${name}' is at its maxConcurrency: ${maxConcurrency} invocations in flight`,
      );
    }
    const queue = this.hooks.sharedQueue();
    const queued = queue.length;
    const { maxQueue } = this.opts;
    if (queued >= maxQueue) {
      return overloaded(`${queued} invocations are already waiting for a worker`);
    }
    const share = Math.ceil(maxQueue / 2);
    if (queued >= share) {
      let own = 0;
      for (const job of queue) if (job.name === name) own++;
      if (own >= share) {
        return new TooManyRequestsError(
          `function '${name}' holds its fair share of the queue: ${own} of ${maxQueue} places`,
        );
      }
    }
    return undefined;
  }

  /**
   * The job of an admitted invocation, on the shared lane or, for a `quarantined` function, the
   * solo lane; its deadlines are set and the sweep runs. The caller queues it.
   */
  accept(
    invocation: Invocation,
    quarantined: boolean,
    resolve: (result: InvocationResult) => void,
    reject: (err: Error) => void,
  ): Job {
    const { name, maxConcurrency } = invocation;
    const now = performance.now();
    const jobTimeoutMs = invocation.timeoutMs ?? this.opts.timeoutMs;
    const waitMs = waitAllowance(this.opts.queueTimeoutMs, quarantined);
    // Field by field, not a spread: one object shape for every job, on the hot path.
    const job: Job = {
      name,
      version: invocation.version,
      source: invocation.source,
      eventJson: invocation.eventJson,
      requestId: invocation.requestId,
      file: invocation.file,
      contextJson: invocation.contextJson,
      check: invocation.check,
      keep: invocation.keep,
      attempt: invocation.attempt,
      maxConcurrency,
      id: this.nextId++,
      timeoutMs: jobTimeoutMs,
      enqueuedAt: now,
      dispatchedAt: 0,
      started: false,
      lane: quarantined ? 'quarantined' : 'shared',
      reruns: 0,
      effects: false,
      settled: false,
      resolve,
      reject,
      queueDeadline: now + waitMs,
      execDeadline: Infinity,
      safetyDeadline: safetyDeadline(now, waitMs, jobTimeoutMs),
    };
    if (maxConcurrency !== undefined) this.inflight.set(name, (this.inflight.get(name) ?? 0) + 1);
    this.jobs.set(job.id, job);
    this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS);
    return job;
  }

  /** Answers a job with its result (once: a job answered already stays as it was). */
  answer(job: Job, result: InvocationResult): void {
    this.settle(job, () => job.resolve(result));
  }

  /**
   * Answers a job with an error (once). It stays on its worker's list until that worker reports
   * it or is gone: its slot stays taken.
   */
  fail(job: Job, err: Error): void {
    this.settle(job, () => {
      recordFacts(err, job);
      job.reject(err);
    });
  }

  private settle(job: Job, action: () => void): void {
    if (job.settled) return;
    job.settled = true;
    this.jobs.delete(job.id);
    // Counted in its function's in-flight number when it has a maxConcurrency.
    if (job.maxConcurrency !== undefined) {
      const left = (this.inflight.get(job.name) ?? 1) - 1;
      if (left > 0) this.inflight.set(job.name, left);
      else this.inflight.delete(job.name);
    }
    action();
  }

  /** Waits for every accepted job to be answered, at most `graceMs`. */
  async drain(graceMs: number): Promise<void> {
    const until = Date.now() + graceMs;
    while (this.jobs.size > 0 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Fails every job not yet answered with `error()` (a shutdown's last step). */
  failAll(error: () => Error): void {
    for (const job of this.jobs.values()) this.fail(job, error());
  }

  /**
   * Every SWEEP_MS while jobs exist: refuse jobs that waited too long for a worker (503), answer
   * started jobs past their deadline (504), and kill workers that stopped beating. A worker in
   * a synchronous part is silent for at most the timeout (vm2's watchdog bounds it); silent any
   * longer, its event loop is blocked for good (an endless microtask chain, a loop after an
   * await): it is killed, and its started jobs run again or answer (death-rules.ts).
   */
  private sweep(): void {
    const now = performance.now();
    const lag = now - this.lastSweep - SWEEP_MS;
    this.lastSweep = now;
    // The server itself stalled (GC, load): read the workers' messages before judging them
    // overdue or silent. Once only: under constant stalls, deadlines must still hold.
    const judge = !(lag > 50 && !this.deferredLast);
    this.deferredLast = !judge;
    for (const job of this.jobs.values()) {
      if (now > job.safetyDeadline) {
        this.opts.logger.error('invocation safety deadline fired', { id: job.id, fn: job.name });
        if (job.worker) this.hooks.kill(job.worker, 'unresponsive');
        this.fail(job, new FunctionTimeoutError(timeoutMessage(job)));
      } else if (!job.worker && now > job.queueDeadline) {
        this.hooks.unqueue(job);
        this.fail(job, overloaded(this.notFreeMessage(job)));
      } else if (judge && now > job.execDeadline) {
        // The worker answers its own deadlines; it did not, so its loop is busy or blocked.
        const worker = job.worker;
        const blocked = worker && now - worker.lastHeard > OVERDUE_MARGIN_MS;
        // Blocked, maybe by another invocation: who is known when the worker is heard again (the
        // runner names the blocker) or killed (its suspects run alone). Bounded: twice its time,
        // or three times when the worker's own kill (below, once it has been silent past its
        // longest timeout) comes by then, or as long as a worker being killed takes to go (the
        // safety deadline bounds both): its death rules answer better than a 504 that cannot name
        // the blocker (an effect: 502; none: it runs again alone).
        if (blocked && now < job.execDeadline + job.timeoutMs) continue;
        if (
          blocked &&
          (worker.state !== 'healthy' || killDue(worker) <= job.execDeadline + 2 * job.timeoutMs)
        ) {
          continue;
        }
        const why = blocked ? `: ${BLOCKED_BY_SOMEONE}` : '';
        this.fail(job, new FunctionTimeoutError(timeoutMessage(job) + why));
      }
    }
    const workers = this.hooks.workers();
    for (const worker of workers) {
      // The same arithmetic as a job's execDeadline, so the two agree to the last bit. A worker
      // may be silent as long as the longest timeout among its invocations.
      const silent = now > killDue(worker);
      if (judge && silent && worker.state === 'healthy' && worker.runningScripts.length > 0) {
        this.opts.logger.warn('worker blocked past the timeout; killing it', {
          pid: worker.process.pid,
          lane: worker.lane,
          silentMs: Math.round(now - worker.lastHeard),
        });
        this.hooks.kill(worker, 'timeout');
      }
    }
    // Answered jobs may still hold slots on a worker that has yet to be judged: keep sweeping.
    const idle =
      this.jobs.size === 0 && this.hooks.workers().every((w) => w.runningScripts.length === 0);
    if (idle && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Why a job waited past its allowance: the solo lane's is longer, and says why it waited there. */
  private notFreeMessage(job: Job): string {
    const { queueTimeoutMs } = this.opts;
    if (job.lane === 'shared') return `no worker was free within ${queueTimeoutMs} ms`;
    const waited = waitAllowance(queueTimeoutMs, true);
    return job.lane === 'suspect'
      ? `no solo worker was free within ${waited} ms to run '${job.name}' again alone (a neighbour broke its worker)`
      : `no solo worker was free within ${waited} ms: function '${job.name}' is quarantined and runs one invocation at a time`;
  }
}
