/**
 * runFaaS: every request the admin router did not take. Path → function name → the stored
 * version → the sandbox pool → the response.
 */
import type { Context, Middleware } from 'koa';
import type { RequestState } from './error-handler';
import { functionNameFromPath } from '../functions/function-source';
import type { FunctionStore } from '../functions/function-store';
import type { Logger } from '../observe/logger';
import { toResponse } from './response';
import type { SandboxPool } from '../pool/sandbox-pool';

/**
 * The event a function receives (SPEC §2), as JSON text. Headers are lower-cased by Node; a body
 * of a type other than JSON, form or text arrives base64-encoded, with `isBase64Encoded: true`.
 */
export function eventJsonFor(ctx: Context): string {
  const request = ctx.request as Context['request'] & { body?: unknown };
  const event: Record<string, unknown> = {
    method: ctx.method,
    path: ctx.path,
    query: ctx.query,
    headers: ctx.headers,
    body: request.body,
  };
  if (ctx.state.bodyIsBase64) event.isBase64Encoded = true;
  return JSON.stringify(event);
}

const CONSOLE_LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/** Writes a function's console lines to the server log, tagged with its request and function. */
function logConsole(log: Logger, lines: string[]): void {
  for (const line of lines) {
    const tab = line.indexOf('\t');
    const level = line.slice(0, tab);
    const method = CONSOLE_LEVELS.has(level)
      ? (level as 'debug' | 'info' | 'warn' | 'error')
      : 'info';
    log[method]('function console', { console: line.slice(tab + 1) });
  }
}

export function runFaaS({ store, pool }: { store: FunctionStore; pool: SandboxPool }): Middleware {
  return async (ctx: Context) => {
    const state = ctx.state as RequestState;
    const name = functionNameFromPath(ctx.path);
    state.fn = name;
    const fn = await store.get(name);
    state.version = fn.version;
    ctx.set('X-Function-Version', fn.version);
    if (fn.compileError) throw fn.compileError;
    const result = await pool.run({
      name,
      version: fn.version,
      source: fn.source,
      eventJson: eventJsonFor(ctx),
      requestId: state.requestId,
    });
    state.cold = result.cold;
    state.queueMs = result.queueMs;
    state.execMs = result.execMs;
    state.logs = result.logs;
    if (result.logs.length > 0) logConsole(state.log.child({ fn: name }), result.logs);
    const response = toResponse(result.outcome);
    ctx.status = response.status;
    ctx.set(response.headers);
    if (response.body !== undefined) {
      ctx.body = response.body;
    } else if (response.status !== 204) {
      // No body means an empty one, not Koa's default of the status text.
      ctx.body = '';
      if (response.headers['content-type'] === undefined) ctx.remove('Content-Type');
    }
  };
}
