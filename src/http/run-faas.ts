/**
 * runFaaS: every request the admin router did not take. Path → function (longest existing
 * prefix, SPEC §2) → its config (methods) → the sandbox pool → the response.
 */
import type { Context, Middleware } from 'koa';
import { FunctionError, FunctionNotFoundError, MethodNotAllowedError } from '../errors';
import type { FunctionConfig } from '../functions/function-config';
import { candidatesForPath } from '../functions/function-source';
import { inUserFile } from '../functions/function-store';
import type { FunctionStore, Resolved } from '../functions/function-store';
import type { Logger } from '../observe/logger';
import { factsOf } from '../pool/sandbox-pool';
import type { SandboxPool } from '../pool/sandbox-pool';
import type { BodyState } from './body';
import type { RequestState } from './error-handler';
import { toResponse } from './response';

/**
 * The event a function receives (SPEC §2), as JSON text. Headers are lower-cased by Node; a body
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

/** Whether `config.methods` lets `method` in (HEAD goes with GET, RFC 9110 §9.3.2). */
function allows(methods: readonly string[], method: string): boolean {
  return methods.includes(method) || (method === 'HEAD' && methods.includes('GET'));
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

/** Replaces every secret value in a text with `[secret]` (values under 3 characters are left). */
export function maskSecrets(text: string, values: readonly string[]): string {
  let masked = text;
  for (const value of values) if (value.length >= 3) masked = masked.split(value).join('[secret]');
  return masked;
}

/** The secrets a function declared, by name; the secrets service of the server. */
export type SecretValues = (names: readonly string[]) => Promise<Record<string, string>>;

export function runFaaS({
  store,
  pool,
  secrets,
}: {
  store: FunctionStore;
  pool: SandboxPool;
  secrets?: SecretValues;
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
    ctx.set('X-Function-Version', fn.version);
    if (fn.compileError) throw fn.compileError;
    const { config } = fn;
    if (config.methods && !allows(config.methods, ctx.method)) {
      const err = new MethodNotAllowedError(
        `function '${fn.name}' answers ${config.methods.join(', ')}, not ${ctx.method}`,
      );
      err.headers = { Allow: config.methods.join(', ') };
      throw err;
    }
    const compiled = fn.compiled as NonNullable<typeof fn.compiled>;
    // context.env and context.secrets travel with the invocation, for functions that have them.
    let contextJson: string | undefined;
    let secretValues: string[] = [];
    if (config.env || config.secrets) {
      const values = config.secrets && secrets ? await secrets(config.secrets) : {};
      secretValues = Object.values(values);
      contextJson = JSON.stringify({ env: config.env ?? {}, secrets: values });
    }
    const result = await pool
      .run({
        name: fn.name,
        version: fn.version,
        source: compiled.code,
        file: compiled.filename,
        eventJson: eventJsonFor(ctx, subpath, config),
        requestId: state.requestId,
        timeoutMs: config.timeoutMs,
        contextJson,
        maxConcurrency: config.maxConcurrency,
      })
      .catch((err: unknown) => {
        // A failed invocation's record still says what it did (an effect, a re-run, alone).
        Object.assign(state, factsOf(err));
        throw err;
      });
    // The first request of a version waited for its load on a worker: its cold start.
    state.cold = result.cold || target.cold;
    state.queueMs = result.queueMs;
    state.execMs = result.execMs;
    state.effects = result.effects;
    state.reruns = result.reruns;
    state.solo = result.solo;
    // A secret's value never reaches a log line, a record or an error answer (SPEC §8).
    const logs =
      secretValues.length === 0
        ? result.logs
        : result.logs.map((l) => maskSecrets(l, secretValues));
    state.logs = logs;
    if (logs.length > 0) logConsole(state.log.child({ fn: fn.name }), logs);
    let response;
    try {
      response = toResponse(result.outcome);
    } catch (err) {
      const mapped = inUserFile(fn.compiled, err);
      if (secretValues.length > 0 && mapped instanceof FunctionError) {
        throw new FunctionError(
          mapped.type,
          maskSecrets(mapped.message, secretValues),
          mapped.functionStack && maskSecrets(mapped.functionStack, secretValues),
        );
      }
      throw mapped;
    }
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
