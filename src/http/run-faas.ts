/**
 * runFaaS: every request the admin router did not take. Path → function (longest existing
 * prefix, docs/spec.md §2) → its config (methods) → the sandbox pool → the response.
 */
import type { Context, Middleware } from 'koa';
import { FunctionNotFoundError, MethodNotAllowedError } from '../errors';
import type { FunctionConfig } from '../functions/function-config';
import { candidatesForPath } from '../functions/function-source';
import type { FunctionStore, Resolved } from '../functions/function-store';
import { factsOf } from '../pool/sandbox-pool';
import type { SandboxPool } from '../pool/sandbox-pool';
import type { BodyState } from './body';
import { withSandbox } from './function-sandbox';
import type { RequestState } from './error-handler';
import { invokeVersion, logConsole } from '../invocation/invoke';
import type { SecretValues } from '../invocation/invoke';

/**
 * The event a function receives (docs/spec.md §2), as JSON text. Headers are lower-cased by Node; a body
 * of a type other than JSON, form or text arrives base64-encoded, with `isBase64Encoded: true`;
 * no body (or an empty one) means no `body` key.
 */
export function eventJsonFor(ctx: Context, subpath: string, config: FunctionConfig): string {
  const request = ctx.request as Context['request'] & { body?: unknown };
  const state = ctx.state as BodyState;
  const event: Record<string, unknown> = {
    method: ctx.method,
    path: ctx.path,
    subpath,
    query: ctx.query,
    headers: ctx.headers,
    body: request.body,
  };
  if (state.bodyIsBase64) event.isBase64Encoded = true;
  if (config.rawBody && state.rawBody) event.rawBody = state.rawBody.toString('base64');
  return JSON.stringify(event);
}

const TARGET = Symbol('target');

/**
 * The function a request names, resolved once per request (CORS asks first, runFaaS after) and
 * kept on the request's state, its failure included: the resolution itself when memory answers
 * it (no promise on the hot path), else a promise of it.
 * @throws InvalidFunctionNameError when the path is not a name.
 */
export function resolveTarget(ctx: Context, store: FunctionStore): Resolved | Promise<Resolved> {
  const state = ctx.state as { [TARGET]?: Resolved | Promise<Resolved> };
  if (state[TARGET] === undefined) {
    try {
      state[TARGET] = store.resolveCached(ctx.path) ?? store.resolve(ctx.path);
    } catch (err) {
      state[TARGET] = Promise.reject(err);
    }
  }
  return state[TARGET];
}

/**
 * For cors(): whether the request's function answers CORS itself (`config.cors: "function"`). A
 * path that does not resolve gets the server's CORS (its error is runFaaS's to answer).
 */
export function functionCors(store: FunctionStore): (ctx: Context) => boolean | Promise<boolean> {
  return (ctx) => {
    const target = resolveTarget(ctx, store);
    if (!(target instanceof Promise)) return target.fn.config.cors === 'function';
    return target.then(
      ({ fn }) => fn.config.cors === 'function',
      () => false,
    );
  };
}

/**
 * Whether a `Prefer` header (RFC 7240: comma-separated preferences, each maybe with `=value` and
 * `;` parameters; several headers arrive joined by commas) asks for `respond-async`.
 */
export function prefersAsync(prefer: string): boolean {
  if (prefer === '') return false;
  // Split on the commas outside quoted strings: `foo="a,respond-async"` names no preference.
  let token = '';
  let inToken = true;
  let quoted = false;
  for (let i = 0; i <= prefer.length; i++) {
    const c = prefer[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',' || c === undefined) {
      if (token.trim().toLowerCase() === 'respond-async') return true;
      token = '';
      inToken = true;
    } else if (c === ';' || c === '=') {
      inToken = false;
    } else if (inToken) {
      token += c;
    }
  }
  return false;
}

/** Whether `config.methods` lets `method` in (HEAD goes with GET, RFC 9110 §9.3.2). */
function allows(methods: readonly string[], method: string): boolean {
  return methods.includes(method) || (method === 'HEAD' && methods.includes('GET'));
}

export { maskSecrets } from '../invocation/invoke';
export type { SecretValues } from '../invocation/invoke';

/**
 * Answers a request with `Prefer: respond-async` (docs/spec.md §9) for a function that exists and
 * allows the method: queues it and answers 202 (respond-async.ts).
 */
export type RespondAsync = (ctx: Context, target: Resolved, eventJson: string) => Promise<void>;

export function runFaaS({
  store,
  pool,
  secrets,
  respondAsync,
}: {
  store: FunctionStore;
  pool: SandboxPool;
  secrets?: SecretValues;
  respondAsync?: RespondAsync;
}): Middleware {
  return async (ctx: Context) => {
    const state = ctx.state as RequestState;
    let target: Resolved;
    try {
      const resolved = resolveTarget(ctx, store);
      target = resolved instanceof Promise ? await resolved : resolved;
    } catch (err) {
      // A 404 is counted (under one shared label) too.
      if (err instanceof FunctionNotFoundError) state.fn = candidatesForPath(ctx.path)[0].name;
      throw err;
    }
    const { fn, subpath } = target;
    state.fn = fn.name;
    state.version = fn.version;
    // A version is a hex hash: a valid header value, set without Koa's checks.
    ctx.res.setHeader('X-Function-Version', fn.version);
    if (fn.compileError) throw fn.compileError;
    const { config } = fn;
    if (config.methods && !allows(config.methods, ctx.method)) {
      const err = new MethodNotAllowedError(
        `function '${fn.name}' answers ${config.methods.join(', ')}, not ${ctx.method}`,
      );
      err.headers = { Allow: config.methods.join(', ') };
      throw err;
    }
    const eventJson = eventJsonFor(ctx, subpath, config);
    if (respondAsync && prefersAsync(ctx.get('prefer'))) {
      return respondAsync(ctx, target, eventJson);
    }
    const ran = await invokeVersion(
      { pool, secrets },
      { fn, eventJson, requestId: state.requestId },
    ).catch((err: unknown) => {
      // A failed invocation's record still says what it did (an effect, a re-run, alone).
      Object.assign(state, factsOf(err));
      throw err;
    });
    const { result, logs } = ran;
    // The first request of a version waited for its load on a worker: its cold start.
    state.cold = result.cold || target.cold;
    state.queueMs = result.queueMs;
    state.execMs = result.execMs;
    state.effects = result.effects;
    state.reruns = result.reruns;
    state.solo = result.solo;
    state.logs = logs;
    if (logs.length > 0) logConsole(state.log.child({ fn: fn.name }), logs);
    const response = ran.response();
    ctx.status = response.status;
    // Names and values were checked by toResponse (response.ts): set without Koa's wrapper.
    for (const name in response.headers) ctx.res.setHeader(name, response.headers[name]);
    // The sandbox stays (function-sandbox.ts): a function's own policy is sent beside it.
    const csp = response.headers['content-security-policy'];
    if (csp !== undefined) ctx.res.setHeader('Content-Security-Policy', withSandbox(csp));
    if (response.headers['x-content-type-options'] !== undefined) {
      ctx.res.setHeader('X-Content-Type-Options', 'nosniff');
    }
    if (response.body !== undefined) {
      ctx.body = response.body;
    } else if (response.status !== 204) {
      // No body means an empty one, not Koa's default of the status text.
      ctx.body = '';
      if (response.headers['content-type'] === undefined) ctx.remove('Content-Type');
    }
  };
}
