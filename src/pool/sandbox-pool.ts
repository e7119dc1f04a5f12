/**
 * The sandbox pool: the only importer of safeify. safeify keeps the pool's bookkeeping (its
 * worker list, pending queue, least-loaded choice, respawn to full strength and `destroy`); this
 * subclass replaces the parts with known gaps:
 * - its runner (one new vm2 context per script) → worker/runner.ts (warm contexts, see there),
 *   forked and confined by worker-process.ts;
 * - its timeout kill re-queues the killed worker's other scripts, so they may run twice → here an
 *   invocation that may have started runs again only when that cannot matter (below);
 * - a worker that dies leaves its scripts pending forever → here they settle when its channel
 *   closes, and every job also races the pool's own deadlines;
 * - errors reduced to a message, `throw 'x'` a success → outcomes are tagged strings (wire.ts);
 * - replying to a dead worker crashes the host → every send is guarded, `error` is listened to.
 *
 * Blast radius (docs/spec.md §3 "At most once, unless it cannot matter"). When a worker dies with
 * invocations on it, which one broke it is not known (memory, a blocked loop, a kill from
 * outside). Each started invocation that made no effect outside its sandbox (the ledger, §8) is a
 * suspect: it runs again, alone, on a solo worker (an extra process, one invocation at a time,
 * never shared between functions). One that breaks its solo worker too is the culprit: it answers
 * 502/504 and its version is quarantined (quarantine.ts): its invocations run only on the solo
 * lane, one at a time, behind a bounded queue (429 past it), until they run cleanly again or a
 * new version is deployed. A loop the watchdog stops names its own culprit (quarantined at
 * once); a neighbour whose deadline passed while it held the loop is not charged the timeout: it
 * runs again on a shared worker when that cannot matter, else answers 504 naming the blocker.
 * An invocation that made an effect is never run twice: 502 (or 504), as before.
 */
import { Safeify } from 'safeify';
import {
  FunctionTimeoutError,
  OverloadedError,
  ShuttingDownError,
  TooManyRequestsError,
  WorkerCrashedError,
} from '../errors';
import type { WorkerConfinement } from './confinement';
import type { Logger } from '../observe/logger';
import { pickWorker } from './affinity';
import { Quarantine } from './quarantine';
import type { QuarantineEntry, QuarantineEvent } from './quarantine';
import { Outcome, isWorkerMessage } from './wire';
import type { CallMessage, DoneMessage, RunMessage, WorkerMessage } from './wire';
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
  /** What confines worker processes (user, permissions, heap, cgroups); see confinement.ts. */
  confinement?: WorkerConfinement;
  /** Largest outcome a worker may send, bytes; larger ones become INVALID_RESULT there. */
  maxResultBytes?: number;
  /** Invocations that may wait for a worker; past it, OVERLOADED at once. */
  maxQueue?: number;
  /** Told when a worker dies outside a shutdown: timeout, unresponsive, memory or crash. */
  onWorkerExit?: (reason: WorkerExitReason) => void;
  /** Serves the host calls of invocations (docs/spec.md §8 services); without it every call fails. */
  onCall?: (call: HostCall) => Promise<HostReply>;
  /** Solo workers (suspects and quarantined functions, one invocation each) at most at once. */
  soloWorkers?: number;
  /** Clean runs in a row that lift a function's quarantine. */
  quarantineCleanRuns?: number;
  /** Invocations of one quarantined function that may wait for its turn; past it, 429. */
  quarantineQueue?: number;
  /** Told when a function version is quarantined, struck again, lifted or replaced. */
  onQuarantine?: (entry: QuarantineEntry, event: QuarantineEvent) => void;
  /** Told when an invocation runs again: alone as a suspect, or after a neighbour blocked it. */
  onRerun?: (reason: RerunReason) => void;
}

/**
 * What the pool knows of an invocation it answered with an error (for its record): whether it
 * made an effect, ran again, ran alone. Read with `factsOf(err)`.
 */
export interface InvocationFacts {
  effects: boolean;
  reruns: number;
  solo: boolean;
}
const FACTS = new WeakMap<Error, InvocationFacts>();

/** The facts of an invocation the pool failed with `err`, when it got as far as a job. */
export function factsOf(err: unknown): InvocationFacts | undefined {
  return err instanceof Error ? FACTS.get(err) : undefined;
}

/** Why an invocation ran again (docs/spec.md §3): see the file's comment. */
export type RerunReason = 'suspect' | 'blocked';

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
  /** Marks the invocation as having made an effect outside its sandbox (docs/spec.md §3, §8). */
  markEffect(): void;
}

/** The answer to a host call: the result as JSON text, or `{ name, message, code? }` JSON. */
export interface HostReply {
  ok: boolean;
  r: string;
}

type ResolvedOptions = Required<Omit<PoolOptions, 'confinement' | 'onCall' | 'onQuarantine'>> &
  Pick<PoolOptions, 'confinement' | 'onCall' | 'onQuarantine'>;

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
  /** `context.attempt`: which delivery of an async invocation this is (docs/spec.md §9); default 1. */
  attempt?: number;
  /** `config.maxConcurrency`: this function's invocations in the pool at once; past it, 429. */
  maxConcurrency?: number;
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
  /** Times it ran again after its worker died or was blocked by another (0 most of the time). */
  reruns: number;
  /** Whether it ran alone on the solo lane: its function is quarantined, or it was a suspect. */
  solo: boolean;
}

export interface PoolStats {
  workers: number;
  configuredWorkers: number;
  running: number;
  queued: number;
  restarts: number;
  closing: boolean;
  /** The solo lane: its live workers, invocations running and waiting there. */
  solo: { workers: number; running: number; queued: number };
  /** Function versions quarantined now. */
  quarantined: number;
}

// How long past its deadline an invocation may go unanswered before the pool answers it 504.
const OVERDUE_MARGIN_MS = 100;
// How often the pool checks deadlines and heartbeats (one timer for all jobs, not one per job).
const SWEEP_MS = 20;
// Silent this long (a few missed heartbeats), a worker is busy or blocked: dispatch elsewhere.
const QUIET_MS = 250;
// Silent longer than this (two heartbeats) and heard again, a worker was stalled: its running
// invocations get the stalled time back on their deadlines (the runner answers theirs itself,
// naming the blocker; a cold start's compile does not count against its own).
const STALL_MS = 100;
// On the solo lane (suspects, quarantined calls) an invocation may wait this many queue
// allowances: its workers run one invocation each, and are often started for it.
const SOLO_WAIT_FACTOR = 6;
// A solo worker left with nothing to run ends after this.
const SOLO_IDLE_MS = 10_000;
const BLOCKED_LOOP =
  "it blocked its worker's event loop (an endless microtask chain, or a loop after an await)";
const BLOCKED_BY_SOMEONE = 'its worker was blocked (by this or another invocation)';
// Runs again at most twice: once after a neighbour blocked it, once alone as a suspect.
const MAX_RERUNS = 2;

/** A queued or running invocation; safeify's queue and worker lists hold these. */
interface Job extends Invocation {
  id: number;
  timeoutMs: number;
  enqueuedAt: number;
  dispatchedAt: number;
  /** The worker said `start`: its code may have run (run again only if that cannot matter). */
  started: boolean;
  /** `shared`, or alone on the solo lane as a `suspect` or because it is `quarantined`. */
  lane: 'shared' | 'suspect' | 'quarantined';
  reruns: number;
  /** The effect ledger (docs/spec.md §8): set by a host call that writes outside the sandbox. */
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
  readonly quarantine: Quarantine;
  private nextId = 1;
  private refilling: Promise<unknown> = Promise.resolve();
  private readonly jobs = new Map<number, Job>();
  private sweeper?: NodeJS.Timeout;
  private lastSweep = performance.now();
  private deferredLast = false;
  /** Invocations of functions with a maxConcurrency, accepted and not yet answered, by name. */
  private readonly inflight = new Map<string, number>();
  /** The solo lane: its workers (one invocation each), those starting, and its queue. */
  private readonly soloWorkers: PoolWorker[] = [];
  /** The first version each worker ran, and the workers that ran another one since (memory). */
  private readonly firstVersion = new WeakMap<PoolWorker, string>();
  private readonly mixed = new WeakSet<PoolWorker>();
  private soloStarting = 0;
  private readonly soloQueue: Job[] = [];
  /** Slots of shared workers being started (a live worker's slot is on the worker). */
  private readonly startingSlots = new Set<number>();

  constructor(private readonly opts: ResolvedOptions) {
    // unrestricted: safeify's cgroup code is v1-only and needs root; we never let it run.
    super({ workers: opts.workers, timeout: opts.timeoutMs, unrestricted: true });
    this.quarantine = new Quarantine(opts.quarantineCleanRuns, (entry, event) => {
      const log = event === 'lifted' || event === 'replaced' ? 'info' : 'warn';
      opts.logger[log](`function ${event === 'struck again' ? 'broke a worker again' : event}`, {
        fn: entry.name,
        version: entry.version,
        reason: entry.reason,
        cleanRuns: entry.cleanRuns,
      });
      opts.onQuarantine?.(entry, event);
    });
  }

  confine(confinement: WorkerConfinement | undefined): void {
    this.opts.confinement = confinement;
  }

  /** Slots in use on the workers: invocations running, answered or not. */
  get running(): number {
    return this.workers.reduce((sum, worker) => sum + worker.runningScripts.length, 0);
  }

  get soloStats(): PoolStats['solo'] {
    return {
      workers: this.soloWorkers.length,
      running: this.soloWorkers.reduce((sum, w) => sum + w.runningScripts.length, 0),
      queued: this.soloQueue.length,
    };
  }

  /** Every live worker, shared and solo. */
  allWorkers(): PoolWorker[] {
    return this.soloWorkers.length === 0 ? this.workers : [...this.workers, ...this.soloWorkers];
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
    const spawned = this.spawn('shared', slot);
    spawned.then(release, release);
    return spawned;
  }

  private spawn(lane: 'shared' | 'solo', slot = -1): Promise<PoolWorker> {
    const { isolation, warmContexts, maxResultBytes, confinement, logger } = this.opts;
    return spawnWorker<Job>(
      { lane, slot, isolation, warmContexts, maxResultBytes, confinement, logger },
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
    const { name, maxConcurrency } = invocation;
    const refused = this.admit(invocation);
    if (refused) return Promise.reject(refused);
    const quarantined = this.quarantine.size > 0 && this.quarantine.holds(name, invocation.version);
    if (quarantined && this.waitingAlone(name) >= this.opts.quarantineQueue) {
      return Promise.reject(
        this.tooMany(
          `function '${name}' is quarantined (it broke a worker) and runs one invocation at a ` +
            `time; ${this.opts.quarantineQueue} are already waiting`,
        ),
      );
    }
    return new Promise<InvocationResult>((resolve, reject) => {
      const { timeoutMs, queueTimeoutMs } = this.opts;
      const now = performance.now();
      const jobTimeoutMs = invocation.timeoutMs ?? timeoutMs;
      const waitMs = quarantined ? queueTimeoutMs * SOLO_WAIT_FACTOR : queueTimeoutMs;
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
        // The last line of defence: no path in here or in safeify may leave a request hanging.
        safetyDeadline: now + waitMs + jobTimeoutMs + OVERDUE_MARGIN_MS + 2000,
      };
      if (maxConcurrency !== undefined) this.inflight.set(name, (this.inflight.get(name) ?? 0) + 1);
      this.jobs.set(job.id, job);
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS);
      if (quarantined) {
        this.soloQueue.push(job);
        this.executeSolo();
      } else {
        this.pendingScripts.push(job);
        this.execute();
      }
    });
  }

  /**
   * Bulkheads: the function's maxConcurrency (429), the whole queue (503), and a fair share of
   * it: one function may hold at most half the queue's slots (429), so a flood of one function
   * never takes the others' places. The queue is empty most of the time: its scan runs only when
   * it is at least half full.
   */
  private admit(invocation: Invocation): Error | undefined {
    const { name, maxConcurrency } = invocation;
    if (maxConcurrency !== undefined && (this.inflight.get(name) ?? 0) >= maxConcurrency) {
      return this.tooMany(
        `function '${name}' is at its maxConcurrency: ${maxConcurrency} invocations in flight`,
      );
    }
    const queued = this.pendingScripts.length;
    const { maxQueue } = this.opts;
    if (queued >= maxQueue) {
      return this.overloaded(`${queued} invocations are already waiting for a worker`);
    }
    const share = Math.ceil(maxQueue / 2);
    if (queued >= share) {
      let own = 0;
      for (const job of this.pendingScripts) if (job.name === name) own++;
      if (own >= share) {
        return this.tooMany(
          `function '${name}' holds its fair share of the queue: ${own} of ${maxQueue} places`,
        );
      }
    }
    return undefined;
  }

  /** Quarantined invocations of a function waiting for their turn on the solo lane. */
  private waitingAlone(name: string): number {
    let waiting = 0;
    for (const job of this.soloQueue)
      if (job.name === name && job.lane === 'quarantined') waiting++;
    return waiting;
  }

  /**
   * Every SWEEP_MS while jobs exist: refuse jobs that waited too long for a worker (503), answer
   * started jobs past their deadline (504), and kill workers that stopped beating. A worker in
   * a synchronous part is silent for at most the timeout (vm2's watchdog bounds it); silent any
   * longer, its event loop is blocked for good (an endless microtask chain, a loop after an
   * await): it is killed, and its started jobs run again or answer (onChannelClosed).
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
        this.unqueue(job);
        this.fail(job, this.overloaded(this.notFreeMessage(job)));
      } else if (judge && now > job.execDeadline) {
        // The worker answers its own deadlines; it did not, so its loop is busy or blocked.
        const blocked = job.worker && now - job.worker.lastHeard > OVERDUE_MARGIN_MS;
        // Blocked, maybe by another invocation: who is known when the worker is heard again (the
        // runner names the blocker) or killed (its suspects run alone). Bounded: twice its time.
        if (blocked && now < job.execDeadline + job.timeoutMs) continue;
        const why = blocked ? `: ${BLOCKED_BY_SOMEONE}` : '';
        this.fail(job, new FunctionTimeoutError(this.timeoutMessage(job) + why));
      }
    }
    for (const worker of this.allWorkers()) {
      // The same arithmetic as a job's execDeadline, so the two agree to the last bit. A worker
      // may be silent as long as the longest timeout among its invocations.
      let longest = 0;
      for (const job of worker.runningScripts) longest = Math.max(longest, job.timeoutMs);
      const silent = now > worker.lastHeard + longest + OVERDUE_MARGIN_MS;
      if (judge && silent && worker.state === 'healthy' && worker.runningScripts.length > 0) {
        this.opts.logger.warn('worker blocked past the timeout; killing it', {
          pid: worker.process.pid,
          lane: worker.lane,
          silentMs: Math.round(now - worker.lastHeard),
        });
        this.killWorker(worker, 'timeout');
      }
    }
    // Answered jobs may still hold slots on a worker that has yet to be judged: keep sweeping.
    const idle =
      this.jobs.size === 0 && this.allWorkers().every((w) => w.runningScripts.length === 0);
    if (idle && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Takes a job that waits for a worker off its queue. */
  private unqueue(job: Job): void {
    const queue = job.lane === 'shared' ? this.pendingScripts : this.soloQueue;
    const index = queue.indexOf(job);
    if (index >= 0) queue.splice(index, 1);
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
      this.dispatch(best, this.pendingScripts.shift() as Job);
    }
  }

  /**
   * Hands solo jobs to idle solo workers: each worker runs one invocation at a time, and only for
   * the function it first ran (another function gets a fresh process), so no two functions ever
   * share one. Suspects go first and run side by side, each on its own worker (they are
   * somebody's healthy calls, most of them); a quarantined function runs one invocation at a time,
   * and quarantined functions together hold at most half the solo workers.
   */
  private executeSolo(): void {
    if (this.closing) return;
    this.handOutSolo('suspect');
    this.handOutSolo('quarantined');
    this.keepSpare();
  }

  private handOutSolo(lane: 'suspect' | 'quarantined'): void {
    const quarantinedShare = Math.max(1, Math.floor(this.opts.soloWorkers / 2));
    for (let i = 0; i < this.soloQueue.length; i++) {
      const job = this.soloQueue[i];
      if (job.lane !== lane) continue;
      if (lane === 'quarantined') {
        if (this.soloRunning('quarantined') >= quarantinedShare) return;
        if (this.runsAlone(job.name)) continue;
      }
      const worker = this.soloWorkerFor(job.name);
      if (!worker) continue;
      this.soloQueue.splice(i--, 1);
      worker.owner = job.name;
      clearTimeout(worker.idleTimer);
      this.dispatch(worker, job);
    }
  }

  /** Invocations of one kind running on the solo lane. */
  private soloRunning(lane: 'suspect' | 'quarantined'): number {
    let running = 0;
    for (const worker of this.soloWorkers) {
      for (const job of worker.runningScripts) if (job.lane === lane && !job.settled) running++;
    }
    return running;
  }

  /**
   * One solo worker is kept started and unused (the spare), so a suspect or a quarantined call
   * does not wait for a process to start. It runs nothing until it is needed, and is never
   * retired for idleness.
   */
  keepSpare(): void {
    if (this.closing || this.soloStarting > 0) return;
    if (this.soloWorkers.length >= this.opts.soloWorkers) return;
    const spare = this.soloWorkers.some(
      (w) => w.owner === undefined && w.state === 'healthy' && w.runningScripts.length === 0,
    );
    if (!spare) this.startSolo();
  }

  /** Whether a quarantined invocation of this function is running on the solo lane. */
  private runsAlone(name: string): boolean {
    for (const worker of this.soloWorkers) {
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
  private soloWorkerFor(name: string): PoolWorker | undefined {
    let fresh: PoolWorker | undefined;
    let other: PoolWorker | undefined;
    for (const worker of this.soloWorkers) {
      if (worker.state !== 'healthy' || worker.runningScripts.length > 0) continue;
      if (worker.owner === name) return worker;
      if (worker.owner === undefined) fresh ??= worker;
      else other ??= worker;
    }
    if (fresh) return fresh;
    if (this.soloWorkers.length + this.soloStarting >= this.opts.soloWorkers) {
      if (!other) return undefined;
      this.retireSolo(other, 'recycled');
    }
    this.startSolo();
    return undefined;
  }

  private startSolo(): void {
    this.soloStarting++;
    this.spawn('solo').then(
      (worker) => {
        this.soloStarting--;
        if (this.closing) return this.killWorker(worker, 'shutdown');
        this.soloWorkers.push(worker);
        // Takes a waiting job, or starts its idle timer (another worker may have taken the job).
        this.next(worker);
      },
      (err: unknown) => {
        this.soloStarting--;
        this.opts.logger.error('could not start a solo worker; retrying in 1 s', { err });
        setTimeout(() => this.executeSolo(), 1000).unref();
      },
    );
  }

  /**
   * Ends a solo worker that runs nothing (idle, or its place is needed for another function): a
   * retirement, not a death (no restart is counted or logged).
   */
  private retireSolo(worker: PoolWorker, why: string): void {
    const index = this.soloWorkers.indexOf(worker);
    if (index >= 0) this.soloWorkers.splice(index, 1);
    clearTimeout(worker.idleTimer);
    this.opts.logger.debug('solo worker retired', { pid: worker.process.pid, why });
    this.killWorker(worker, 'retired');
  }

  private dispatch(worker: PoolWorker, job: Job): void {
    const first = this.firstVersion.get(worker);
    if (first === undefined) this.firstVersion.set(worker, job.version);
    else if (first !== job.version) this.mixed.add(worker);
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
    // from the same instant.
    const now = performance.now();
    // Heard again after a stall (a long synchronous part, a loop the watchdog stopped): the
    // stalled time is not its invocations' to pay. Those whose own deadline passed meanwhile are
    // answered by the runner, naming the blocker; the rest get the time back here.
    const stalled = now - worker.lastHeard;
    if (stalled > STALL_MS) {
      for (const job of worker.runningScripts) if (job.started) job.execDeadline += stalled;
    }
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
        return this.next(worker);
      case 'done':
        return this.onDone(worker, job, message);
    }
  }

  /** An invocation's outcome from its worker. */
  private onDone(worker: PoolWorker, job: Job, message: DoneMessage): void {
    this.detach(job);
    if (message.blk) {
      // The watchdog stopped its synchronous loop: it held the worker for its whole timeout.
      this.strike(job, 'it blocked its worker with a synchronous loop past its timeout');
    } else if (job.lane === 'quarantined') {
      this.quarantine.clean(job.name, job.version);
    }
    let outcome = message.r;
    // Its deadline passed while another invocation held the loop: not its timeout.
    if (message.by !== undefined && outcome.startsWith(Outcome.timeout) && !job.settled) {
      if (!job.effects && job.reruns < MAX_RERUNS) {
        this.rerun(job, 'blocked');
        return this.next(worker);
      }
      outcome =
        `${Outcome.timeout}function '${job.name}' could not finish within its ${job.timeoutMs} ` +
        `ms timeout: its worker was blocked by function '${message.by}'`;
    }
    this.settle(job, () =>
      job.resolve({
        outcome,
        cold: message.cold,
        queueMs: job.dispatchedAt - job.enqueuedAt,
        execMs: message.ms,
        logs: message.logs ?? [],
        effects: job.effects,
        reruns: job.reruns,
        solo: job.lane !== 'shared',
      }),
    );
    this.next(worker);
  }

  /** A slot on `worker` is free: hand out queued work (a solo worker idles until retired). */
  private next(worker: PoolWorker): void {
    if (worker.lane === 'shared') return this.execute();
    if (worker.runningScripts.length === 0 && worker.state === 'healthy' && worker.owner) {
      clearTimeout(worker.idleTimer);
      worker.idleTimer = setTimeout(() => {
        if (worker.runningScripts.length === 0) this.retireSolo(worker, 'idle');
      }, SOLO_IDLE_MS).unref();
    }
    this.executeSolo();
  }

  /** A version broke a worker: quarantine it (or count again) and tell who watches. */
  private strike(job: Job, reason: string): void {
    this.quarantine.strike(job.name, job.version, reason);
  }

  /**
   * Runs a started job again (docs/spec.md §3: only one that made no effect): `suspect` alone on the solo
   * lane, `blocked` on a shared worker, with a fresh timeout and a fresh allowance to wait.
   */
  private rerun(job: Job, reason: RerunReason): void {
    const now = performance.now();
    const wait = this.opts.queueTimeoutMs * (reason === 'suspect' ? SOLO_WAIT_FACTOR : 1);
    job.reruns++;
    job.started = false;
    job.worker = undefined;
    job.calls = undefined;
    job.dispatchedAt = 0;
    job.execDeadline = Infinity;
    job.queueDeadline = now + wait;
    job.safetyDeadline = now + wait + job.timeoutMs + OVERDUE_MARGIN_MS + 2000;
    this.opts.onRerun(reason);
    if (reason === 'suspect' && job.lane === 'shared') job.lane = 'suspect';
    if (job.lane === 'shared') this.pendingScripts.unshift(job);
    else this.soloQueue.push(job);
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

  /**
   * The worker's channel closed: it is gone. Each of its jobs is settled or moved: never started
   * → queued again; started on a shared worker → run again alone as a suspect when it made no
   * effect, else 502 (504 when its deadline had passed); started on a solo worker, or alone on a
   * shared one that was blocked, or that ran out of memory and never ran another version →
   * nothing else was in flight, so it broke the worker: 502/504, and its version is quarantined.
   * (A kill from outside blames no one.)
   */
  private onChannelClosed(worker: PoolWorker): void {
    if (worker.gone) return;
    worker.gone = true;
    worker.state = 'unhealthy';
    clearTimeout(worker.idleTimer);
    const solo = worker.lane === 'solo';
    const list = solo ? this.soloWorkers : this.workers;
    const index = list.indexOf(worker);
    if (index >= 0) list.splice(index, 1);
    if (!this.closing && !solo) this.restarts++;
    const exit = worker.exitReason ?? 'crash';
    const reason = DEATHS[exit];
    // Alone in flight is alone in the heap only on a worker that never ran another version: the
    // warm contexts of functions that ran there before keep their memory (a global array that
    // grows; an evicted context too, until the collector finds it), and the one allocation that
    // meets the limit need not be the one that took it. A blocked loop is the invocation's own
    // (finished invocations' timers are cleared).
    const alone =
      solo ||
      (worker.runningScripts.length === 1 &&
        (exit === 'timeout' || (exit === 'memory' && !this.mixed.has(worker))));
    const now = performance.now();
    const requeue: Job[] = [];
    for (const job of worker.runningScripts.splice(0)) {
      job.worker = undefined;
      if (job.settled) continue;
      if (!job.started) {
        if (this.closing) this.fail(job, new ShuttingDownError('the server is shutting down'));
        else requeue.push(job);
      } else if (this.closing) {
        this.fail(job, new WorkerCrashedError(`the worker running '${job.name}' ${reason}`));
      } else if (alone) {
        this.strike(job, exit === 'timeout' ? BLOCKED_LOOP : `its worker ${reason} (it ran alone)`);
        this.fail(job, this.brokeWorker(job, exit, now, true));
      } else if (job.effects || job.reruns >= MAX_RERUNS) {
        // It may have made an effect (or has run again already): never run it again.
        this.fail(job, this.brokeWorker(job, exit, now, false));
      } else {
        this.rerun(job, 'suspect');
      }
    }
    // Never started, so never run: safe to run elsewhere, ahead of newer work, with a fresh
    // allowance to find a worker.
    for (const job of requeue) job.queueDeadline = now + this.opts.queueTimeoutMs;
    if (solo) this.soloQueue.unshift(...requeue);
    else this.pendingScripts.unshift(...requeue);
    if (this.closing) return;
    // The survivors take what they can now; the replacement takes the rest when it is up.
    if (!solo) this.execute();
    if (!solo) this.refill();
    this.executeSolo();
  }

  /** Why a job waited past its allowance: the solo lane's is longer, and says why it waited there. */
  private notFreeMessage(job: Job): string {
    const { queueTimeoutMs } = this.opts;
    if (job.lane === 'shared') return `no worker was free within ${queueTimeoutMs} ms`;
    const waited = queueTimeoutMs * SOLO_WAIT_FACTOR;
    return job.lane === 'suspect'
      ? `no solo worker was free within ${waited} ms to run '${job.name}' again alone (a neighbour broke its worker)`
      : `no solo worker was free within ${waited} ms: function '${job.name}' is quarantined and runs one invocation at a time`;
  }

  /**
   * The answer of a job its worker's death ends. The culprit (it ran alone, so it broke the worker,
   * and is quarantined): 504 when it blocked the worker past its deadline, else 502. Any other
   * (it made an effect, or ran again already): 502, the worker died under it (docs/spec.md §3).
   */
  private brokeWorker(job: Job, exit: WorkerExitReason, now: number, culprit: boolean): Error {
    const quarantined = '; it now runs alone (quarantined)';
    if (culprit && exit === 'timeout' && now > job.execDeadline - OVERDUE_MARGIN_MS) {
      return new FunctionTimeoutError(`${this.timeoutMessage(job)}: ${BLOCKED_LOOP}${quarantined}`);
    }
    return new WorkerCrashedError(
      culprit
        ? `function '${job.name}' could not finish: its worker ${DEATHS[exit]} while running it alone${quarantined}`
        : `the worker running '${job.name}' ${DEATHS[exit]}`,
    );
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
    // A shared worker's replacement starts now, not when the old one's channel closes.
    if (!this.closing && worker.lane === 'shared') this.refill();
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
    // Counted in its function's in-flight number when it has a maxConcurrency.
    if (job.maxConcurrency !== undefined) {
      const left = (this.inflight.get(job.name) ?? 1) - 1;
      if (left > 0) this.inflight.set(job.name, left);
      else this.inflight.delete(job.name);
    }
    action();
  }

  private fail(job: Job, err: Error): void {
    // Keep it on its worker's list until that worker is gone: its slot stays taken.
    this.settle(job, () => {
      FACTS.set(err, { effects: job.effects, reruns: job.reruns, solo: job.lane !== 'shared' });
      job.reject(err);
    });
  }

  private timeoutMessage(job: Job): string {
    return `function '${job.name}' exceeded its ${job.timeoutMs} ms timeout`;
  }

  overloaded(message: string): OverloadedError {
    const err = new OverloadedError(message);
    err.headers = { 'Retry-After': '1' };
    return err;
  }

  private tooMany(message: string): TooManyRequestsError {
    return new TooManyRequestsError(message);
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
    for (const job of [...this.pendingScripts.splice(0), ...this.soloQueue.splice(0)]) {
      this.fail(job, new ShuttingDownError('the server is shutting down'));
    }
    const everyWorker = this.allWorkers();
    const exits = everyWorker.map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.process.exitCode !== null || worker.process.signalCode !== null) {
            return resolve();
          }
          worker.process.once('exit', () => resolve());
        }),
    );
    for (const worker of everyWorker) worker.killReason ??= 'shutdown';
    for (const worker of [...this.soloWorkers]) this.retireSolo(worker, 'shutdown');
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
      soloWorkers: Math.max(4, options.workers * 2),
      quarantineCleanRuns: 5,
      quarantineQueue: 10,
      onRerun: () => undefined,
      ...options,
    });
  }

  /**
   * Starts every worker, confined as `confinement` says; rejects when one cannot start, so a
   * broken pool fails start-up.
   */
  async start(confinement?: WorkerConfinement): Promise<void> {
    this.safeify.confine(confinement);
    await this.safeify.init();
    this.safeify.keepSpare();
  }

  /**
   * Runs one invocation. Rejects with FunctionTimeoutError, WorkerCrashedError, OverloadedError,
   * TooManyRequestsError or ShuttingDownError; the function's own errors are in the outcome (see
   * response.ts).
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
      solo: s.soloStats,
      quarantined: s.quarantine.size,
    };
  }

  /** The quarantine entry of one function, if it is quarantined. */
  quarantineOf(name: string): Readonly<QuarantineEntry> | undefined {
    return this.safeify.quarantine.get(name);
  }

  /**
   * Ends a quarantine without a clean run, for a name that will never be called again (a console
   * draft's throwaway name): its entry would otherwise stay, and count in `stats().quarantined`.
   */
  forgetQuarantine(name: string): void {
    this.safeify.quarantine.forget(name);
  }

  /** Process ids of the live shared workers, or of the solo lane's (for tests and the soak). */
  pids(lane: 'shared' | 'solo' = 'shared'): number[] {
    const workers = this.safeify.allWorkers().filter((w) => w.lane === lane);
    return workers.map((w) => w.process.pid).filter((pid): pid is number => !!pid);
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
