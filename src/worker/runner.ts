/**
 * The program each pool worker runs (forked by sandbox-pool.ts in place of safeify's own
 * runner). It replaces safeify's runner for three reasons:
 * - warm sandboxes: safeify builds a new vm2 context for every script (~2 ms); here each function
 *   version is compiled once into its own context and kept in an LRU, so module-level state lives
 *   on between calls of one version and is never shared between two functions;
 * - one timeout for sync and async code: vm2 stops synchronous code; a promise that never settles
 *   is answered here at the deadline; only a blocked event loop (an endless microtask chain) is
 *   left to the pool, which kills the worker;
 * - no re-runs: every invocation is announced (`start`, flushed to the pipe) before its code
 *   runs, so after a kill the pool knows which invocations may have run.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import vm from 'node:vm';
import v8 from 'node:v8';
import { VM, VMScript } from 'vm2';
import { ENVELOPE_SOURCE } from './envelope';
import { GLOBALS_SOURCE } from './globals';
import type { AttachServices, HostRequest, InstallGlobals } from './globals';
import { createHostRequests } from './host-requests';
import { hostCall } from './host-bridge';
import { readSandboxFile } from './sandbox-source';
import { HEARTBEAT_MS, Outcome } from '../pool/wire';
import type { DoneMessage, PoolMessage, RunMessage, WorkerMessage } from '../pool/wire';

/** Options arrive as argv[2] (JSON): the worker starts with an empty environment. */
interface RunnerOptions {
  isolation: 'warm' | 'fresh';
  warmContexts: number;
  maxResultBytes: number;
  maxLogBytes: number;
  maxTimers: number;
}

const options: RunnerOptions = {
  isolation: 'warm',
  warmContexts: 1000,
  maxResultBytes: 6 * 1024 * 1024,
  maxLogBytes: 64 * 1024,
  maxTimers: 1000,
  ...(JSON.parse(process.argv[2] ?? '{}') as Partial<RunnerOptions>),
};

/** One invocation in flight; the AsyncLocalStorage store, so console and timers find their owner. */
interface Invocation {
  id: number;
  /** Its function's name (to name it when it holds the event loop; see `blocks`). */
  fn: string;
  done: boolean;
  logs: string[];
  logBytes: number;
  truncated: boolean;
  timers: Map<number, NodeJS.Timeout>;
  /** Its AsyncLocalStorage store (see `als`). */
  token: object;
}

type Invoke = (eventJson: string | undefined, contextJson: string) => unknown;

/** A compiled function version: its own vm2 context and the envelope's invoke function. */
interface Sandbox {
  invoke?: Invoke;
  /** The file's exported config as JSON text, when it exports one. */
  config?: string;
  /** Why the version yields no function (an Outcome.compile payload), when it does not. */
  compileError?: string;
}

/** A version this worker holds: its source, and in warm mode its sandbox once compiled. */
interface Version {
  source: string;
  /** The file name in stacks and errors, e.g. `a/b.ts`. */
  file: string;
  sandbox?: Sandbox;
}

/**
 * The AsyncLocalStorage store is a token, never the Invocation: Node writes the store onto every
 * promise created under it (a symbol-keyed own property, `Symbol(kResourceStore)`), promises of
 * function code included, where `Object.getOwnPropertySymbols` finds it. A host object there is a
 * sandbox escape (its constructor.constructor is the host's Function). A frozen null-prototype
 * token leads nowhere, and one forged by function code finds no invocation.
 */
const als = new AsyncLocalStorage<object>();
const invocations = new WeakMap<object, Invocation>();
function currentInvocation(): Invocation | undefined {
  const token = als.getStore();
  return token === undefined ? undefined : invocations.get(token);
}
/** Least recently used first (a Map keeps insertion order; a hit re-inserts). */
const versions = new Map<string, Version>();
const evicted: string[] = [];
const envelopeScript = new VMScript(ENVELOPE_SOURCE, 'faas-envelope.js');
const globalsScript = new VMScript(GLOBALS_SOURCE, 'faas-globals.js');
/**
 * The sandbox's side of hostRequest: a sandbox function, so that a refused call throws the
 * sandbox's own Error (host-requests.ts answers why as a string; no host error object crosses).
 */
const requestScript = new VMScript(readSandboxFile('request.js'), 'faas-request.js');
const hostRequests = createHostRequests({
  current: currentInvocation,
  post,
  within: (token, fn) => als.run(token, fn),
});
let nextTimerId = 1;

/**
 * A stretch of time one invocation held this worker's event loop: a synchronous part longer than
 * BLOCK_MS (its start, or a timer callback), or a loop the watchdog stopped. A neighbour whose
 * deadline fell inside it did not get its time: its timeout names the blocker (`by`), and the
 * pool runs it again when that cannot matter (docs/spec.md §3). The newest few are kept.
 */
interface Block {
  id: number;
  fn: string;
  /** Date.now() when it began and ended. */
  from: number;
  to: number;
}
const BLOCK_MS = 50;
const MAX_BLOCKS = 8;
const blocks: Block[] = [];

function noteBlock(inv: Pick<Invocation, 'id' | 'fn'>, from: number, to = Date.now()): void {
  if (to - from <= BLOCK_MS) return;
  blocks.push({ id: inv.id, fn: inv.fn, from, to });
  if (blocks.length > MAX_BLOCKS) blocks.shift();
}

/** Another invocation's block that held the loop when `deadline` (Date.now() ms) passed. */
function blockAt(inv: Invocation, deadline: number): Block | undefined {
  for (let i = blocks.length - 1; i >= 0; i--) {
    const block = blocks[i];
    if (block.id !== inv.id && block.from <= deadline && deadline <= block.to) return block;
  }
  return undefined;
}

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

function hostLog(level: string, text: string): void {
  const inv = currentInvocation();
  if (!inv || inv.done || inv.truncated) return;
  const line = `${String(level)}\t${String(text)}`;
  if (inv.logBytes + line.length > options.maxLogBytes) {
    inv.truncated = true;
    inv.logs.push(`warn\t[console output truncated at ${options.maxLogBytes} bytes]`);
    return;
  }
  inv.logBytes += line.length;
  inv.logs.push(line);
}

/** A timer of the current invocation (an interval when `repeat` is true); cleared when it ends. */
function hostSetTimer(callback: () => void, ms: number, repeat?: boolean): number {
  const inv = currentInvocation();
  if (!inv || inv.done) return 0;
  if (inv.timers.size >= options.maxTimers) {
    throw new RangeError(`too many pending timers (at most ${options.maxTimers} per invocation)`);
  }
  const id = nextTimerId++;
  const delay = Number.isFinite(ms) ? Math.min(Math.max(0, ms), 2 ** 31 - 1) : 0;
  const interval = repeat === true;
  const fire = () => {
    if (!interval) inv.timers.delete(id);
    if (inv.done) return;
    const from = Date.now();
    try {
      callback();
    } catch {
      // The envelope catches the callback's own errors; this is a stack overflow or the like.
    }
    noteBlock(inv, from);
  };
  inv.timers.set(id, interval ? setInterval(fire, delay) : setTimeout(fire, delay));
  return id;
}

function hostClearTimer(id: number): void {
  const inv = currentInvocation();
  const timer = inv?.timers.get(id);
  if (inv && timer) {
    clearTimeout(timer);
    inv.timers.delete(id);
  }
}

function compileErrorPayload(err: unknown, what = 'the file does not compile'): string {
  let message: string;
  let stack = '';
  try {
    const { name, message: text, stack: trace } = err as Record<string, unknown>;
    message = name !== undefined ? `${String(name)}: ${String(text)}` : String(err);
    stack = String(trace);
  } catch {
    message = 'a value that cannot be read';
  }
  const match = /:(\d+)(?::(\d+))?\)?\s*$/m.exec(stack);
  return JSON.stringify({
    message: `${what}: ${message}`,
    line: match ? Number(match[1]) : undefined,
    column: match?.[2] ? Number(match[2]) : undefined,
  });
}

/** A new vm2 context with our envelope and globals in it, no function code yet. */
interface Shell {
  sandboxVm: VM;
  load: (completion: unknown, attachServices: AttachServices) => unknown;
  attachServices: AttachServices;
}

/**
 * Whether the worker is in its own setup code (a shell) rather than in function code: a watchdog
 * that fires then stopped no loop of the function's (the worker is starved of CPU), so the
 * invocation times out without being named the blocker.
 */
let inOwnCode = false;

function makeShell(): Shell {
  inOwnCode = true;
  try {
    const sandboxVm = new VM({ eval: false, wasm: false, allowAsync: true });
    const setup = sandboxVm.run(envelopeScript) as (...host: unknown[]) => unknown;
    const load = setup(hostLog, hostSetTimer, hostClearTimer) as Shell['load'];
    // hostRequest reaches the sandbox through a sandbox function (requestScript), which throws
    // the sandbox's own Error when a call is refused.
    const request = (sandboxVm.run(requestScript) as (host: unknown) => HostRequest)(
      hostRequests.hostRequest,
    );
    const attachServices = (sandboxVm.run(globalsScript) as InstallGlobals)(hostCall, request);
    return { sandboxVm, load, attachServices };
  } finally {
    inOwnCode = false;
  }
}

/**
 * One shell is kept ready (made at start, before `ready`, and again after each use, between
 * invocations): a cold start pays only for the function's own file, and a fresh process's first
 * context (the slowest: ~100–300 ms while V8 warms up) is never made inside an invocation.
 */
let spareShell: Shell | undefined;
/** Stands for the worker itself in `blocks`, when its own setup holds the loop. */
const SETUP = { id: -1, fn: '(sandbox setup)' };
let spareScheduled = false;

function takeShell(): Shell {
  const shell = spareShell ?? makeShell();
  spareShell = undefined;
  if (!spareScheduled) {
    spareScheduled = true;
    setImmediate(() => {
      spareScheduled = false;
      const from = Date.now();
      spareShell ??= makeShell();
      // Our own work between invocations: a neighbour whose deadline passed meanwhile gets its time back.
      noteBlock(SETUP, from);
    });
  }
  return shell;
}

/** Builds a context for one version and runs the file in it (under the batch's watchdog). */
function createSandbox(file: string, source: string): Sandbox {
  const { sandboxVm, load, attachServices } = takeShell();
  let script: VMScript;
  try {
    script = new VMScript(source, file).compile();
  } catch (err) {
    return { compileError: compileErrorPayload(err) };
  }
  let completion: unknown;
  try {
    completion = sandboxVm.run(script);
  } catch (err) {
    // The file's top level threw. (The watchdog's termination cannot be caught here: it
    // unwinds to runBatch.)
    return { compileError: compileErrorPayload(err, 'the file threw while loading') };
  }
  const loaded = load(completion, attachServices);
  if (typeof loaded === 'string') return { compileError: JSON.stringify({ message: loaded }) };
  const [invoke, config] = loaded as [Invoke, string | undefined];
  return { invoke, config };
}

/**
 * The warm set is sized by memory, not only by WARM_CONTEXTS: a context costs ~250–
 * 300 KB of heap (a V8 context, vm2's bridge, our envelope and globals: see `contextBytes`), so
 * the worker keeps as many as fit in WARM_HEAP_SHARE of its heap limit (WORKER_MEMORY_MB), at
 * most WARM_CONTEXTS (`warmCap`). Past PRESSURE_SHARE of the heap in use (functions' own data
 * grows, or the estimate was low) the limit shrinks by a tenth, then holds for a while (`calm`
 * cold starts) and grows back by one per cold start without pressure. A shrink, not "evict until
 * the heap is under": the heap in use counts garbage until the next collection, so that loop
 * emptied the cache on every cold start (what made 256 functions round-robin cost ~7 ms of a
 * worker per call); shrinks in a row, before a collection shows their effect, did the same.
 */
// Shares of V8's heap_size_limit, which is WORKER_MEMORY_MB of old space plus the young generation.
const WARM_HEAP_SHARE = 0.3;
const PRESSURE_SHARE = 0.6;
// The heap is read at every cold start and every this many warm calls (reading it costs ~2 µs).
const PRESSURE_EVERY = 64;
let warmCap = options.warmContexts;
let warmLimit = warmCap;
let callsSinceCheck = 0;
let calm = 0;

/**
 * The heap one more warm version takes, measured once at start (after the first shell, which
 * also pays for compiling our own scripts): shells with a small function loaded in each, between two full collections (V8's `gc`, borrowed for this and put away before
 * any sandbox exists, so no function ever sees it). At least 64 KB, at most 4 MB.
 */
function contextBytes(): number {
  let gc: (() => void) | undefined;
  try {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  } catch {
    gc = undefined;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  const probes = 3;
  const kept: Shell[] = [];
  gc?.();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < probes; i++) {
    const shell = makeShell();
    const completion = shell.sandboxVm.run(
      new VMScript(`let n = 0; module.exports = (event) => ({ n: ++n, at: ${i} });`, 'probe.js'),
    );
    shell.load(completion, shell.attachServices);
    kept.push(shell);
  }
  gc?.();
  const bytes = (process.memoryUsage().heapUsed - before) / probes;
  kept.length = 0;
  return Math.min(4 * 2 ** 20, Math.max(64 * 1024, bytes));
}

/** Sets `warmLimit` from the heap limit and the measured cost of a context. */
function sizeWarmSet(): void {
  if (options.isolation !== 'warm') return;
  const budget = v8.getHeapStatistics().heap_size_limit * WARM_HEAP_SHARE;
  warmCap = Math.max(1, Math.min(options.warmContexts, Math.floor(budget / contextBytes())));
  warmLimit = warmCap;
}

/**
 * Keeps `key` as the most recent version, then evicts down to the warm limit. The heap is checked
 * when a context was just made (`cold`) and every PRESSURE_EVERY calls.
 *
 * The victim is a random one of the least recently used three quarters, not the least recently
 * used itself: with more versions called in turn than fit, strict LRU evicts each version just
 * before its next call and no call is ever warm (the cliff), while this keeps a share of them
 * warm (simulated: 400 versions in turn over 360 places, 75 % warm calls against 0 %; 500, 40 %)
 * and costs a Zipf-shaped workload 1–3 points of hits.
 */
function remember(key: string, version: Version, cold: boolean): void {
  versions.delete(key);
  versions.set(key, version);
  if (cold || ++callsSinceCheck >= PRESSURE_EVERY) {
    callsSinceCheck = 0;
    if (calm > 0) calm -= cold ? 1 : 0;
    else if (underPressure()) {
      warmLimit = Math.max(1, Math.floor(Math.min(warmLimit, versions.size) * 0.9));
      calm = Math.max(8, warmLimit >> 3);
    } else if (cold && warmLimit < warmCap) warmLimit++;
  }
  while (versions.size > warmLimit) {
    const keys = versions.keys();
    let skip = Math.floor(Math.random() * Math.max(1, Math.floor((versions.size - 1) * 0.75)));
    while (skip-- > 0) keys.next();
    const victim = keys.next().value as string;
    if (victim === key) break;
    versions.delete(victim);
    evicted.push(victim);
  }
}

function underPressure(): boolean {
  const { used_heap_size, heap_size_limit } = v8.getHeapStatistics();
  return used_heap_size > heap_size_limit * PRESSURE_SHARE;
}

/** Sends a batch of messages as one IPC message: one write instead of one per message. */
function send(messages: WorkerMessage[], callback?: () => void): void {
  if (!process.connected) return;
  process.send?.(messages, undefined, {}, callback);
}

const outbox: WorkerMessage[] = [];
let flushScheduled = false;

/**
 * Queues a message for the next flush, which runs after the current macrotask and every
 * microtask it left behind (setImmediate). So a function that returns but leaves an endless
 * microtask chain never gets its `done` out: it times out, and its worker is replaced, instead
 * of answering while the worker hangs.
 */
function post(message: WorkerMessage): void {
  outbox.push(message);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(() => {
    flushScheduled = false;
    if (evicted.length > 0) outbox.push({ t: 'evicted', v: evicted.splice(0) });
    send(outbox.splice(0));
  });
}

/** The outcome itself, or INVALID_RESULT when it is over MAX_RESULT_BYTES. */
function capped(r: string): string {
  // A UTF-16 length is at most the UTF-8 byte length, and at least a third of it.
  if (r.length * 3 <= options.maxResultBytes) return r;
  const bytes = Buffer.byteLength(r) - 1;
  if (bytes <= options.maxResultBytes) return r;
  return `${Outcome.invalid}the result is ${bytes} bytes; at most ${options.maxResultBytes} are allowed (MAX_RESULT_BYTES)`;
}

/**
 * Answers an invocation once. `blame` marks a timeout: `blk` when this invocation blocked the
 * worker (the watchdog stopped it), `by` when another invocation's block made it late.
 */
function finish(
  inv: Invocation,
  r: string,
  cold: boolean,
  startedAt: number,
  blame?: { blk?: boolean; by?: string },
): void {
  if (inv.done) return;
  inv.done = true;
  invocations.delete(inv.token);
  for (const timer of inv.timers.values()) clearTimeout(timer);
  inv.timers.clear();
  const message: DoneMessage = {
    t: 'done',
    id: inv.id,
    r: capped(r),
    cold,
    ms: performance.now() - startedAt,
  };
  if (inv.logs.length > 0) message.logs = inv.logs;
  if (blame?.blk) message.blk = true;
  if (blame?.by !== undefined) message.by = blame.by;
  post(message);
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
function runBatch(jobs: RunMessage[], from = 0): void {
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
      if (isTimeoutError(err) && inOwnCode) {
        // Stopped in our own setup, not in function code: a CPU-starved worker, no culprit.
        inOwnCode = false;
        finish(inv, `${timedOut(job)} (its sandbox could not be set up in time)`, cold, startedAt);
      } else if (isTimeoutError(err)) {
        // It held the loop from its start until the watchdog stopped it: it names itself.
        noteBlock(inv, began);
        finish(inv, timedOut(job), cold, startedAt, { blk: true });
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
  const inv: Invocation = {
    id: job.id,
    fn: job.fn,
    done: false,
    logs: [],
    logBytes: 0,
    truncated: false,
    timers: new Map(),
    token: Object.freeze(Object.create(null) as object),
  };
  const began = Date.now();
  return { job, inv, startedAt: performance.now(), began, deadline: began + job.ms, cold: false };
}

/** A check's outcome: the exported config as JSON (`null` for none), or why the file fails to load. */
function loadOutcome(compileError: string | undefined, config: string | undefined): string {
  return compileError === undefined
    ? Outcome.json + (config ?? 'null')
    : Outcome.compile + compileError;
}

/** The synchronous part of one invocation; an async result is followed until its deadline. */
function runSync(running: Running): void {
  const { job, inv, startedAt } = running;
  invocations.set(inv.token, inv);
  als.run(inv.token, () => {
    const version = versions.get(job.v);
    if (!version) return post({ t: 'miss', id: job.id });
    if (job.check && !job.keep) {
      // A deploy's check: a throwaway context, so the deployed version starts from a clean one.
      const { compileError, config } = createSandbox(version.file, version.source);
      return finish(inv, loadOutcome(compileError, config), true, startedAt);
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
    if (job.check)
      return finish(inv, loadOutcome(sandbox.compileError, sandbox.config), cold, startedAt);
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

function onRuns(jobs: RunMessage[]): void {
  const runnable: RunMessage[] = [];
  for (const job of jobs) {
    if (job?.t !== 'run') continue;
    if (job.src !== undefined && !versions.has(job.v)) {
      remember(job.v, { source: job.src, file: job.file ?? `${job.fn}.js` }, true);
    }
    if (versions.has(job.v)) runnable.push(job);
    else post({ t: 'miss', id: job.id });
  }
  if (runnable.length === 0) return;
  // Run only once the pool surely has the `start` notes (see StartMessage): the callback fires
  // when the write has reached the pipe.
  send(
    runnable.map((job) => ({ t: 'start', id: job.id })),
    () => runBatch(runnable),
  );
}

process.on('message', (batch: PoolMessage[]) => {
  if (!Array.isArray(batch)) return;
  const runs: RunMessage[] = [];
  for (const message of batch) {
    if (message?.t === 'reply') hostRequests.deliver(message);
    else runs.push(message);
  }
  if (runs.length > 0) onRuns(runs);
});
process.on('disconnect', () => process.exit(0));
// A signal for the whole process group (Ctrl-C, `kill -- -pgid`, systemd's default stop) is the
// server's to handle: it drains, then ends its workers itself (SIGKILL, or closing the channel).
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
spareShell = makeShell();
sizeWarmSet();
send([{ t: 'ready' }]);
// The pool reads silence past the timeout as a blocked event loop, and kills the worker.
setInterval(() => send([{ t: 'beat' }]), HEARTBEAT_MS).unref();
