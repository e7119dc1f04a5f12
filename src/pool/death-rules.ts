/**
 * What a broken worker means for the invocations on it: pure rules (no processes, no clocks, no
 * state), applied by pool-core.ts and tabled in test/pool/death-rules.test.ts. A worker breaks in
 * two ways: it dies (its channel closes: `deathVerdicts`), or its watchdog stops a loop and it
 * answers on (`answerVerdict`).
 *
 * Blast radius (docs/spec.md §3 "At most once, unless it cannot matter"). When a worker dies with
 * invocations on it, which one broke it is not known (memory, a blocked loop, a kill from
 * outside). Each started invocation that made no effect outside its sandbox (the ledger, §8) is a
 * suspect: it runs again, alone, on a solo worker (an extra process, one invocation at a time,
 * never shared between functions: solo-lane.ts). One that breaks its solo worker too is the
 * culprit: it answers 502/504 and its version is quarantined (quarantine.ts): its invocations run
 * only on the solo lane, one at a time, behind a bounded queue (429 past it), until they run
 * cleanly again or a new version is deployed. A loop the watchdog stops names its own culprit
 * (quarantined at once); a neighbour whose deadline passed while it held the loop is not charged
 * the timeout: it runs again on a shared worker when that cannot matter, else answers 504 naming
 * the blocker. An invocation that made an effect is never run twice: 502 (or 504), as before.
 */
import { FunctionTimeoutError, ShuttingDownError, WorkerCrashedError } from '../errors';
import type { FaasError } from '../errors';
import { OVERDUE_MARGIN_MS, timeoutMessage } from './job';
import type { Job } from './job';
import { Outcome } from './wire';
import type { DoneMessage } from './wire';
import type { WorkerExitReason } from './worker-process';

/** How a 502 explains why the worker died. */
export const DEATHS: Record<WorkerExitReason, string> = {
  memory: 'ran out of memory (WORKER_MEMORY_MB)',
  crash: 'crashed or was killed',
  timeout: 'was stopped: an invocation on it blocked it past its timeout',
  unresponsive: 'stopped responding and was replaced',
  retired: 'was retired (a solo worker with nothing to run)',
};

// Runs again at most twice: once after a neighbour blocked it, once alone as a suspect.
const MAX_RERUNS = 2;
const BLOCKED_LOOP =
  "it blocked its worker's event loop (an endless microtask chain, or a loop after an await)";
const QUARANTINED = '; it now runs alone (quarantined)';

/** What the rules read of a job (a Job has all of it). */
export type JobFacts = Pick<
  Job,
  'name' | 'timeoutMs' | 'settled' | 'started' | 'effects' | 'reruns' | 'execDeadline'
>;

/** A worker's death, as the pool knows it once the worker's channel has closed. */
export interface WorkerDeath {
  exit: WorkerExitReason;
  /** A solo worker: one invocation at a time (a suspect, or a quarantined function's). */
  solo: boolean;
  /** It ran more than one function version (their warm contexts keep memory). */
  mixed: boolean;
  /** The pool is shutting down: nothing runs again. */
  closing: boolean;
  /** performance.now() when its channel closed. */
  now: number;
}

/** What becomes of one invocation its worker's death ends. */
export type DeathVerdict =
  /** It was answered already (504 past its deadline): only its slot was left. */
  | { action: 'forget' }
  /** It never started, so never ran: to the front of its lane's queue, with a fresh allowance. */
  | { action: 'requeue' }
  /** A suspect: it runs again, alone, on the solo lane. */
  | { action: 'rerun-alone' }
  /** It answers `error`; with `strike`, it broke the worker, and its version is quarantined. */
  | { action: 'fail'; error: FaasError; strike?: string };

/**
 * Whether what was on the dead worker broke it: then a started invocation there is the culprit.
 * Always on a solo worker. On a shared one, only a single invocation (answered or not: its slot
 * was taken) whose worker was stopped for a blocked loop, or ran out of memory having never run
 * another version: alone in flight is alone in the heap only then (the warm contexts of functions
 * that ran there before keep their memory — a global array that grows; an evicted context too,
 * until the collector finds it — and the one allocation that meets the limit need not be the one
 * that took it). A blocked loop is the invocation's own (finished invocations' timers are
 * cleared). A crash or a kill from outside blames no one.
 */
export function brokeItAlone(death: WorkerDeath, jobsOnWorker: number): boolean {
  if (death.solo) return true;
  if (jobsOnWorker !== 1) return false;
  return death.exit === 'timeout' || (death.exit === 'memory' && !death.mixed);
}

/**
 * The verdict on each job that was on a dead worker, in order: never started → queued again;
 * started while the pool closes → 502; started by what broke the worker (brokeItAlone) → the
 * culprit: 502/504 and a strike; started beside others → run again alone as a suspect when it
 * made no effect and has runs left, else 502.
 */
export function deathVerdicts(death: WorkerDeath, jobs: readonly JobFacts[]): DeathVerdict[] {
  const alone = brokeItAlone(death, jobs.length);
  return jobs.map((job) => deathVerdict(death, job, alone));
}

function deathVerdict(death: WorkerDeath, job: JobFacts, alone: boolean): DeathVerdict {
  const { exit, closing } = death;
  if (job.settled) return { action: 'forget' };
  if (!job.started) {
    if (!closing) return { action: 'requeue' };
    return { action: 'fail', error: new ShuttingDownError('the server is shutting down') };
  }
  const diedUnder = () =>
    new WorkerCrashedError(`the worker running '${job.name}' ${DEATHS[exit]}`);
  if (closing) return { action: 'fail', error: diedUnder() };
  if (alone) {
    const strike = exit === 'timeout' ? BLOCKED_LOOP : `its worker ${DEATHS[exit]} (it ran alone)`;
    return { action: 'fail', error: culpritError(job, death), strike };
  }
  // It may have made an effect (or has run again already): never run it again.
  if (job.effects || job.reruns >= MAX_RERUNS) return { action: 'fail', error: diedUnder() };
  return { action: 'rerun-alone' };
}

/** The culprit's answer: 504 when it blocked the worker past its deadline, else 502. */
function culpritError(job: JobFacts, { exit, now }: WorkerDeath): FaasError {
  if (exit === 'timeout' && now > job.execDeadline - OVERDUE_MARGIN_MS) {
    return new FunctionTimeoutError(`${timeoutMessage(job)}: ${BLOCKED_LOOP}${QUARANTINED}`);
  }
  return new WorkerCrashedError(
    `function '${job.name}' could not finish: its worker ${DEATHS[exit]} while running it alone${QUARANTINED}`,
  );
}

/** What to do with a worker's answer to a job (its `done`). */
export interface AnswerVerdict {
  /** The watchdog stopped this job's own loop: quarantine its version for this reason. */
  strike?: string;
  /** A quarantined job ran without breaking its worker: one clean run toward lifting it. */
  clean: boolean;
  /** Another function held the loop past its deadline: run it again (on its lane: shared, mostly). */
  rerun: boolean;
  /** The outcome to answer with, when it does not run again. */
  outcome: string;
}

/**
 * The verdict on a worker's answer. `blk`: the job's own synchronous loop held the worker for its
 * whole timeout (struck). `by`: its deadline passed while function `by` held the loop, so the
 * timeout is not its own: it runs again on a shared worker when it made no effect and has runs
 * left, else its 504 names the blocker. An answer to a job answered already changes nothing.
 */
export function answerVerdict(
  job: JobFacts & Pick<Job, 'lane'>,
  answer: Pick<DoneMessage, 'r' | 'blk' | 'by'>,
): AnswerVerdict {
  const strike = answer.blk
    ? 'it blocked its worker with a synchronous loop past its timeout'
    : undefined;
  const clean = !answer.blk && job.lane === 'quarantined';
  const blocked = answer.by !== undefined && answer.r.startsWith(Outcome.timeout) && !job.settled;
  if (!blocked) return { strike, clean, rerun: false, outcome: answer.r };
  if (!job.effects && job.reruns < MAX_RERUNS) {
    return { strike, clean, rerun: true, outcome: answer.r };
  }
  const outcome =
    `${Outcome.timeout}function '${job.name}' could not finish within its ${job.timeoutMs} ` +
    `ms timeout: its worker was blocked by function '${answer.by}'`;
  return { strike, clean, rerun: false, outcome };
}
