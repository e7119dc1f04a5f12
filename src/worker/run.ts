/**
 * Running invocations: the synchronous part of a batch under as few watchdogs as possible
 * (`runBatch`), then each invocation's promise followed until its deadline (`runSync`). A cold
 * start compiles the version's sandbox first (shells.ts) and keeps it in the warm set
 * (warm-set.ts); a deploy's check only loads the file and answers its config.
 */
import vm from 'node:vm';
import { blockAt, noteBlock } from './blocks';
import { finish, newInvocation, runAs } from './invocations';
import type { Invocation } from './invocations';
import { options } from './options';
import { post } from './outbox';
import { createSandbox, stoppedInSetup } from './shells';
import type { Invoke, Sandbox } from './shells';
import { remember, versionOf } from './warm-set';
import { Outcome } from '../pool/wire';
import type { RunMessage } from '../pool/wire';

// vm2's own technique (lib/vm.js doWithTimeout): run a host closure as a script with a timeout,
// so a synchronous loop anywhere inside it is interrupted by V8's watchdog.
const timeoutContext = vm.createContext({ fn: null as null | (() => unknown) });
const timeoutScript = new vm.Script('fn()', { filename: 'faas-timeout.js' });
function withTimeout<T>(fn: () => T, ms: number): T {
  timeoutContext.fn = fn;
  try {
    return timeoutScript.runInContext(timeoutContext, { timeout: Math.max(1, ms) }) as T;
  } finally {
    timeoutContext.fn = null;
  }
}

// Duck-typed: the watchdog's error is not an instance of this realm's Error.
function isTimeoutError(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return (
    code === 'ERR_SCRIPT_EXECUTION_TIMEOUT' ||
    (typeof message === 'string' && message.startsWith('Script execution timed out'))
  );
}

/** A watchdog covers several invocations' synchronous parts while they start within this. */
const SLICE_MS = 5;

function timedOut(job: RunMessage): string {
  return `${Outcome.timeout}function '${job.fn}' exceeded its ${job.ms} ms timeout`;
}

/**
 * Runs the synchronous part of a batch of invocations under as few watchdogs as possible. Node's
 * vm timeout starts (and joins) a watchdog thread for every call, ~70–120 µs, more than a warm
 * invocation itself; so one watchdog covers every invocation that starts within SLICE_MS of it,
 * and runs for the timeout plus SLICE_MS, so none is stopped before its own deadline and a loop
 * is stopped at most SLICE_MS after it. A stopped loop ends its own invocation (504); the rest
 * of the batch goes on under a new watchdog, after a turn of the event loop.
 */
export function runBatch(jobs: RunMessage[], from = 0): void {
  let next = from;
  const sliceStart = Date.now();
  let current: Running | undefined;
  // One watchdog covers invocations of one timeout only: a 200 ms function's loop is stopped at
  // its own deadline, not a neighbour's 60 s one.
  const ms = jobs[from].ms;
  try {
    withTimeout(() => {
      while (next < jobs.length && jobs[next].ms === ms) {
        current = begin(jobs[next++]);
        const from = Date.now();
        runSync(current);
        noteBlock(current.inv, from);
        current = undefined;
        if (Date.now() - sliceStart >= SLICE_MS) return;
      }
    }, ms + SLICE_MS);
  } catch (err) {
    // Only the watchdog and host-side failures land here: the envelope catches the function's
    // own errors. A watchdog that fires between two invocations stopped none of them.
    if (current) {
      const { inv, job, cold, startedAt, began } = current;
      if (isTimeoutError(err) && stoppedInSetup()) {
        // Stopped in our own setup, not in function code: a CPU-starved worker, no culprit.
        finish(inv, `${timedOut(job)} (its sandbox could not be set up in time)`, cold, startedAt);
      } else if (isTimeoutError(err)) {
        // It held the loop from its start until the watchdog stopped it: it names itself. A
        // check stopped there is a version whose top level never finishes: it does not load.
        noteBlock(inv, began);
        const outcome = job.check ? Outcome.compile + slowStart(undefined, job.ms) : timedOut(job);
        finish(inv, outcome, cold, startedAt, { blk: true });
      } else {
        finish(inv, `${Outcome.invalid}the sandbox failed: ${String(err)}`, cold, startedAt);
      }
    } else if (!isTimeoutError(err)) {
      throw err;
    }
  }
  // The rest after a turn of the event loop: heartbeats and answers go out meanwhile, so a
  // worker busy with long synchronous parts is never mistaken for a blocked one.
  if (next < jobs.length) setImmediate(() => runBatch(jobs, next));
}

/** An invocation whose synchronous part is running. */
interface Running {
  job: RunMessage;
  inv: Invocation;
  startedAt: number;
  /** Date.now() when it began, and when its time is up (later for a cold start). */
  began: number;
  deadline: number;
  cold: boolean;
}

function begin(job: RunMessage): Running {
  const inv = newInvocation(job);
  const began = Date.now();
  return { job, inv, startedAt: performance.now(), began, deadline: began + job.ms, cold: false };
}

/**
 * A check's outcome: the exported config as JSON (`null` for none), or why the file fails to
 * load, which includes top-level code that ran longer than MAX_STARTUP_MS (docs/spec.md §2).
 */
function loadOutcome(sandbox: Sandbox): string {
  const { compileError, config, startupMs = 0 } = sandbox;
  if (compileError !== undefined) return Outcome.compile + compileError;
  if (startupMs > options.maxStartupMs) return Outcome.compile + slowStart(Math.round(startupMs));
  return Outcome.json + (config ?? 'null');
}

/**
 * The compile error of a version whose top-level code ran too long when it loaded: `ms` it ran
 * for, or `stoppedAt` ms when the watchdog stopped it.
 */
function slowStart(ms: number | undefined, stoppedAt?: number): string {
  const ran = ms === undefined ? `did not finish within ${stoppedAt} ms` : `ran for ${ms} ms`;
  return JSON.stringify({
    message:
      `the file's top-level code ${ran} when it loaded; at most ${options.maxStartupMs} ms ` +
      '(MAX_STARTUP_MS): do slow work inside the function, once, on its first call',
  });
}

/** The synchronous part of one invocation; an async result is followed until its deadline. */
function runSync(running: Running): void {
  const { job, inv, startedAt } = running;
  runAs(inv, () => {
    const version = versionOf(job.v);
    if (!version) return post({ t: 'miss', id: job.id });
    if (job.check && !job.keep) {
      // A deploy's check: a throwaway context, so the deployed version starts from a clean one.
      return finish(inv, loadOutcome(createSandbox(version.file, version.source)), true, startedAt);
    }
    let sandbox = version.sandbox;
    if (!sandbox) {
      running.cold = true;
      sandbox = createSandbox(version.file, version.source);
      if (options.isolation === 'warm') version.sandbox = sandbox;
      // A cold start's compile is not the invocation's time (as Lambda's init is not): its
      // deadline starts now. The watchdog bounds the compile and the synchronous part together.
      running.deadline = Date.now() + job.ms;
    }
    remember(job.v, version, running.cold);
    const { cold, deadline } = running;
    if (job.check) return finish(inv, loadOutcome(sandbox), cold, startedAt);
    if (sandbox.compileError !== undefined) {
      return finish(inv, Outcome.compile + sandbox.compileError, cold, startedAt);
    }
    let context = JSON.stringify({
      requestId: job.rid,
      functionName: job.fn,
      version: job.v,
      deadline,
      timeoutMs: job.ms,
      attempt: job.n ?? 1,
    });
    // env and secrets, for functions that have them: the server's JSON object, spliced in.
    if (job.x !== undefined && job.x.length > 2)
      context = `${context.slice(0, -1)},${job.x.slice(1)}`;
    const result = (sandbox.invoke as Invoke)(job.ev, context);
    if (typeof result === 'string') return finish(inv, result, cold, startedAt);
    // A promise from the sandbox: answer at settlement or at the deadline, whichever is first.
    const noOutcome = `${Outcome.invalid}the sandbox returned no outcome`;
    // Its deadline, moved once when another invocation held the loop inside its time: it is not
    // charged for that (docs/spec.md §3). It gets the time it lost back, counted from now. Should another
    // block eat that too, it times out naming the blocker (the pool runs it again when it made no
    // effect, else answers 504 with the name).
    let until = deadline;
    let timer: NodeJS.Timeout;
    /** Whether its time is up (after moving its deadline, if a block excuses it). */
    const timeUp = (): boolean => {
      const now = Date.now();
      if (now < until) return false;
      const block = until === deadline ? blockAt(inv, deadline) : undefined;
      const lost = block ? Math.min(block.to, deadline) - Math.max(block.from, running.began) : 0;
      if (lost <= 0) return true;
      until = now + lost;
      return false;
    };
    const expire = () => {
      if (!timeUp()) {
        timer = setTimeout(expire, until - Date.now());
        return;
      }
      finish(inv, timedOut(job), cold, startedAt, { by: blockAt(inv, until)?.fn });
    };
    timer = setTimeout(expire, deadline - Date.now());
    // Settled after its time was up (its timer was late: the loop was busy), it timed out all the
    // same: a late settlement (say, of a service call refused for lack of time) is not an answer.
    Promise.resolve(result).then(
      (value) => {
        clearTimeout(timer);
        if (Date.now() >= until && timeUp()) return expire();
        finish(inv, typeof value === 'string' ? value : noOutcome, cold, startedAt);
      },
      () => {
        clearTimeout(timer);
        if (Date.now() >= until && timeUp()) return expire();
        finish(inv, noOutcome, cold, startedAt);
      },
    );
  });
}
