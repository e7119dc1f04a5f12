/**
 * The invocations in flight, and what the host does on their behalf. Each invocation runs under
 * its own AsyncLocalStorage token (`runAs`), so the host callbacks the envelope holds (`hostLog`,
 * `hostSetTimer`, `hostClearTimer`) and the transport to the server's services (`hostRequests`)
 * find which invocation calls them, however deep in its promises. `finish` answers one, once:
 * its outcome (capped at MAX_RESULT_BYTES), its logs and, for a timeout, whom to blame.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { noteBlock } from './blocks';
import { createHostRequests } from './host-requests';
import { options } from './options';
import { post } from './outbox';
import { Outcome } from '../pool/wire';
import type { DoneMessage, RunMessage } from '../pool/wire';

/** One invocation in flight; the AsyncLocalStorage store, so console and timers find their owner. */
export interface Invocation {
  id: number;
  /** Its function's name (to name it when it holds the event loop; see blocks.ts). */
  fn: string;
  done: boolean;
  logs: string[];
  logBytes: number;
  truncated: boolean;
  timers: Map<number, NodeJS.Timeout>;
  /** Its AsyncLocalStorage store (see `als`). */
  token: object;
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
let nextTimerId = 1;

export function newInvocation(job: RunMessage): Invocation {
  return {
    id: job.id,
    fn: job.fn,
    done: false,
    logs: [],
    logBytes: 0,
    truncated: false,
    timers: new Map(),
    token: Object.freeze(Object.create(null) as object),
  };
}

/** Runs `fn` as `inv`: what it starts (promises, timers, service calls) belongs to `inv`. */
export function runAs(inv: Invocation, fn: () => void): void {
  invocations.set(inv.token, inv);
  als.run(inv.token, fn);
}

/** The transport to the server's services (docs/spec.md §8), for the invocation running now. */
export const hostRequests = createHostRequests({
  current: currentInvocation,
  post,
  within: (token, fn) => als.run(token, fn),
});

export function hostLog(level: string, text: string): void {
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
export function hostSetTimer(callback: () => void, ms: number, repeat?: boolean): number {
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

export function hostClearTimer(id: number): void {
  const inv = currentInvocation();
  const timer = inv?.timers.get(id);
  if (inv && timer) {
    clearTimeout(timer);
    inv.timers.delete(id);
  }
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
export function finish(
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
