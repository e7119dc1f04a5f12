/**
 * The messages between the pool (transport.ts) and its worker processes (worker/runner.ts),
 * sent over the child-process IPC channel with `serialization: 'advanced'` (structured clone:
 * strings cross as they are, with no JSON escaping on the way). Each side sends arrays of
 * messages, flushed once per event-loop turn, so a busy server makes one pipe write per worker
 * per turn rather than one per message.
 */

/** Pool → worker: run one invocation. */
export interface RunMessage {
  t: 'run';
  id: number;
  /** Function name, e.g. `a/b`. */
  fn: string;
  /** Content hash of the source; the warm-context key. */
  v: string;
  /** The source, only when the pool does not know the worker to hold this version. */
  src?: string;
  /** The event as JSON text; parsed inside the sandbox. */
  ev: string;
  rid: string;
  ms: number;
  /** More of `context` as JSON text (`env`, `secrets`), for functions that have them. */
  x?: string;
  /** The file name for stacks and errors (e.g. `a/b.ts`), sent with `src`; default `<fn>.js`. */
  file?: string;
  /**
   * Only load the file and answer its exported config as JSON (J, `null` for none) or why it
   * does not load (C); call nothing. In a throwaway context (a deploy's check) unless `keep`.
   */
  check?: boolean;
  /** With `check`: keep the loaded context as this worker's warm one (a first load). */
  keep?: boolean;
  /** `context.attempt` (docs/spec.md §9), when not 1. */
  n?: number;
}

/**
 * Pool → worker: the answer to a host call (CallMessage `c`): `r` is the result as JSON text, or,
 * when `ok` is false, `{ name, message, code? }` JSON for the error the sandbox throws.
 */
export interface ReplyMessage {
  t: 'reply';
  c: number;
  ok: boolean;
  r: string;
}

/** What the pool sends a worker. */
export type PoolMessage = RunMessage | ReplyMessage;

/** Worker → pool: the worker is up. */
export interface ReadyMessage {
  t: 'ready';
}

/**
 * Worker → pool: invocation `id` is about to run. It is sent, and flushed to the pipe, before any
 * user code of that invocation runs, so the pool knows after a kill which invocations may have run
 * (answered 502) and which never started (safe to run on another worker).
 */
export interface StartMessage {
  t: 'start';
  id: number;
}

/** Worker → pool: the worker does not hold version `v` and needs the source (`src`) again. */
export interface MissMessage {
  t: 'miss';
  id: number;
}

/** Worker → pool: invocation `id` settled. */
export interface DoneMessage {
  t: 'done';
  id: number;
  /** The outcome, encoded as one tagged string (see Outcome). */
  r: string;
  /** Whether this call compiled the version (a cold start in this worker). */
  cold: boolean;
  /** Time spent in the worker, ms. */
  ms: number;
  /** Captured console lines, each `level\tmessage`. */
  logs?: string[];
  /** This invocation blocked the worker past its timeout: the watchdog stopped its loop. */
  blk?: boolean;
  /**
   * A timeout (T) that is not this invocation's doing: its deadline passed while an invocation
   * of function `by` held the worker's event loop (a long synchronous part or a stopped loop).
   */
  by?: string;
}

/** Worker → pool: versions this worker dropped from its cache (their source must be resent). */
export interface EvictedMessage {
  t: 'evicted';
  v: string[];
}

/**
 * Worker → pool: invocation `id` calls a service of the server (docs/spec.md §8: `kv.get`, `fetch`, …).
 * `c` numbers the call in this worker; `a` is its arguments as JSON text. The pool attributes the
 * call to the invocation, and so to its function, itself: nothing here names a function.
 */
export interface CallMessage {
  t: 'call';
  id: number;
  c: number;
  op: string;
  a: string;
}

/** Worker → pool, every HEARTBEAT_MS: its event loop turns (silence past the timeout = blocked). */
export interface BeatMessage {
  t: 'beat';
}

export const HEARTBEAT_MS = 50;

export type WorkerMessage =
  | ReadyMessage
  | StartMessage
  | MissMessage
  | DoneMessage
  | EvictedMessage
  | BeatMessage
  | CallMessage;

/**
 * The first character of `DoneMessage.r` says what the rest is. The sandbox-side envelope
 * (worker/sandbox/envelope.js) produces U, S, J, R, E and I; the runner adds T and C.
 */
export const Outcome = {
  /** the function returned undefined */
  undefined: 'U',
  /** a string: the rest is the string */
  string: 'S',
  /** any other JSON value: the rest is its JSON text */
  json: 'J',
  /** a `{ statusCode, headers?, body?, isBase64Encoded? }` shape: the rest is ResponseShape JSON */
  response: 'R',
  /** the function threw or rejected: the rest is `{ name, message, stack }` JSON */
  error: 'E',
  /** the result cannot be sent: the rest is the reason */
  invalid: 'I',
  /** the invocation ran past its deadline: the rest is the message */
  timeout: 'T',
  /** the source did not compile or yield a function: the rest is `{ message, line, column }` JSON */
  compile: 'C',
} as const;

/** What an `R` outcome carries: `b` is the body as text (JSON text when `j`), `e` base64. */
export interface ResponseShape {
  s: number;
  h?: unknown;
  b?: string;
  j?: boolean;
  e?: boolean;
}

/** Whether a value is a well-formed worker message (a worker that escaped can send anything). */
export function isWorkerMessage(value: unknown): value is WorkerMessage {
  if (value === null || typeof value !== 'object') return false;
  const m = value as Record<string, unknown>;
  switch (m.t) {
    case 'start':
    case 'miss':
      return typeof m.id === 'number';
    case 'done':
      return (
        typeof m.id === 'number' &&
        typeof m.r === 'string' &&
        typeof m.cold === 'boolean' &&
        typeof m.ms === 'number' &&
        (m.logs === undefined ||
          (Array.isArray(m.logs) && m.logs.every((line) => typeof line === 'string'))) &&
        (m.blk === undefined || typeof m.blk === 'boolean') &&
        (m.by === undefined || (typeof m.by === 'string' && m.by.length <= 512))
      );
    case 'evicted':
      return Array.isArray(m.v) && m.v.every((v) => typeof v === 'string');
    case 'call':
      return (
        typeof m.id === 'number' &&
        typeof m.c === 'number' &&
        typeof m.op === 'string' &&
        m.op.length <= 32 &&
        typeof m.a === 'string'
      );
    case 'beat':
      return true;
    default:
      return false;
  }
}
