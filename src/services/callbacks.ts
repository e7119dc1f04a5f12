/**
 * `X-Callback-Url` (SPEC §9): when an async invocation is done, its response is POSTed to the
 * URL the request named, under the egress policy of SPEC §8 (the same check as a function's
 * fetch, on every connection), with `X-Request-Id` and `X-Function-Status`. The URL is checked
 * when the request arrives, so a refused one is a 400 at once, not a silent failure later.
 *
 * Delivery never holds the queue up: it runs beside it, after the invocation is recorded as done.
 * A 2xx answer delivers; anything else (a network error, a refusal, a non-2xx status, no answer
 * in CALLBACK_TIMEOUT_MS) is tried again after 1 s, 5 s and 25 s, and each try is recorded on the
 * invocation (`callback`). Tries still waiting when the server stops are dropped (the record says
 * `pending`): callbacks are best effort, a few tries, never replayed after a restart.
 */
import dns from 'node:dns/promises';
import net from 'node:net';
import { CallbackRefusedError, InvalidCallbackUrlError } from '../errors';
import type { Logger } from '../observe/logger';
import type { EgressPolicy } from './egress';
import { performFetch } from './egress';
import type { CallbackState, InvocationState } from './queue/async-queue';

/** The delays before the second, third and fourth tries. */
export const CALLBACK_DELAYS_MS = [1000, 5000, 25_000];
/** One try's limit: connection, request and answer. */
export const CALLBACK_TIMEOUT_MS = 10_000;
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
  delaysMs?: number[];
  timeoutMs?: number;
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

/** Sends the callbacks of finished invocations, with retries (see the module comment). */
export class CallbackSender {
  readonly #parts: CallbackParts;
  readonly #timers = new Set<NodeJS.Timeout>();
  #closed = false;

  constructor(parts: CallbackParts) {
    this.#parts = parts;
  }

  /** Starts delivering `state`'s callback, if it has one; returns at once. */
  deliver(state: InvocationState): void {
    if (!state.callback || this.#closed) return;
    void this.#try(state, { ...state.callback, status: 'pending' });
  }

  async #try(state: InvocationState, before: CallbackState): Promise<void> {
    const { policy, maxBytes, logger } = this.#parts;
    const delays = this.#parts.delaysMs ?? CALLBACK_DELAYS_MS;
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
    }
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
        void this.#try(state, answer);
      },
      delays[attempts - 1],
    );
    timer.unref();
    this.#timers.add(timer);
  }

  /** Drops the tries still waiting (a stopping server). */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}
