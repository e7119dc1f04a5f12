/**
 * The CLI's only way to the server: HTTP with Node's fetch, every request bounded by a timeout
 * so that the CLI never hangs. A server error answer (`{ error: { code, message } }`,
 * docs/errors.md) or an unreachable server becomes a CliError: one line on stderr, exit 1.
 */
import type { ErrorBody } from '../http/admin/api';
import type { Settings } from './settings';

/** How long one admin request may take. */
export const ADMIN_TIMEOUT_MS = 30_000;

/** A failure the CLI reports as one line on stderr, then exits 1. */
export class CliError extends Error {}

export interface RequestOptions {
  method?: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  /** Send the admin token (every /_/ route but a function call). */
  auth?: boolean;
  timeoutMs?: number;
}

/** fetch with a timeout; a refused connection or a timeout is a CliError naming the URL. */
export async function send(
  settings: Settings,
  path: string,
  options: RequestOptions = {},
): Promise<Response> {
  const url = `${settings.url}${path}`;
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth !== false && settings.token !== undefined) {
    headers.authorization = `Bearer ${settings.token}`;
  }
  const timeoutMs = options.timeoutMs ?? ADMIN_TIMEOUT_MS;
  try {
    return await fetch(url, {
      method: options.method ?? 'GET',
      headers,
      body: options.body,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new CliError(unreachable(settings.url, err, timeoutMs));
  }
}

/** Why a request to `base` got no answer, in one line (`err`: what fetch threw). */
export function unreachable(base: string, err: unknown, timeoutMs: number): string {
  const error = err as Error & { cause?: Error & { code?: string; errors?: { code?: string }[] } };
  if (error.name === 'TimeoutError') {
    return `no answer from ${base} within ${timeoutMs / 1000} s`;
  }
  // fetch's own message is "fetch failed"; why is in its cause (an AggregateError when the
  // name resolved to several addresses).
  const cause = error.cause;
  const why = cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? error.message;
  return `cannot reach ${base}: ${why}`;
}

/** The one-line form of a server's error answer: `CODE: message`, else the status. */
export function errorLine(status: number, text: string): string {
  try {
    const { error } = JSON.parse(text) as ErrorBody;
    if (error && typeof error.code === 'string') {
      const at = error.line === undefined ? '' : ` (line ${error.line}:${error.column ?? 0})`;
      return `${error.code}: ${error.message}${at}`;
    }
  } catch {
    // Not an error body: fall through.
  }
  const brief = text.trim().split('\n')[0].slice(0, 200);
  return `HTTP ${status}${brief ? `: ${brief}` : ''}`;
}

/** An admin request whose answer must be 2xx: its JSON (undefined for 204). */
export async function admin<T>(
  settings: Settings,
  path: string,
  options: RequestOptions = {},
): Promise<T> {
  const response = await send(settings, path, options);
  const text = await response.text();
  if (!response.ok) throw new CliError(errorLine(response.status, text));
  if (response.status === 204 || text === '') return undefined as T;
  return JSON.parse(text) as T;
}

/** A function name as a URL path: each segment percent-encoded, the slashes kept. */
export const namePath = (name: string): string =>
  name
    .replace(/^\/+/, '')
    .split('/')
    .map((segment) => encodeURIComponent(segment))
    .join('/');
