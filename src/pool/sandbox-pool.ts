/**
 * The sandbox pool: the only importer of safeify. safeify keeps the pool's bookkeeping (its
 * worker list, pending queue, least-loaded choice, respawn to full strength and `destroy`); this
 * subclass replaces the parts with known gaps:
 * - its runner (one new vm2 context per script) → worker/runner.ts (warm contexts, see there),
 *   forked and confined by worker-process.ts;
 * - its timeout kill re-queues the killed worker's other scripts, so they run twice → here a
 *   script that may have started is answered 502, only never-started ones move to another worker;
 * - a worker that dies leaves its scripts pending forever → here they settle when its channel
 *   closes, and every job also races the pool's own deadlines;
 * - errors reduced to a message, `throw 'x'` a success → outcomes are tagged strings (wire.ts);
 * - replying to a dead worker crashes the host → every send is guarded, `error` is listened to.
 */
import { Safeify } from 'safeify';
import {
  FunctionTimeoutError,
  OverloadedError,
  ShuttingDownError,
  WorkerCrashedError,
} from '../errors';
import type { WorkerIsolation } from './isolation';
import type { Logger } from '../observe/logger';
import { isWorkerMessage } from './wire';
import type { CallMessage, RunMessage, WorkerMessage } from './wire';
import { DEATHS, spawnWorker } from './worker-process';
import type { WorkerExitReason, WorkerProcess } from './worker-process';

export interface PoolOptions {
  workers: number;
  timeoutMs: number;
  isolation: 'warm' | 'fresh';
  warmContexts: number;
  logger: Logger;
  /** Invocations one worker runs at once (async functions overlap while they await). */
  concurrency?: number;
  /** How long an invocation may wait for a free worker before it is refused (OVERLOADED). */
  queueTimeoutMs?: number;
  /** What confines worker processes (user, permissions, heap, cgroups); see isolation.ts. */
  confinement?: WorkerIsolation;
  /** Largest outcome a worker may send, bytes; larger ones become INVALID_RESULT there. */
  maxResultBytes?: number;
  /** Invocations that may wait for a worker; past it, OVERLOADED at once. */
  maxQueue?: number;
  /** Told when a worker dies outside a shutdown: timeout, unresponsive, memory or crash. */
  onWorkerExit?: (reason: WorkerExitReason) => void;
  /** Serves the host calls of invocations (SPEC §8 services); without it every call fails. */
  onCall?: (call: HostCall) => Promise<HostReply>;
}

/**
 * A service call made by a running invocation (worker → pool → server). The function and request
 * are the pool's own record of the invocation, never what the worker says.
 */
export interface HostCall {
  fn: string;
  requestId: string;
  /** e.g. `kv.get`, `fetch`. */
  op: string;
  /** Its arguments as JSON text, as the sandbox sent them (unvalidated). */
  args: string;
  /** Epoch ms by which the invocation must end: the call must answer before. */
  deadline: number;
  /** What this invocation has called so far, by op (this call not counted). */
  counts: ReadonlyMap<string, number>;
  /** Marks the invocation as having made an effect outside its sandbox (SPEC §3, §8). */
  markEffect(): void;
}

/** The answer to a host call: the result as JSON text, or `{ name, message, code? }` JSON. */
export interface HostReply {
  ok: boolean;
  r: string;
}

type ResolvedOptions = Required<Omit<PoolOptions, 'confinement' | 'onCall'>> &
  Pick<PoolOptions, 'confinement' | 'onCall'>;

/** What the pool needs to run one invocation. */
export interface Invocation {
  name: string;
  version: string;
  source: string;
  /** The event as JSON text, or undefined for no event. */
  eventJson: string;
  requestId: string;
  /** The file name in stacks and errors (e.g. `a/b.ts`); default `<name>.js`. */
  file?: string;
  /** This invocation's wall-clock limit, ms; default the pool's `timeoutMs`. */
  timeoutMs?: number;
  /** More of `context` as JSON text (`env`, `secrets`), when the function has any. */
  contextJson?: string;
  /**
   * Load the file and answer its exported config as JSON text (outcome J), or why it does not
   * load (C); call nothing. In a throwaway context (deploy checks) unless `keep`.
   */
  check?: boolean;
  keep?: boolean;
  /** `context.attempt`: which delivery of an async invocation this is (SPEC §9); default 1. */
  attempt?: number;
}

/** A settled invocation: `outcome` is the tagged string of wire.ts, decoded by response.ts. */
export interface InvocationResult {
  outcome: string;
  cold: boolean;
  queueMs: number;
  execMs: number;
  /** Captured console lines, `level\tmessage`. */
  logs: string[];
  /** Whether it made an effect outside its sandbox: a KV write, a fetch other than GET/HEAD/OPTIONS. */
  effects: boolean;
}

export interface PoolStats {
  workers: number;
  configuredWorkers: number;
  running: number;
  queued: number;
  restarts: number;
  closing: boolean;
}

// How long past its deadline an invocation may go unanswered before the pool answers it 504.
const OVERDUE_MARGIN_MS = 100;
// How often the pool checks deadlines and heartbeats (one timer for all jobs, not one per job).
const SWEEP_MS = 20;
// Silent this long (a few missed heartbeats), a worker is busy or blocked: dispatch elsewhere.
const QUIET_MS = 250;

/** A queued or running invocation; safeify's queue and worker lists hold these. */
interface Job extends Invocation {
  id: number;
  timeoutMs: number;
  enqueuedAt: number;
  dispatchedAt: number;
  /** The worker said `start`: its code may have run, so it must never be run again. */
  started: boolean;
  /** The effect ledger (SPEC §8): set by a host call that writes outside the sandbox. */
  effects: boolean;
  /** Host calls made so far, by op (made at the first call: most invocations make none). */
  calls?: Map<string, number>;
  settled: boolean;
  worker?: PoolWorker;
  /** performance.now() deadlines, checked by the sweep. */
  queueDeadline: number;
  execDeadline: number;
  safetyDeadline: number;
  resolve(result: InvocationResult): void;
  reject(err: Error): void;
}

type PoolWorker = WorkerProcess<Job>;

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

class FaasSafeify extends SafeifyBase {
  restarts = 0;
  closing = false;
  private nextId = 1;
  private refilling: Promise<unknown> = Promise.resolve();
  private readonly jobs = new Map<number, Job>();
  private sweeper?: NodeJS.Timeout;
  private lastSweep = performance.now();
  private deferredLast = false;

  constructor(private readonly opts: ResolvedOptions) {
    // unrestricted: safeify's cgroup code is v1-only and needs root; we never let it run.
    super({ workers: opts.workers, timeout: opts.timeoutMs, unrestricted: true });
  }

  confine(confinement: WorkerIsolation | undefined): void {
    this.opts.confinement = confinement;
  }

  /** Slots in use on the workers: invocations running, answered or not. */
  get running(): number {
    return this.workers.reduce((sum, worker) => sum + worker.runningScripts.length, 0);
  }

  /** One worker, forked and confined by worker-process.ts; resolves when it is ready. */
  override createWorker(): Promise<PoolWorker> {
    const { isolation, warmContexts, maxResultBytes, confinement, logger } = this.opts;
    return spawnWorker<Job>(
      { isolation, warmContexts, maxResultBytes, confinement, logger },
      {
        closing: () => this.closing,
        onBatch: (worker, batch) => this.onBatch(worker, batch),
        onGone: (worker) => this.onChannelClosed(worker),
        onExit: (reason) => this.opts.onWorkerExit(reason),
      },
    );
  }

  /** Queues one invocation; it settles exactly once, whatever happens to its worker. */
  submit(invocation: Invocation): Promise<InvocationResult> {
    if (this.closing) return Promise.reject(new ShuttingDownError('the server is shutting down'));
    // Jobs wait here only while every worker is at its concurrency (or being replaced).
    if (this.pendingScripts.length >= this.opts.maxQueue) {
      return Promise.reject(
        this.overloaded(
          `${this.pendingScripts.length} invocations are already waiting for a worker`,
        ),
      );
    }
    return new Promise<InvocationResult>((resolve, reject) => {
      const { timeoutMs, queueTimeoutMs } = this.opts;
      const now = performance.now();
      const jobTimeoutMs = invocation.timeoutMs ?? timeoutMs;
      // Field by field, not a spread: one object shape for every job, on the hot path.
      const job: Job = {
        name: invocation.name,
        version: invocation.version,
        source: invocation.source,
        eventJson: invocation.eventJson,
        requestId: invocation.requestId,
        file: invocation.file,
        contextJson: invocation.contextJson,
        check: invocation.check,
        keep: invocation.keep,
        attempt: invocation.attempt,
        id: this.nextId++,
        timeoutMs: jobTimeoutMs,
        enqueuedAt: now,
        dispatchedAt: 0,
        started: false,
        effects: false,
        settled: false,
        resolve,
        reject,
        queueDeadline: now + queueTimeoutMs,
        execDeadline: Infinity,
        // The last line of defence: no path in here or in safeify may leave a request hanging.
        safetyDeadline: now + queueTimeoutMs + jobTimeoutMs + OVERDUE_MARGIN_MS + 2000,
      };
      this.jobs.set(job.id, job);
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS);
      this.pendingScripts.push(job);
      this.execute();
    });
  }

  /**
   * Every SWEEP_MS while jobs exist: refuse jobs that waited too long for a worker (503), answer
   * started jobs past their deadline (504), and kill workers that stopped beating. A worker in
   * a synchronous part is silent for at most the timeout (vm2's watchdog bounds it); silent any
   * longer, its event loop is blocked for good (an endless microtask chain, a loop after an
   * await): it is killed, and its other started jobs answer 502.
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
        if (job.worker) this.killWorker(job.worker, 'unresponsive');
        this.fail(job, new FunctionTimeoutError(this.timeoutMessage(job)));
      } else if (!job.worker && now > job.queueDeadline) {
        const index = this.pendingScripts.indexOf(job);
        if (index >= 0) this.pendingScripts.splice(index, 1);
        this.fail(job, this.overloaded(`no worker was free within ${this.opts.queueTimeoutMs} ms`));
      } else if (judge && now > job.execDeadline) {
        // The worker answers its own deadlines; it did not, so its loop is busy or blocked.
        const blocked = job.worker && now - job.worker.lastHeard > OVERDUE_MARGIN_MS;
        const why = blocked ? ': its worker was blocked (by this or another invocation)' : '';
        this.fail(job, new FunctionTimeoutError(this.timeoutMessage(job) + why));
      }
    }
    for (const worker of this.workers) {
      // The same arithmetic as a job's execDeadline, so the two agree to the last bit. A worker
      // may be silent as long as the longest timeout among its invocations.
      let longest = 0;
      for (const job of worker.runningScripts) longest = Math.max(longest, job.timeoutMs);
      const silent = now > worker.lastHeard + longest + OVERDUE_MARGIN_MS;
      if (judge && silent && worker.state === 'healthy' && worker.runningScripts.length > 0) {
        this.opts.logger.warn('worker blocked past the timeout; killing it', {
          pid: worker.process.pid,
          silentMs: Math.round(now - worker.lastHeard),
        });
        this.killWorker(worker, 'timeout');
      }
    }
    // Answered jobs may still hold slots on a worker that has yet to be judged: keep sweeping.
    const idle = this.jobs.size === 0 && this.workers.every((w) => w.runningScripts.length === 0);
    if (idle && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /**
   * Hands queued jobs to the least-loaded healthy workers, up to `concurrency` each; between
   * equally loaded workers, one that already holds the job's version (no cold start) wins.
   */
  override execute(): void {
    const now = performance.now();
    while (this.pendingScripts.length > 0) {
      const version = this.pendingScripts[0].version;
      let best: PoolWorker | undefined;
      let bestScore = Infinity;
      for (const worker of this.healthyWorkers) {
        if (worker.runningScripts.length >= this.opts.concurrency) continue;
        // A worker that has missed a few heartbeats is busy in a long synchronous part, or
        // blocked: it goes last, so work waits on it only when every worker is in that state.
        const quiet = now - worker.lastHeard > QUIET_MS ? this.opts.concurrency : 0;
        const cold = worker.known.has(version) ? 0 : 0.5;
        const score = worker.runningScripts.length + quiet + cold;
        if (score < bestScore) {
          best = worker;
          bestScore = score;
        }
      }
      if (!best) return;
      this.dispatch(best, this.pendingScripts.shift() as Job);
    }
  }

  private dispatch(worker: PoolWorker, job: Job): void {
    job.worker = worker;
    job.dispatchedAt = performance.now();
    worker.runningScripts.push(job);
    this.send(worker, job, !worker.known.has(job.version));
  }

  private send(worker: PoolWorker, job: Job, withSource: boolean): void {
    const message: RunMessage = {
      t: 'run',
      id: job.id,
      fn: job.name,
      v: job.version,
      ev: job.eventJson,
      rid: job.requestId,
      ms: job.timeoutMs,
    };
    if (job.contextJson !== undefined) message.x = job.contextJson;
    if (job.check) message.check = true;
    if (job.keep) message.keep = true;
    if (job.attempt !== undefined) message.n = job.attempt;
    if (withSource) {
      message.src = job.source;
      if (job.file !== undefined) message.file = job.file;
      worker.known.add(job.version);
    }
    worker.outbox.push(message);
    if (worker.outbox.length === 1) setImmediate(() => this.flush(worker));
  }

  /** One pipe write per worker per event-loop turn, for every job dispatched in that turn. */
  private flush(worker: PoolWorker): void {
    const batch = worker.outbox.splice(0);
    if (batch.length === 0 || worker.state !== 'healthy') return;
    try {
      worker.process.send(batch);
    } catch (err) {
      // The channel is already closed: onChannelClosed moves these jobs on.
      this.opts.logger.warn('send to worker failed', { pid: worker.process.pid, err });
    }
  }

  /**
   * A batch from a worker. A worker that escaped its sandbox can send anything: a malformed
   * batch gets the worker killed, never an exception in the server.
   */
  private onBatch(worker: PoolWorker, batch: unknown): void {
    // One clock reading for the batch: a job's deadline and its worker's silence are measured
    // from the same instant, so a blocked worker's own invocation is answered 504 (by its
    // deadline) no later than the worker is killed (for its silence), never 502.
    const now = performance.now();
    worker.lastHeard = now;
    if (Array.isArray(batch) && batch.every(isWorkerMessage)) {
      for (const message of batch) this.onMessage(worker, message, now);
      return;
    }
    this.opts.logger.error('malformed message from a worker; killing it', {
      pid: worker.process.pid,
    });
    this.killWorker(worker, 'malformed message');
  }

  private onMessage(worker: PoolWorker, message: WorkerMessage, now: number): void {
    if (message.t === 'beat') return;
    if (message.t === 'evicted') {
      for (const version of message.v) worker.known.delete(version);
      return;
    }
    if (message.t === 'ready') return;
    // A job the pool already answered (504 past its deadline) keeps its slot on the worker until
    // the worker reports it: look on the worker too, not only among the unsettled jobs.
    const job = this.jobs.get(message.id) ?? worker.runningScripts.find((j) => j.id === message.id);
    if (!job || job.worker !== worker) return;
    switch (message.t) {
      case 'start':
        job.started = true;
        // The worker answers its own deadlines; this one is for when it cannot.
        job.execDeadline = now + job.timeoutMs + OVERDUE_MARGIN_MS;
        return;
      case 'call':
        return this.onCall(worker, job, message);
      case 'miss':
        worker.known.delete(job.version);
        if (!job.settled) return this.send(worker, job, true);
        this.detach(job);
        return this.execute();
      case 'done':
        this.detach(job);
        this.settle(job, () =>
          job.resolve({
            outcome: message.r,
            cold: message.cold,
            queueMs: job.dispatchedAt - job.enqueuedAt,
            execMs: message.ms,
            logs: message.logs ?? [],
            effects: job.effects,
          }),
        );
        return this.execute();
    }
  }

  /**
   * A host call of a running invocation: served by `onCall`, answered to the worker. A call after
   * its invocation was answered (or before it started) is refused; a service that fails or
   * throws answers an error, never an exception here.
   */
  private onCall(worker: PoolWorker, job: Job, message: CallMessage): void {
    const reply = (answer: HostReply) => {
      if (worker.state !== 'healthy') return;
      worker.outbox.push({ t: 'reply', c: message.c, ok: answer.ok, r: answer.r });
      if (worker.outbox.length === 1) setImmediate(() => this.flush(worker));
    };
    const { onCall, logger } = this.opts;
    // A load (a check job) runs the file's top level, and may run again (a deploy's check, then
    // the first call; a joiner of a failed load): it must make no effect, so it gets no service.
    if (job.settled || !job.started || job.check || !onCall) {
      const why = !onCall
        ? 'services are not available'
        : job.check
          ? 'services are not available while the file loads (call them from the function)'
          : 'its invocation has ended';
      return reply({
        ok: false,
        r: JSON.stringify({ name: 'Error', message: `call refused: ${why}` }),
      });
    }
    job.calls ??= new Map();
    const counts = new Map(job.calls);
    job.calls.set(message.op, (job.calls.get(message.op) ?? 0) + 1);
    const call: HostCall = {
      fn: job.name,
      requestId: job.requestId,
      op: message.op,
      args: message.a,
      deadline: Math.floor(
        Date.now() + Math.max(0, job.execDeadline - OVERDUE_MARGIN_MS - performance.now()),
      ),
      counts,
      markEffect: () => {
        job.effects = true;
      },
    };
    onCall(call).then(reply, (err: unknown) => {
      logger.error('host call failed', { fn: job.name, op: message.op, err });
      reply({ ok: false, r: JSON.stringify({ name: 'Error', message: `${message.op} failed` }) });
    });
  }

  /** The worker's channel closed: it is gone. Settle or move every job it held. */
  private onChannelClosed(worker: PoolWorker): void {
    if (worker.gone) return;
    worker.gone = true;
    worker.state = 'unhealthy';
    const index = this.workers.indexOf(worker);
    if (index >= 0) this.workers.splice(index, 1);
    if (!this.closing) this.restarts++;
    const reason = DEATHS[worker.exitReason ?? 'crash'];
    const requeue: Job[] = [];
    for (const job of worker.runningScripts.splice(0)) {
      job.worker = undefined;
      if (job.settled) continue;
      if (job.started) {
        this.fail(job, new WorkerCrashedError(`the worker running '${job.name}' ${reason}`));
      } else if (this.closing) {
        this.fail(job, new ShuttingDownError('the server is shutting down'));
      } else {
        requeue.push(job);
      }
    }
    // Never started, so never run: safe to run elsewhere, ahead of newer work, with a fresh
    // allowance to find a worker.
    const now = performance.now();
    for (const job of requeue) job.queueDeadline = now + this.opts.queueTimeoutMs;
    this.pendingScripts.unshift(...requeue);
    if (!this.closing) this.refill();
  }

  /** Brings the pool back to its configured size, one refill at a time. */
  refill(): void {
    this.refilling = this.refilling
      .then(() => (this.closing ? [] : this.createWorkers()))
      .then(
        () => this.execute(),
        (err: unknown) => {
          this.opts.logger.error('could not restart a worker; retrying in 1 s', { err });
          setTimeout(() => !this.closing && this.refill(), 1000).unref();
        },
      );
  }

  /** safeify's destroyWorker, without dropping the listeners that settle the worker's jobs. */
  override destroyWorker(worker: PoolWorker): void {
    this.killWorker(worker, worker.killReason ?? 'destroyed');
  }

  killWorker(worker: PoolWorker, reason: string): void {
    if (worker.state === 'healthy') worker.killReason = reason;
    worker.state = 'unhealthy';
    if (worker.process.exitCode === null && worker.process.signalCode === null) {
      worker.process.kill('SIGKILL');
    }
    // The replacement starts now, not when the old one's channel closes.
    if (!this.closing) this.refill();
  }

  private detach(job: Job): void {
    const worker = job.worker;
    if (!worker) return;
    const index = worker.runningScripts.indexOf(job);
    if (index >= 0) worker.runningScripts.splice(index, 1);
    job.worker = undefined;
  }

  private settle(job: Job, action: () => void): void {
    if (job.settled) return;
    job.settled = true;
    this.jobs.delete(job.id);
    action();
  }

  private fail(job: Job, err: Error): void {
    // Keep it on its worker's list until that worker is gone: its slot stays taken.
    this.settle(job, () => job.reject(err));
  }

  private timeoutMessage(job: Job): string {
    return `function '${job.name}' exceeded its ${job.timeoutMs} ms timeout`;
  }

  overloaded(message: string): OverloadedError {
    const err = new OverloadedError(message);
    err.headers = { 'Retry-After': '1' };
    return err;
  }

  /** Waits for every accepted job to settle, at most `graceMs`. */
  async drain(graceMs: number): Promise<void> {
    const until = Date.now() + graceMs;
    while (this.jobs.size > 0 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Kills every worker and waits for them to exit; jobs still pending get SHUTTING_DOWN. */
  async shutdown(): Promise<void> {
    for (const job of this.pendingScripts.splice(0)) {
      this.fail(job, new ShuttingDownError('the server is shutting down'));
    }
    const exits = this.workers.map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.process.exitCode !== null || worker.process.signalCode !== null) {
            return resolve();
          }
          worker.process.once('exit', () => resolve());
        }),
    );
    for (const worker of this.workers) worker.killReason ??= 'shutdown';
    this.destroy();
    // A replacement that was starting when the pool began closing kills itself when ready.
    await this.refilling.catch(() => undefined);
    await Promise.all(exits);
    for (const job of this.jobs.values()) {
      this.fail(job, new ShuttingDownError('the server is shutting down'));
    }
  }
}

/** The pool as the server sees it: start, run, stats, close. */
export class SandboxPool {
  private readonly safeify: FaasSafeify;
  private closed?: Promise<void>;

  constructor(options: PoolOptions) {
    this.safeify = new FaasSafeify({
      concurrency: 32,
      queueTimeoutMs: options.timeoutMs,
      onWorkerExit: () => undefined,
      maxResultBytes: 6 * 1024 * 1024,
      maxQueue: 256,
      ...options,
    });
  }

  /**
   * Starts every worker, confined as `confinement` says; rejects when one cannot start, so a
   * broken pool fails start-up.
   */
  async start(confinement?: WorkerIsolation): Promise<void> {
    this.safeify.confine(confinement);
    await this.safeify.init();
  }

  /**
   * Runs one invocation. Rejects with FunctionTimeoutError, WorkerCrashedError, OverloadedError
   * or ShuttingDownError; the function's own errors are in the outcome (see response.ts).
   */
  run(invocation: Invocation): Promise<InvocationResult> {
    return this.safeify.submit(invocation);
  }

  stats(): PoolStats {
    const s = this.safeify;
    return {
      workers: s.healthyWorkers.length,
      configuredWorkers: s.options.workers,
      running: s.running,
      queued: s.pendingScripts.length,
      restarts: s.restarts,
      closing: s.closing,
    };
  }

  /** Process ids of the live workers (for tests and the soak's orphan check). */
  pids(): number[] {
    return this.safeify.workers.map((w) => w.process.pid).filter((pid): pid is number => !!pid);
  }

  /**
   * Stops taking work, lets accepted invocations finish within `graceMs`, then kills every
   * worker and waits for them to exit. Idempotent.
   */
  close(graceMs = 0): Promise<void> {
    this.closed ??= (async () => {
      this.safeify.closing = true;
      await this.safeify.drain(graceMs);
      await this.safeify.shutdown();
    })();
    return this.closed;
  }
}
