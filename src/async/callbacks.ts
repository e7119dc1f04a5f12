/**
 * `X-Callback-Url` (docs/spec.md §9): when an async invocation is done, its response is POSTed to the
 * URL the request named, under the egress policy of docs/spec.md §8 (the same check as a function's
 * fetch, on every connection), with `X-Request-Id` and `X-Function-Status`. The URL is checked
 * when the request arrives, so a refused one is a 400 at once, not a silent failure later.
 *
 * Delivery never holds the queue up: it runs beside it, after the invocation is recorded as done.
 * A 2xx answer delivers; anything else (a network error, a refusal, a non-2xx status, no answer
 * in CALLBACK_TIMEOUT_MS) is tried again after a random delay of up to 1 s, 5 s and 25 s ("full
 * jitter": a burst of failed callbacks does not come back as a burst), and each try is recorded
 * on the invocation (`callback`). At most CALLBACK_PER_ORIGIN tries are in flight to one receiver
 * (URL origin) at once; the others wait their turn in order, up to CALLBACK_WAITING per receiver
 * (past it a try fails at once, recorded, and is retried like any failed try). Tries still
 * waiting when the server stops are dropped (the record says `pending`): callbacks are best
 * effort, a few tries, never replayed after a restart.
 */
import dns from 'node:dns/promises';
import net from 'node:net';
import { CallbackRefusedError, InvalidCallbackUrlError } from '../errors';
import type { Logger } from '../observe/logger';
import type { EgressPolicy } from '../services/egress';
import { performFetch } from '../services/egress';
import type { CallbackState, InvocationState } from './queue/async-queue';

/** The longest delays before the second, third and fourth tries (each is random below it). */
export const CALLBACK_DELAYS_MS = [1000, 5000, 25_000];
/** One try's limit: connection, request and answer (not counting its wait for a turn). */
export const CALLBACK_TIMEOUT_MS = 10_000;
/** Tries in flight at once to one receiver (URL origin), by default. */
export const CALLBACK_PER_ORIGIN = 8;
/** Tries that may wait for a turn at one receiver, by default; past it a try fails at once. */
export const CALLBACK_WAITING = 1000;

/**
 * A retry delay with full jitter: uniform in [0, ceilingMs), whole milliseconds.
 * @param ceilingMs the longest delay, ms (≥ 0).
 * @param random a uniform number in [0, 1) (Math.random by default; tests pass their own).
 */
export function jitteredDelayMs(ceilingMs: number, random: () => number = Math.random): number {
  return Math.min(Math.floor(random() * ceilingMs), Math.max(0, ceilingMs - 1));
}
const MAX_URL = 2048;
const LOOKUP_MS = 2000;

/**
 * Checks an `X-Callback-Url` value when the request arrives: an absolute http(s) URL without
 * credentials, whose host the egress policy lets the server reach (a name is resolved now, and
 * again on delivery). Resolves with the URL to call (its fragment dropped).
 * @throws InvalidCallbackUrlError (malformed, or a name that does not resolve);
 *   CallbackRefusedError (the policy refuses it, with its reason).
 */
export async function checkCallbackUrl(text: string, policy: EgressPolicy): Promise<string> {
  const invalid = (why: string) =>
    new InvalidCallbackUrlError(`X-Callback-Url ${JSON.stringify(text.slice(0, 200))}: ${why}`);
  if (text.length > MAX_URL) throw invalid(`longer than ${MAX_URL} characters`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid('not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('use http: or https:');
  if (url.username !== '' || url.password !== '') {
    throw invalid('a URL may not include credentials');
  }
  url.hash = '';
  const refused = (reason: string) =>
    new CallbackRefusedError(`X-Callback-Url to ${url.origin} refused: ${reason}`);
  if (!policy.enabled) throw refused('EGRESS=off refuses every outbound request');
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  let addresses: string[];
  if (net.isIP(host) !== 0) {
    addresses = [host];
  } else {
    try {
      const found = await Promise.race([
        dns.lookup(host, { all: true }),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('no answer')), LOOKUP_MS).unref(),
        ),
      ]);
      addresses = found.map((a) => a.address);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw invalid(`its host ${host} does not resolve (${code})`);
    }
  }
  const decisions = addresses.map((address) =>
    policy.decide({ host: net.isIP(host) ? undefined : host, address, port }),
  );
  const denied = decisions.find((d) => !d.allowed);
  if (!decisions.some((d) => d.allowed) && denied && !denied.allowed) throw refused(denied.reason);
  return url.href;
}

export interface CallbackParts {
  policy: EgressPolicy;
  /** Largest body sent (the largest result a function may return). */
  maxBytes: number;
  logger: Logger;
  /** Records a callback's progress on its invocation. */
  record(id: string, state: CallbackState): Promise<void>;
  /** Counts each try: `delivered`, `retried` or `failed` (the last try failed). */
  observe?(outcome: 'delivered' | 'retried' | 'failed'): void;
  /** The longest delay before each retry, ms (default CALLBACK_DELAYS_MS). */
  delaysMs?: number[];
  timeoutMs?: number;
  /** Tries in flight at once to one receiver (URL origin) (default CALLBACK_PER_ORIGIN). */
  perOrigin?: number;
  /** Tries that may wait for a turn at one receiver (default CALLBACK_WAITING). */
  waiting?: number;
  /** The jitter's source of randomness, uniform in [0, 1) (default Math.random). */
  random?: () => number;
}

/** One receiver's tries: how many are in flight, and the ones waiting for a turn, in order. */
interface Lane {
  running: number;
  waiting: (() => void)[];
}

/** The request a finished invocation's callback sends: its response, or its error answer. */
export function callbackRequest(state: InvocationState): {
  status: number;
  headers: [string, string][];
  body: Buffer;
} {
  let status: number;
  let type: string | undefined;
  let body: Buffer;
  if (state.response) {
    status = state.response.status;
    const contentType = state.response.headers['content-type'];
    type = Array.isArray(contentType) ? contentType[0] : contentType;
    const text = state.response.body ?? '';
    body = Buffer.from(text, state.response.isBase64Encoded ? 'base64' : 'utf8');
  } else {
    const error = state.error ?? { status: 500, code: 'INTERNAL_ERROR', message: 'no result' };
    status = error.status;
    type = 'application/json; charset=utf-8';
    const { code, message } = error;
    body = Buffer.from(
      JSON.stringify({
        error: { code, message, ...(error.type ? { type: error.type } : {}) },
        requestId: state.requestId,
      }),
    );
  }
  const headers: [string, string][] = [
    ['x-request-id', state.requestId],
    ['x-function-status', String(status)],
    ['x-function-name', state.function],
  ];
  if (type !== undefined) headers.push(['content-type', type]);
  return { status, headers, body };
}

/** The receiver a callback URL names, for its turn: its origin (the URL itself if unparsable). */
function receiverOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

/**
 * Sends the callbacks of finished invocations, with retries, at most `perOrigin` at once to one
 * receiver (see the module comment).
 */
export class CallbackSender {
  readonly #parts: CallbackParts;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #lanes = new Map<string, Lane>();
  #closed = false;

  constructor(parts: CallbackParts) {
    this.#parts = parts;
  }

  /** Starts delivering `state`'s callback, if it has one; returns at once. */
  deliver(state: InvocationState): void {
    if (!state.callback || this.#closed) return;
    this.#enter(state, { ...state.callback, status: 'pending' });
  }

  /** Tries now if the receiver has a free turn, else waits in its lane (or fails: lane full). */
  #enter(state: InvocationState, before: CallbackState): void {
    const receiver = receiverOf(before.url);
    let lane = this.#lanes.get(receiver);
    if (!lane) {
      lane = { running: 0, waiting: [] };
      this.#lanes.set(receiver, lane);
    }
    if (lane.running < (this.#parts.perOrigin ?? CALLBACK_PER_ORIGIN)) {
      lane.running++;
      void this.#try(state, before, receiver);
      return;
    }
    const most = this.#parts.waiting ?? CALLBACK_WAITING;
    if (lane.waiting.length < most) {
      lane.waiting.push(() => void this.#try(state, before, receiver));
      return;
    }
    void this.#settle(state, {
      url: before.url,
      status: 'pending',
      attempts: before.attempts + 1,
      lastError: `not sent: ${most} callbacks to ${receiver} were already waiting for a turn`,
    });
  }

  /** A try ended: its turn goes to the next one waiting for this receiver. */
  #leave(receiver: string): void {
    const lane = this.#lanes.get(receiver);
    if (!lane) return;
    const next = this.#closed ? undefined : lane.waiting.shift();
    if (next) {
      next();
      return;
    }
    lane.running--;
    if (lane.running <= 0 && lane.waiting.length === 0) this.#lanes.delete(receiver);
  }

  /** One try, holding one of the receiver's turns until the answer is in. */
  async #try(state: InvocationState, before: CallbackState, receiver: string): Promise<void> {
    const { policy, maxBytes } = this.#parts;
    const request = callbackRequest(state);
    const attempts = before.attempts + 1;
    let answer: CallbackState;
    try {
      const response = await performFetch(
        {
          url: before.url,
          method: 'POST',
          headers: request.headers,
          body: request.body.toString('base64'),
          redirect: 'manual',
        },
        {
          policy,
          deadline: Date.now() + (this.#parts.timeoutMs ?? CALLBACK_TIMEOUT_MS),
          maxBytes,
        },
      );
      answer =
        response.status >= 200 && response.status < 300
          ? {
              url: before.url,
              status: 'delivered',
              attempts,
              lastStatus: response.status,
              deliveredAt: new Date().toISOString(),
            }
          : {
              url: before.url,
              status: 'pending',
              attempts,
              lastStatus: response.status,
              lastError: `the callback URL answered ${response.status}`,
            };
    } catch (err) {
      answer = {
        url: before.url,
        status: 'pending',
        attempts,
        lastError: err instanceof Error ? err.message : String(err),
      };
    } finally {
      this.#leave(receiver);
    }
    await this.#settle(state, answer);
  }

  /** Records a try's outcome, and schedules the next try (after a jittered delay) if one is due. */
  async #settle(state: InvocationState, answer: CallbackState): Promise<void> {
    const { logger } = this.#parts;
    const delays = this.#parts.delaysMs ?? CALLBACK_DELAYS_MS;
    const attempts = answer.attempts;
    const more = answer.status === 'pending' && attempts <= delays.length && !this.#closed;
    // A stopping server drops its tries: what it could not finish stays `pending`.
    if (answer.status === 'pending' && !more && !this.#closed) answer.status = 'failed';
    this.#parts.observe?.(
      answer.status === 'delivered'
        ? 'delivered'
        : answer.status === 'failed'
          ? 'failed'
          : 'retried',
    );
    if (answer.status === 'failed') {
      logger.warn('callback not delivered', {
        reqId: state.requestId,
        attempts,
        err: answer.lastError,
      });
    }
    await this.#parts.record(state.requestId, answer).catch((err: unknown) => {
      logger.warn('cannot record a callback', { reqId: state.requestId, err });
    });
    if (!more) return;
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        if (!this.#closed) this.#enter(state, answer);
      },
      jitteredDelayMs(delays[attempts - 1], this.#parts.random),
    );
    timer.unref();
    this.#timers.add(timer);
  }

  /** Drops the tries still waiting, for a retry or for a turn (a stopping server). */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const lane of this.#lanes.values()) lane.waiting.length = 0;
  }
}
