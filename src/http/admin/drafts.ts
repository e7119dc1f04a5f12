/**
 * Draft runs, the console's "try before deploy" (docs/spec.md §11), behind the bearer token:
 *
 * | route | answer |
 * |-------|--------|
 * | `POST /_/drafts/<name>` | body `{ source, language?, request? }` → 200 with the response the caller of the function would get; 422 `FUNCTION_COMPILE_ERROR` (with line) when the source does not load, as a deploy |
 *
 * `request` is `{ method?, subpath?, query?, headers?, body?, bodyBase64? }` (GET, no sub-path,
 * no query, no headers, no body by default): the event is built from it as runFaaS builds one
 * from a real request (docs/spec.md §2), the body parsed by its `content-type` header as body.ts parses.
 * The answer is `{ status, headers, body, bodyEncoding, requestId, version, config, cold,
 * durationMs, logs, logsTruncated? }`: `body` is UTF-8 text, or base64 when `bodyEncoding` is
 * `base64` (bytes that are not UTF-8); a function error, timeout or crash is that response too
 * (its status and docs/spec.md §3 body), not an error of this route.
 *
 * A draft is compiled, loaded and run exactly as a deployed version is, with two differences
 * that keep it private and harmless:
 * - it runs in the pool under a throwaway name (`<name>~draft-<uuid>`, a name no function can
 *   have), so the live version, its warm contexts, its quarantine, its maxConcurrency, its
 *   records and its metrics are untouched, and nothing lists it;
 * - its `context.kv` is the namespace of that throwaway name: empty at the start, reachable by no
 *   function and no admin route, and cleared when the run ends (again once its deadline has
 *   passed, for a write it left in flight). A draft never reads or changes the function's data.
 * It gets `context.env` and the secrets its own `config` names, as the deployed version would
 * (whoever may draft may deploy), masked in its console output. It is not written anywhere.
 */
import { randomUUID } from 'node:crypto';
import querystring from 'node:querystring';
import type Router from '@koa/router';
import type { Middleware } from 'koa';
import {
  FaasError,
  FunctionCompileError,
  FunctionTimeoutError,
  InvalidBodyError,
  WorkerCrashedError,
  toErrorBody,
} from '../../errors';
import { parseFunctionConfig } from '../../functions/function-config';
import type { ConfigLimits } from '../../functions/function-config';
import { exactFunctionName, versionOf } from '../../functions/function-source';
import { inUserFile } from '../../functions/function-store';
import type { FunctionVersion } from '../../functions/function-store';
import { compileFunction } from '../../functions/transform';
import type { CompiledFunction } from '../../functions/transform';
import { factsOf } from '../../pool/sandbox-pool';
import type { SandboxPool } from '../../pool/sandbox-pool';
import type { DraftRunAnswer } from './api';
import type { DataStores } from './data';
import { parseBody } from '../body';
import type { RequestState } from '../error-handler';
import { invokeVersion } from '../../invocation/invoke';
import { toResponse } from '../../invocation/response';

export interface DraftParts {
  pool: SandboxPool;
  data: DataStores;
  configLimits: ConfigLimits;
  /** FUNCTIONS_DIR's real path: a draft imports packages from its node_modules, as a deploy does. */
  functionsDir?: () => string;
}

/** What a draft run is asked to do: the request the function receives. */
interface DraftRequest {
  method: string;
  subpath: string;
  query: string;
  headers: Record<string, string>;
  body?: Buffer;
}

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;
// Visible ASCII, space, tab and obs-text; no CR, LF or NUL.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Console output kept per draft run, in characters (as a record keeps). */
const MAX_LOG_CHARS = 8 * 1024;

const invalid = (message: string) => new InvalidBodyError(`draft: ${message}`);

/** The draft's source and request, checked. @throws InvalidBodyError naming the bad field. */
function readDraft(raw: unknown): { source: string; language: 'js' | 'ts'; request: DraftRequest } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw invalid('send JSON {"source": "…", "language"?: "js" | "ts", "request"?: {…}}');
  }
  const { source, language = 'js', request = {} } = raw as Record<string, unknown>;
  if (typeof source !== 'string') throw invalid('"source" must be the function source as text');
  if (language !== 'js' && language !== 'ts') throw invalid('"language" must be "js" or "ts"');
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    throw invalid('"request" must be an object');
  }
  const r = request as Record<string, unknown>;
  const method = r.method === undefined ? 'GET' : r.method;
  if (typeof method !== 'string' || !METHOD.test(method)) throw invalid('"method" is not a method');
  const subpath = r.subpath ?? '';
  if (typeof subpath !== 'string' || (subpath !== '' && !subpath.startsWith('/'))) {
    throw invalid('"subpath" must be empty or start with "/"');
  }
  if (/[?#\s]/.test(subpath)) throw invalid('"subpath" may not hold "?", "#" or spaces');
  const query = r.query ?? '';
  if (typeof query !== 'string') throw invalid('"query" must be a query string');
  const headers: Record<string, string> = {};
  if (r.headers !== undefined) {
    if (r.headers === null || typeof r.headers !== 'object' || Array.isArray(r.headers)) {
      throw invalid('"headers" must be an object of names to values');
    }
    for (const [name, value] of Object.entries(r.headers)) {
      if (!HEADER_NAME.test(name)) throw invalid(`header name ${JSON.stringify(name)} is invalid`);
      if (typeof value !== 'string' || !HEADER_VALUE.test(value)) {
        throw invalid(`header ${JSON.stringify(name)} must be one line of text`);
      }
      headers[name.toLowerCase()] = value;
    }
  }
  let body: Buffer | undefined;
  if (r.body !== undefined && r.body !== null) {
    if (typeof r.body !== 'string') throw invalid('"body" must be text (base64 with bodyBase64)');
    body = Buffer.from(r.body, r.bodyBase64 === true ? 'base64' : 'utf8');
  }
  return {
    source,
    language,
    request: {
      method: method.toUpperCase(),
      subpath,
      query: query.replace(/^\?/, ''),
      headers,
      body,
    },
  };
}

/** The event the function gets (docs/spec.md §2), as runFaaS's eventJsonFor builds it from a request. */
async function draftEvent(name: string, request: DraftRequest, rawBody: boolean): Promise<string> {
  const path = `/${name}${request.subpath}`;
  const headers = { ...request.headers };
  const event: Record<string, unknown> = {
    method: request.method,
    path,
    subpath: request.subpath,
    // Koa's ctx.query is node:querystring's parse too.
    query: { ...querystring.parse(request.query) },
    headers,
  };
  if (request.body && request.body.length > 0) {
    headers['content-length'] = String(request.body.length);
    const parsed = await parseBody(request.body, headers['content-type'] ?? '');
    event.body = parsed.body;
    if (parsed.isBase64) event.isBase64Encoded = true;
    if (rawBody) event.rawBody = request.body.toString('base64');
  }
  return JSON.stringify(event);
}

/** A response body for JSON: text when it is UTF-8, else base64. */
function encodeBody(body: string | Buffer | undefined): {
  body: string;
  bodyEncoding: 'utf8' | 'base64';
} {
  if (body === undefined) return { body: '', bodyEncoding: 'utf8' };
  if (typeof body === 'string') return { body, bodyEncoding: 'utf8' };
  try {
    return { body: new TextDecoder('utf-8', { fatal: true }).decode(body), bodyEncoding: 'utf8' };
  } catch {
    return { body: body.toString('base64'), bodyEncoding: 'base64' };
  }
}

/** Console lines, capped as a record caps them. */
function capLogs(lines: string[]): { logs: string[]; logsTruncated?: true } {
  const logs: string[] = [];
  let chars = 0;
  for (const line of lines) {
    chars += line.length;
    if (chars > MAX_LOG_CHARS) return { logs, logsTruncated: true };
    logs.push(line);
  }
  return { logs };
}

/** A draft that fails to load is a 422, as a deploy is (functions.ts): threw, hung or crashed. */
function refused(err: unknown): unknown {
  if (err instanceof FunctionCompileError) {
    err.statusCode = 422;
    return err;
  }
  if (err instanceof FunctionTimeoutError || err instanceof WorkerCrashedError) {
    const loadError = new FunctionCompileError(`the file does not load: ${err.message}`);
    loadError.statusCode = 422;
    return loadError;
  }
  return err;
}

/** Registers POST /_/drafts/<name> on the admin router (its prefix is /_). */
export function draftRoutes(router: Router, parts: DraftParts, auth: Middleware): void {
  const { pool, data, configLimits } = parts;

  router.post('/drafts/*name', auth, async (ctx) => {
    const state = ctx.state as RequestState;
    const started = performance.now();
    const name = exactFunctionName(ctx.path.slice('/_/drafts'.length));
    const { source, language, request } = readDraft((ctx.request as { body?: unknown }).body);
    const file = `${name}.${language}`;
    const version = versionOf(source, file);
    const throwaway = `${name}~draft-${randomUUID()}`;
    // Messages name the throwaway; the user knows it as their function's draft.
    const shown = (text: string) => text.split(throwaway).join(`${name} (draft)`);

    // Compiled and loaded as a deploy is (functions.ts): a draft that a deploy would refuse is a 422.
    let compiled: CompiledFunction | undefined;
    let fn: FunctionVersion;
    try {
      compiled = await compileFunction(source, file, { functionsDir: parts.functionsDir?.() });
      const checked = await pool.run({
        name: throwaway,
        version: compiled.version ?? version,
        source: compiled.code,
        file: compiled.filename,
        eventJson: '',
        requestId: state.requestId,
        check: true,
      });
      const config = parseFunctionConfig(toResponse(checked.outcome).body as string, configLimits);
      fn = {
        name: throwaway,
        file,
        version,
        source,
        compiled,
        config,
        bytes: Buffer.byteLength(source),
        modified: new Date(),
        layer: 'draft',
      };
    } catch (err) {
      const answer = refused(inUserFile(compiled, err));
      if (answer instanceof FaasError) answer.message = shown(answer.message);
      throw answer;
    }

    const eventJson = await draftEvent(name, request, fn.config.rawBody === true);
    let answer: { status: number; headers: Record<string, string | string[]>; body?: unknown };
    let logs: string[] = [];
    let timing: { queue?: number; exec?: number; cold?: boolean } = {};
    let effects = false;
    try {
      const ran = await invokeVersion(
        { pool, secrets: (names) => data.secrets.values(names) },
        { fn, eventJson, requestId: state.requestId },
      );
      logs = ran.logs.map(shown);
      effects = ran.result.effects;
      timing = { queue: ran.result.queueMs, exec: ran.result.execMs, cold: ran.result.cold };
      try {
        answer = ran.response();
      } catch (err) {
        const { status, body } = toErrorBody(err, state.requestId);
        answer = { status, headers: { 'content-type': 'application/json; charset=utf-8' }, body };
      }
    } catch (err) {
      // Timeout, crash, overload: the answer the caller would have had.
      effects = factsOf(err)?.effects ?? true;
      const { status, body } = toErrorBody(err, state.requestId);
      answer = {
        status,
        headers: {
          'content-type': 'application/json; charset=utf-8',
          ...(err as FaasError).headers,
        },
        body,
      };
    } finally {
      // A draft that broke its worker was quarantined under its throwaway name: never called
      // again, so it goes now rather than count as a quarantined function forever.
      pool.forgetQuarantine(throwaway);
      await forget(
        data,
        throwaway,
        effects,
        fn.config.timeoutMs ?? configLimits.maxTimeoutMs,
        state,
      );
    }
    const encoded =
      answer.body === undefined || typeof answer.body === 'string' || Buffer.isBuffer(answer.body)
        ? encodeBody(answer.body as string | Buffer | undefined)
        : { body: JSON.stringify(answer.body), bodyEncoding: 'utf8' as const };
    const run: DraftRunAnswer = {
      status: answer.status,
      headers: answer.headers,
      body: shown(encoded.body),
      bodyEncoding: encoded.bodyEncoding,
      requestId: state.requestId,
      version,
      config: fn.config,
      cold: timing.cold ?? false,
      durationMs: {
        queue: timing.queue,
        exec: timing.exec,
        total: Math.round((performance.now() - started) * 100) / 100,
      },
      ...capLogs(logs),
    };
    ctx.body = run;
    state.log.info('draft run', { fn: name, version, status: answer.status });
  });
}

/**
 * Clears the draft's KV namespace now and, when it made an effect (a write may still be in
 * flight, bounded by its deadline), once more after that deadline. A store that is away leaves
 * at most the draft's own keys, which nothing can read; it is logged.
 */
async function forget(
  data: DataStores,
  ns: string,
  effects: boolean,
  timeoutMs: number,
  state: RequestState,
): Promise<void> {
  const clear = () =>
    data.kv.clear(ns).catch((err: unknown) => {
      state.log.warn('could not clear a draft run KV namespace', { err });
      return 0;
    });
  if (!effects) return;
  await clear();
  setTimeout(() => void clear(), timeoutMs + 1000).unref();
}
