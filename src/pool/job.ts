/**
 * One invocation as the pool tracks it: what the server asks for (Invocation), the pool's Job
 * for it (its lane, its deadlines, the effect ledger, the worker it is on), and what the caller
 * gets back: an InvocationResult, or an error whose facts `factsOf` reads.
 */
import type { WorkerProcess } from './worker-process';

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

/** Why an invocation ran again (docs/spec.md §3): see death-rules.ts. */
export type RerunReason = 'suspect' | 'blocked';

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

/** A queued or running invocation; the lanes' queues and the workers' lists hold these. */
export interface Job extends Invocation {
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
  /** performance.now() deadlines, checked by the sweep (admission.ts). */
  queueDeadline: number;
  execDeadline: number;
  safetyDeadline: number;
  resolve(result: InvocationResult): void;
  reject(err: Error): void;
}

export type PoolWorker = WorkerProcess<Job>;

// How long past its deadline an invocation may go unanswered before the pool answers it 504.
export const OVERDUE_MARGIN_MS = 100;

/**
 * The last line of defence, for a job that may wait `waitMs` for a worker: no path in the pool or
 * in safeify may leave a request hanging past it.
 */
export function safetyDeadline(now: number, waitMs: number, timeoutMs: number): number {
  return now + waitMs + timeoutMs + OVERDUE_MARGIN_MS + 2000;
}

export function timeoutMessage(job: { name: string; timeoutMs: number }): string {
  return `function '${job.name}' exceeded its ${job.timeoutMs} ms timeout`;
}

/** Takes a job off its worker's list: its slot there is free. */
export function detach(job: Job): void {
  const worker = job.worker;
  if (!worker) return;
  const index = worker.runningScripts.indexOf(job);
  if (index >= 0) worker.runningScripts.splice(index, 1);
  job.worker = undefined;
}

/** Remembers what the pool knew of a job it fails with `err`, for `factsOf`. */
export function recordFacts(err: Error, job: Job): void {
  FACTS.set(err, { effects: job.effects, reruns: job.reruns, solo: job.lane !== 'shared' });
}
