/**
 * Outbound `fetch` for functions (docs/spec.md §8), performed in the server process under the egress
 * policy. undici does the HTTP; this module owns where it may connect and when it must stop:
 * - every connection is checked on its resolved address, before the socket opens (our DNS lookup
 *   drops refused addresses; an IP literal is checked as is) and again on the connected socket,
 *   so a name that resolves somewhere else the second time (DNS rebinding) gains nothing;
 * - redirects are followed here, one hop at a time, so each hop passes the same checks;
 * - one undici Agent per call, with the connector of egress-connector.ts: no proxy from HTTP_PROXY/HTTPS_PROXY (undici's
 *   Agent reads no environment), no cookie jar, no connection shared with another invocation.
 */
import { Agent, fetch as undiciFetch, Headers } from 'undici';
import { EgressError } from '../errors';
import { policyConnector } from './egress-connector';
import type { EgressPolicy } from './egress-policy';

export interface OutboundRequest {
  url: string;
  method: string;
  headers: [string, string][];
  /** base64 */
  body?: string;
  redirect: 'follow' | 'manual' | 'error';
}

export interface OutboundResponse {
  url: string;
  status: number;
  statusText: string;
  headers: [string, string][];
  /** base64 */
  body: string;
  redirected: boolean;
}

export interface FetchLimits {
  policy: EgressPolicy;
  /** The invocation's deadline, epoch ms: the whole request (every hop and the body) ends by it. */
  deadline: number;
  /** Largest request body and largest response body, bytes (FETCH_MAX_BYTES). */
  maxBytes: number;
}

const OFF = 'EGRESS=off refuses every outbound request';

/** The same limit as browsers and undici (WHATWG fetch, "HTTP-redirect fetch" step 5). */
export const MAX_REDIRECTS = 20;

/**
 * Request headers the server owns, dropped silently as browsers drop forbidden headers: the
 * framing and connection management (undici computes them from the URL and body) and proxy-*.
 */
const DROPPED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'http2-settings',
]);

/** Dropped when a redirect leaves the origin (WHATWG fetch; undici does the same). */
const CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'cookie'];
const BODY_HEADERS = ['content-type', 'content-encoding', 'content-language', 'content-location'];

/**
 * Performs one request under the policy.
 * @throws EgressError saying why: refused by the policy (which address, which range or rule), DNS
 * failure, network error, timeout, too large, redirect refused or too many, bad URL/scheme/header.
 */
export async function performFetch(
  request: OutboundRequest,
  limits: FetchLimits,
): Promise<OutboundResponse> {
  let url = parseUrl(request.url);
  const remaining = limits.deadline - Date.now();
  if (remaining <= 0) {
    throw new EgressError(
      'FETCH_TIMEOUT',
      `fetch to ${url.origin}: the invocation has no time left`,
    );
  }
  if (!limits.policy.enabled) {
    throw new EgressError('EGRESS_REFUSED', `fetch to ${url.origin} refused: ${OFF}`);
  }
  let method = parseMethod(request.method);
  let headers = requestHeaders(request.headers);
  let body: Buffer | undefined = requestBody(request.body, limits.maxBytes);
  if (body && (method === 'GET' || method === 'HEAD')) {
    throw new EgressError('FETCH_INVALID_REQUEST', `fetch: a ${method} request cannot have a body`);
  }
  // Clamped: past 2^31-1 ms a timer fires at once (TimeoutOverflowWarning).
  const signal = AbortSignal.timeout(Math.min(remaining, 2 ** 31 - 1));
  const agent = new Agent({ connect: policyConnector(limits.policy, remaining) });
  try {
    for (let hops = 0; ; hops++) {
      let response;
      try {
        response = await undiciFetch(url, {
          method,
          headers,
          body,
          redirect: 'manual',
          dispatcher: agent,
          signal,
        });
      } catch (err) {
        throw translate(err, url, signal);
      }
      const location = response.headers.get('location');
      if (request.redirect === 'manual' || !isRedirect(response.status) || location === null) {
        const bytes = await readBody(response, url, limits.maxBytes, signal);
        return {
          url: url.href.replace(/#.*$/, ''),
          status: response.status,
          statusText: response.statusText,
          headers: [...response.headers],
          body: bytes.toString('base64'),
          redirected: hops > 0,
        };
      }
      await response.body?.cancel().catch(() => undefined);
      if (request.redirect === 'error') {
        throw new EgressError(
          'FETCH_REDIRECT_REFUSED',
          `fetch to ${url.origin} was redirected (${response.status}) and redirect is "error"`,
        );
      }
      if (hops + 1 > MAX_REDIRECTS) {
        throw new EgressError(
          'FETCH_TOO_MANY_REDIRECTS',
          `fetch to ${parseUrl(request.url).origin}: more than ${MAX_REDIRECTS} redirects`,
        );
      }
      const next = parseUrl(location, url);
      // WHATWG fetch: 303 (and 301/302 after a POST) turn into a GET without a body.
      if (
        (response.status === 303 && method !== 'GET' && method !== 'HEAD') ||
        ((response.status === 301 || response.status === 302) && method === 'POST')
      ) {
        method = 'GET';
        body = undefined;
        headers = headers.filter(([name]) => !BODY_HEADERS.includes(name));
      }
      if (next.origin !== url.origin) {
        headers = headers.filter(([name]) => !CREDENTIAL_HEADERS.includes(name));
      }
      url = next;
    }
  } finally {
    // The body has been read or abandoned: nothing of this call may use the agent again.
    agent.destroy().catch(() => undefined);
  }
}

function parseUrl(text: string, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(text, base);
  } catch {
    throw new EgressError('FETCH_INVALID_REQUEST', `fetch: invalid URL "${text.slice(0, 200)}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EgressError(
      'FETCH_INVALID_REQUEST',
      `fetch: scheme "${url.protocol}" is not supported: use http: or https:`,
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new EgressError(
      'FETCH_INVALID_REQUEST',
      'fetch: a URL may not include credentials: send an Authorization header',
    );
  }
  return url;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const NORMALIZED = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH']);

function parseMethod(text: string): string {
  if (!TOKEN.test(text))
    throw new EgressError('FETCH_INVALID_REQUEST', `fetch: invalid method "${text.slice(0, 40)}"`);
  const upper = text.toUpperCase();
  if (upper === 'CONNECT' || upper === 'TRACE' || upper === 'TRACK') {
    throw new EgressError('FETCH_INVALID_REQUEST', `fetch: method ${upper} is not allowed`);
  }
  // WHATWG fetch upper-cases only these; any other method is sent as written.
  return NORMALIZED.has(upper) ? upper : text;
}

/** Lower-cased names, validated by undici's Headers, minus the headers the server owns. */
function requestHeaders(list: [string, string][]): [string, string][] {
  const headers = new Headers();
  try {
    for (const [name, value] of list) headers.append(name, value);
  } catch (err) {
    throw new EgressError('FETCH_INVALID_REQUEST', `fetch: ${(err as Error).message}`);
  }
  const kept = [...headers].filter(
    ([name]) => !DROPPED_HEADERS.has(name) && !name.startsWith('proxy-'),
  );
  if (!headers.has('user-agent')) kept.push(['user-agent', 'koa-faas']);
  return kept;
}

function requestBody(base64: string | undefined, maxBytes: number): Buffer | undefined {
  if (base64 === undefined) return undefined;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) {
    throw new EgressError('FETCH_INVALID_REQUEST', 'fetch: the request body is not valid base64');
  }
  // Decoded size from the text alone: a huge body is refused before it is decoded.
  const size = Math.floor((base64.length * 3) / 4) - (base64.match(/=*$/)?.[0].length ?? 0);
  if (size > maxBytes) {
    throw new EgressError(
      'FETCH_TOO_LARGE',
      `fetch: the request body (${size} bytes) is larger than FETCH_MAX_BYTES (${maxBytes})`,
    );
  }
  return Buffer.from(base64, 'base64');
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

/** Reads the (decoded) body, stopping as soon as it passes maxBytes. */
async function readBody(
  response: Awaited<ReturnType<typeof undiciFetch>>,
  url: URL,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Buffer> {
  const tooLarge = (): EgressError =>
    new EgressError(
      'FETCH_TOO_LARGE',
      `fetch to ${url.origin}: the response is larger than FETCH_MAX_BYTES (${maxBytes} bytes)`,
    );
  if (!response.body) return Buffer.alloc(0);
  const declared = Number(response.headers.get('content-length'));
  if (!response.headers.has('content-encoding') && declared > maxBytes) {
    await response.body.cancel().catch(() => undefined);
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw tooLarge();
      }
      chunks.push(value);
    }
  } catch (err) {
    throw err instanceof EgressError ? err : translate(err, url, signal);
  }
  return Buffer.concat(chunks, size);
}

/** undici's errors ("fetch failed" with a cause chain) into one EgressError that says why. */
function translate(err: unknown, url: URL, signal: AbortSignal): EgressError {
  if (signal.aborted) {
    return new EgressError(
      'FETCH_TIMEOUT',
      `fetch to ${url.origin} timed out: the invocation's time ran out`,
      { cause: err },
    );
  }
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof EgressError) {
      const verb = e.code === 'EGRESS_REFUSED' ? 'refused' : 'failed';
      return new EgressError(e.code, `fetch to ${url.origin} ${verb}: ${e.message}`, { cause: e });
    }
  }
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
  const detail =
    cause instanceof Error
      ? ((cause as NodeJS.ErrnoException).code ?? cause.message)
      : String(cause);
  if (err instanceof TypeError && err.message !== 'fetch failed') {
    return new EgressError('FETCH_INVALID_REQUEST', `fetch: ${err.message}`, { cause: err });
  }
  return new EgressError('FETCH_NETWORK_ERROR', `fetch to ${url.origin} failed: ${detail}`, {
    cause: err,
  });
}
