/**
 * The sandbox every function answer is served in (docs/spec.md §4, §11). Functions share the
 * server's origin with the console (/_/ui/) and the admin API: a function's HTML page, run in that
 * origin, could read the console's admin token from sessionStorage and call the admin API with
 * it. So every answer for a function path carries
 *
 *   Content-Security-Policy: sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads
 *   X-Content-Type-Options: nosniff
 *
 * A sandboxed document gets an opaque origin (no `allow-same-origin`): its scripts run, but
 * cannot read the origin's storage or cookies, and its requests to the server are cross-origin
 * ones (`Origin: null`), which carry no credential of the console. Popups it opens inherit the
 * sandbox (no `allow-popups-to-escape-sandbox`); it cannot navigate a frame's parent
 * (no `allow-top-navigation`). The header is set on the answer before anything runs, so the
 * server's own answers for a function path (404, 405, 413, 503, a 202 of an async call, a
 * preflight) carry it too, and a function's own Content-Security-Policy is sent beside it, never
 * instead of it: every policy a response carries is enforced, so a function may narrow what its
 * page may do, never widen it. There is no opt-out: function code is untrusted.
 *
 * The admin API's answers (/_/…, JSON that may quote a function's output: records, KV values,
 * sources, draft runs) get `nosniff` and a policy that lets nothing run or load
 * (`default-src 'none'; frame-ancestors 'none'; sandbox`), so that no browser ever renders one as
 * a page of the console's origin; the console's own assets (/_/ui/) replace it with theirs.
 */
import type { ServerResponse } from 'node:http';

/** The sandbox policy of every function answer (no `allow-same-origin`: an opaque origin). */
export const FUNCTION_CSP =
  'sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads';

/** Whether a path is the server's own (/_ and /_/…: the admin API and the console). */
export function isAdminPath(path: string): boolean {
  return path === '/_' || path.startsWith('/_/');
}

/** The policy of every admin answer: nothing may run, load or frame it (an opaque origin). */
export const ADMIN_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox";

/**
 * Puts the admin API's headers on an answer for /_ or /_/… (admin/console.ts sets the console's own
 * over them).
 */
export function lockAdminAnswer(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', ADMIN_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
}

/**
 * Puts the sandbox headers on a function path's answer. Call it before anything else writes a
 * header: what runs after (a function's headers, an error answer) adds to it (withSandbox).
 */
export function sandboxFunctionAnswer(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', FUNCTION_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
}

/**
 * The Content-Security-Policy values of an answer whose function set its own: the function's
 * policies, then the sandbox (every policy an answer carries is enforced).
 * @param own the function's header value(s), as response.ts validated them.
 */
export function withSandbox(own: string | string[] | undefined): string[] {
  const values = own === undefined ? [] : Array.isArray(own) ? own : [own];
  return [...values.filter((value) => value.trim() !== ''), FUNCTION_CSP];
}
