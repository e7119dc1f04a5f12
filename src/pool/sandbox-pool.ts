/**
 * The sandbox pool, as the server sees it: start, run, stats, quarantine, close. Every function
 * invocation runs here, in a worker process (worker-process.ts, confined by confinement.ts) inside
 * a vm2 sandbox (worker/runner.ts). This file is the public entry and only wires: the options and
 * their defaults, the stats, and the types the server imports.
 *
 * Where the rest lives:
 * - pool-core.ts: builds the parts and moves each job between them;
 * - admission.ts: the bulkheads at the door, the jobs not yet answered, the deadline sweep;
 * - shared-lane.ts: the WORKERS (safeify's pool, subclassed) and affinity routing (affinity.ts);
 * - solo-lane.ts: one invocation per worker, for suspects and quarantined functions;
 * - death-rules.ts: what a broken worker means for its invocations (the blast radius,
 *   docs/spec.md §3), pure; quarantine.ts: the functions that broke one;
 * - transport.ts (over wire.ts's messages) and host-call-bridge.ts: the worker channel.
 */
import type { WorkerConfinement } from './confinement';
import type { Logger } from '../observe/logger';
import type { Invocation, InvocationResult, RerunReason } from './job';
import type { HostCall, HostReply } from './host-call-bridge';
import { PoolCore } from './pool-core';
import type { QuarantineEntry, QuarantineEvent } from './quarantine';
import type { WorkerExitReason } from './worker-process';

export { factsOf } from './job';
export type { Invocation, InvocationFacts, InvocationResult, RerunReason } from './job';
export type { HostCall, HostReply } from './host-call-bridge';

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
  /**
   * MAX_STARTUP_MS: the longest a version's top-level code may run when it is loaded (a check);
   * longer is a compile error (docs/spec.md §2).
   */
  maxStartupMs?: number;
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

/** Sent as is by /_/health and /_/ready: its JSON shape is PoolStats in http/admin/api.ts. */
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

/** The pool as the server sees it: start, run, stats, close. */
export class SandboxPool {
  private readonly core: PoolCore;
  private closed?: Promise<void>;

  constructor(options: PoolOptions) {
    this.core = new PoolCore({
      concurrency: 32,
      queueTimeoutMs: options.timeoutMs,
      onWorkerExit: () => undefined,
      maxResultBytes: 6 * 1024 * 1024,
      maxStartupMs: 1000,
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
    this.core.confine(confinement);
    await this.core.shared.init();
    this.core.solo.keepSpare();
  }

  /**
   * Runs one invocation. Rejects with FunctionTimeoutError, WorkerCrashedError, OverloadedError,
   * TooManyRequestsError or ShuttingDownError; the function's own errors are in the outcome (see
   * response.ts).
   */
  run(invocation: Invocation): Promise<InvocationResult> {
    return this.core.submit(invocation);
  }

  stats(): PoolStats {
    const { shared, solo, quarantine, closing } = this.core;
    return {
      workers: shared.healthyWorkers.length,
      configuredWorkers: shared.options.workers,
      running: shared.running,
      queued: shared.queue.length,
      restarts: shared.restarts,
      closing,
      solo: solo.stats,
      quarantined: quarantine.size,
    };
  }

  /** The quarantine entry of one function, if it is quarantined. */
  quarantineOf(name: string): Readonly<QuarantineEntry> | undefined {
    return this.core.quarantine.get(name);
  }

  /**
   * Ends a quarantine without a clean run, for a name that will never be called again (a console
   * draft's throwaway name): its entry would otherwise stay, and count in `stats().quarantined`.
   */
  forgetQuarantine(name: string): void {
    this.core.quarantine.forget(name);
  }

  /** Process ids of the live shared workers, or of the solo lane's (for tests and the soak). */
  pids(lane: 'shared' | 'solo' = 'shared'): number[] {
    const workers = this.core.allWorkers().filter((w) => w.lane === lane);
    return workers.map((w) => w.process.pid).filter((pid): pid is number => !!pid);
  }

  /**
   * Stops taking work, lets accepted invocations finish within `graceMs`, then kills every
   * worker and waits for them to exit. Idempotent.
   */
  close(graceMs = 0): Promise<void> {
    this.closed ??= (async () => {
      this.core.closing = true;
      await this.core.drain(graceMs);
      await this.core.shutdown();
    })();
    return this.closed;
  }
}
