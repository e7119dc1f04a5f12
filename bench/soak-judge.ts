/**
 * How the soak judges one call: its answer's class (`200`, `504 FUNCTION_TIMEOUT`, `200
 * WRONG_BODY`, `no answer (EPIPE)`, …) and its verdict against what its kind must get.
 *
 * Under the blast-radius rules (docs/spec.md §3) a healthy call has no collateral allowance: a worker the soak killed, or a
 * neighbour's bomb or loop, must not cost it its answer (the server runs it again). The blame
 * the soak can still name (its own kill, a hostile neighbour's worker death or blocked loop) is
 * kept as a diagnosis of each failure, and `--lenient` accepts it again (the bar before).
 */
import type { Answer } from './soak-http';
import type { WorkerDeath } from './soak-server';
import type { Kind, RequestSpec } from './soak-traffic';

/** A 502 counts as collateral of a worker death only if it arrived this soon after it. */
export const BLAME_WINDOW_MS = 1000;

export interface Sample {
  kind: number;
  n: number;
  rid: string;
  start: number;
  end: number;
  status?: number;
  code?: string;
  message?: string;
  /** The answer's class: `200`, `504 FUNCTION_TIMEOUT`, `no answer (ECONNRESET)`, … */
  cls: string;
  /** `context.attempt` from a healthy 200's body. */
  attempt?: number;
  /** Upload bytes handed to the socket before the call ended. */
  bodySent: number;
}

/** The class of an answer, with every defect the soak can see on its own appended. */
export function classOf(
  kind: Kind,
  spec: RequestSpec,
  answer: Answer,
  rid: string,
  n: number,
  elapsedMs: number,
  timeoutMs: number,
): Omit<Sample, 'kind' | 'n' | 'rid' | 'start' | 'end' | 'bodySent'> {
  if (answer.error !== undefined || answer.status === undefined) {
    return { cls: `no answer (${answer.error ?? 'no status'})` };
  }
  const status = answer.status;
  const body = answer.body ?? '';
  let code: string | undefined;
  let message: string | undefined;
  let attempt: number | undefined;
  if (status >= 400) {
    try {
      const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
      code = typeof parsed.error?.code === 'string' ? parsed.error.code : 'NO_CODE';
      message = typeof parsed.error?.message === 'string' ? parsed.error.message : undefined;
    } catch {
      code = 'NOT_JSON';
    }
  }
  let cls = code ? `${status} ${code}` : String(status);
  if (status === 200 && kind.check) {
    const check = kind.check(body, n);
    attempt = check.attempt;
    if (!check.ok) {
      cls = '200 WRONG_BODY';
      message = body.slice(0, 200);
    }
  }
  // Timeouts and crashes name the function: it must be this request's (no crossed answers).
  if (kind.invokes && (code === 'FUNCTION_TIMEOUT' || code === 'WORKER_CRASHED')) {
    const named = /'([^']+)'/.exec(message ?? '')?.[1];
    const fn = spec.path.split('?')[0].replace(/^\/+|\/+$/g, '');
    if (named !== fn) cls += ' WRONG_FUNCTION';
    // An effectful call its neighbours starved twice (the runner gives lost time back once) is
    // not run again: 504 naming the function that blocked its worker (docs/errors.md "At most once, unless it cannot matter").
    const blocker = /its worker was blocked by function '([^']+)'/.exec(message ?? '')?.[1];
    if (code === 'FUNCTION_TIMEOUT' && named === fn && blocker !== undefined && blocker !== fn) {
      cls = '504 BLOCKED_BY_NEIGHBOUR';
    }
  }
  if (answer.requestId !== rid) cls += ' WRONG_REQUEST_ID';
  // "exceeded its 1000 ms timeout" before 1000 ms have passed since the request was even sent.
  if (code === 'FUNCTION_TIMEOUT' && elapsedMs < timeoutMs * 0.9) cls += ' EARLY';
  // docs/spec.md §3: both come with Retry-After.
  if ((code === 'TOO_MANY_REQUESTS' || code === 'OVERLOADED') && !answer.retryAfter)
    cls += ' NO_RETRY_AFTER';
  return { status, code, message, cls, attempt };
}

export type Verdict =
  | 'expected'
  | 'overloaded'
  | 'killCollateral'
  | 'neighbourCollateral'
  | 'unexpected'
  | 'unanswered';

export const VERDICTS: Verdict[] = [
  'expected',
  'overloaded',
  'killCollateral',
  'neighbourCollateral',
  'unexpected',
  'unanswered',
];

export interface Evidence {
  /** The soak's SIGKILLs. */
  kills: { t: number; pid: number }[];
  /** Every worker exit the server logged (the soak's kills among them). */
  deaths: WorkerDeath[];
  /** Exits the soak did not cause, of the kinds a hostile call causes (memory, timeout, …). */
  hostileDeaths: WorkerDeath[];
  /** Calls that may block or kill their worker (loops, bombs), with their time in flight. */
  blockingCalls: { start: number; end: number }[];
}

/**
 * A 502 WORKER_CRASHED is only right when a worker died while the call was in flight (the
 * server logs the exit at about the time it answers): else it appends ` NO_WORKER_DEATH`.
 */
export function checkCrash(sample: Sample, e: Evidence): void {
  if (sample.cls !== '502 WORKER_CRASHED') return;
  const during = (t: number) => t >= sample.start && t <= sample.end + BLAME_WINDOW_MS;
  if (!e.deaths.some((d) => during(d.t)) && !e.kills.some((k) => during(k.t)))
    sample.cls += ' NO_WORKER_DEATH';
}

/** What the soak can blame for an answer its kind must not get (undefined: nothing it knows). */
export function blame(
  sample: Sample,
  e: Evidence,
): 'killCollateral' | 'neighbourCollateral' | undefined {
  const { start, end } = sample;
  if (sample.cls === '502 WORKER_CRASHED') {
    // Our SIGKILL landed while it ran, and the 502 came within the window after it.
    if (e.kills.some((k) => k.t >= start && k.t <= end && end - k.t <= BLAME_WINDOW_MS))
      return 'killCollateral';
    // A worker died of a hostile neighbour (memory bomb, microtask loop, stuck worker) while it
    // ran: the server logs that death at about the time it answers its invocations.
    if (
      e.hostileDeaths.some(
        (d) => d.t >= start && d.t <= end + BLAME_WINDOW_MS && end - d.t <= BLAME_WINDOW_MS,
      )
    )
      return 'neighbourCollateral';
  }
  // Starved: a loop or bomb held the worker while this invocation waited for its turn.
  if (sample.cls === '504 FUNCTION_TIMEOUT') {
    if (e.blockingCalls.some((h) => h.start < end && h.end > start)) return 'neighbourCollateral';
  }
  return undefined;
}

export function judge(sample: Sample, kind: Kind, e: Evidence): Verdict {
  if (sample.status === undefined) return 'unanswered';
  if (kind.expected.includes(sample.cls)) return 'expected';
  if (sample.cls === '503 OVERLOADED') return 'overloaded';
  if (!kind.invokes) return 'unexpected';
  return blame(sample, e) ?? 'unexpected';
}
