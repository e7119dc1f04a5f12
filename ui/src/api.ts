/**
 * The console's only way to the server: the admin routes under /_/ with the bearer token, and
 * invocations of functions without it. The token lives in sessionStorage (gone with the tab) and
 * travels only in the Authorization header of admin requests, never in a URL and never to a
 * function.
 */

import type { ErrorBody } from '../../src/http/admin/api';

const TOKEN_KEY = 'koa-faas.adminToken';

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

/** An answer in the JSON error shape of docs/spec.md §3 (or a failed request). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly line?: number,
    readonly column?: number,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/** An error answer as read: any part of it may be missing (a proxy's answer, say). */
interface ErrorShape {
  error?: Partial<ErrorBody['error']>;
  requestId?: string;
}

/** Turns a non-2xx answer into an ApiError. */
async function failure(res: Response): Promise<ApiError> {
  let body: ErrorShape = {};
  try {
    body = (await res.json()) as ErrorShape;
  } catch {
    // not JSON: the status says enough
  }
  const e = body.error ?? {};
  return new ApiError(
    res.status,
    e.code ?? String(res.status),
    e.message ?? res.statusText ?? `HTTP ${res.status}`,
    e.line,
    e.column,
    body.requestId,
  );
}

export interface AdminInit {
  method?: string;
  /** Sent as JSON unless it is a string (sent as is, with `type`). */
  body?: unknown;
  type?: string;
  /** Use this token instead of the stored one (sign-in). */
  token?: string | null;
}

/**
 * Calls an admin route and resolves with its JSON (undefined for 204).
 * @throws ApiError for any answer that is not 2xx, or when the server cannot be reached.
 */
export async function admin<T>(path: string, init: AdminInit = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const token = init.token === undefined ? storedToken() : init.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (init.body !== undefined) {
    body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
    headers['Content-Type'] =
      init.type ?? (typeof init.body === 'string' ? 'text/plain' : 'application/json');
  }
  let res: Response;
  try {
    res = await fetch(`/_/${path}`, {
      method: init.method ?? 'GET',
      headers,
      body,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (err) {
    throw new ApiError(0, 'NETWORK', `the server did not answer: ${(err as Error).message}`);
  }
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

/** A function name as a URL path (its segments are safe as they are: [A-Za-z0-9_-]). */
export function fnPath(name: string): string {
  return name
    .split('/')
    .map((s) => encodeURIComponent(s))
    .join('/');
}

/**
 * The admin path of a function's KV namespace, or of one key: always in the query (`?key=`),
 * where no URL parser rewrites it — in the path, the browser turns `.` and `..` into dot
 * segments, and a per-key delete of `.` would reach the namespace (src/http/admin/data.ts). More query
 * parameters follow with `&`.
 */
export function kvPath(name: string, key?: string): string {
  // The trailing slash: the whole path is the name, nested or not (`kv/a/b` is key b of a).
  if (key !== undefined) return `kv/${fnPath(name)}/?key=${encodeURIComponent(key)}`;
  return `kv/${fnPath(name)}/`;
}

// The admin API's shapes: one definition, the server's (src/http/admin/api.ts).
export type {
  AsyncInvocationAnswer,
  ConfinementReport,
  ConsoleStatsAnswer,
  DeployAnswer,
  DraftRunAnswer,
  FunctionDetail,
  FunctionFigures,
  FunctionListAnswer,
  FunctionListing,
  HealthAnswer,
  InvocationAnswer,
  InvocationListAnswer,
  InvocationRecord,
  InvocationState,
  KvListAnswer,
  SecretListAnswer,
  SecretPutAnswer,
} from '../../src/http/admin/api';
