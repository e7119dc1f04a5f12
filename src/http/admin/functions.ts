/**
 * The functions on disk (docs/spec.md §6): list, read (with source), deploy and delete, under
 * `/_/functions/<name>`. A deploy is compiled and loaded in a throwaway sandbox first: it must
 * yield a function, in time, with a valid config, or it is refused with 422 and nothing is
 * written.
 */
import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import {
  FunctionCompileError,
  FunctionTimeoutError,
  InvalidBodyError,
  WorkerCrashedError,
} from '../../errors';
import { parseFunctionConfig } from '../../functions/function-config';
import type { ConfigLimits, FunctionConfig } from '../../functions/function-config';
import { exactFunctionName, versionOf } from '../../functions/function-source';
import { functionInfo, inUserFile } from '../../functions/function-store';
import type { FunctionStore, Language } from '../../functions/function-store';
import { compileFunction } from '../../functions/transform';
import type { CompiledFunction } from '../../functions/transform';
import { toResponse } from '../../invocation/response';
import type { Metrics } from '../../observe/metrics';
import type { SandboxPool } from '../../pool/sandbox-pool';
import type { RequestState } from '../error-handler';
import type { DeployAnswer, FunctionDetail, FunctionListAnswer, FunctionListing } from './api';

/** The function name in /_/functions/<name>, taken from the raw (undecoded) path. */
function nameParam(ctx: Context): string {
  return exactFunctionName(ctx.path.slice('/_/functions'.length));
}

const TYPESCRIPT = /^(application|text)\/(x-)?typescript$/i;

/** A deploy: the source to store, its language, and, for an uploaded bundle, its source map. */
interface DeployBody {
  source: string;
  language: Language;
}

/** The largest source map an upload may carry, bytes of JSON. */
const MAX_SOURCE_MAP_BYTES = 16 * 1024 * 1024;

/**
 * An uploaded bundle (docs/spec.md §6): its code with its source map inline, the one
 * self-contained file that is stored (and shared by replicas) and run as it is (transform.ts).
 * What the CLI says of the bundle (`bundle`, `package`) travels in the map as `x_koa_faas`.
 * @throws InvalidBodyError when the map is not a source map.
 */
function withInlineMap(source: string, map: unknown, about: Record<string, unknown>): string {
  const payload = map as { version?: unknown; sources?: unknown; mappings?: unknown };
  if (
    payload === null ||
    typeof payload !== 'object' ||
    payload.version !== 3 ||
    !Array.isArray(payload.sources) ||
    !payload.sources.every((s) => typeof s === 'string') ||
    typeof payload.mappings !== 'string'
  ) {
    throw new InvalidBodyError(
      'sourceMap must be a version 3 source map: {"version": 3, "sources": [...], "mappings": "..."}',
    );
  }
  const json = JSON.stringify({ ...payload, sourcesContent: undefined, x_koa_faas: about });
  if (json.length > MAX_SOURCE_MAP_BYTES) {
    throw new InvalidBodyError(`sourceMap is over ${MAX_SOURCE_MAP_BYTES} bytes`);
  }
  const code = source.replace(/\n\/\/# sourceMappingURL=[^\n]*\s*$/, '').replace(/\n?$/, '\n');
  return `${code}//# sourceMappingURL=data:application/json;base64,${Buffer.from(json).toString('base64')}\n`;
}

/**
 * The source of a deploy and its language: a JavaScript or text body (TypeScript with
 * `Content-Type: application/typescript`), or JSON `{ "source": "…", "language"?: "js" | "ts" }`,
 * or an uploaded bundle, JSON `{ "source": "…", "sourceMap": {…}, "bundle"?: {…}, "package"?: {…} }`
 * (`koa-faas deploy <folder>` sends it).
 */
function sourceFromBody(ctx: Context): DeployBody {
  const body = (ctx.request as { body?: unknown }).body;
  if (typeof body === 'string') {
    const source = ctx.state.bodyIsBase64 ? Buffer.from(body, 'base64').toString('utf8') : body;
    return { source, language: TYPESCRIPT.test(ctx.request.type) ? 'ts' : 'js' };
  }
  const fields = (body ?? {}) as Record<string, unknown>;
  const { source, language = 'js', sourceMap } = fields;
  if (typeof source === 'string' && sourceMap !== undefined && language === 'js') {
    const about: Record<string, unknown> = {};
    if (fields.bundle && typeof fields.bundle === 'object') about.bundle = fields.bundle;
    if (fields.package && typeof fields.package === 'object') about.package = fields.package;
    return { source: withInlineMap(source, sourceMap, about), language: 'js' };
  }
  if (typeof source === 'string' && (language === 'js' || language === 'ts')) {
    return { source, language };
  }
  throw new InvalidBodyError(
    'send the source as the body (application/javascript, application/typescript or text/plain), ' +
      'as JSON {"source": "…", "language": "js" | "ts"}, or a bundle as JSON ' +
      '{"source": "…", "sourceMap": {…}} (language js)',
  );
}

/** A deploy whose file fails to load is a 422, whether it threw, hung or crashed its worker. */
function refusedDeploy(err: unknown): unknown {
  if (err instanceof FunctionCompileError) {
    err.statusCode = 422;
    return err;
  }
  if (err instanceof FunctionTimeoutError || err instanceof WorkerCrashedError) {
    const refused = new FunctionCompileError(`the file does not load: ${err.message}`);
    refused.statusCode = 422;
    return refused;
  }
  return err;
}

export interface FunctionSources {
  store: FunctionStore;
  pool: SandboxPool;
  metrics: Metrics;
  /** Bounds for a deployed function's config (MAX_TIMEOUT_MS). */
  configLimits: ConfigLimits;
  /** MAX_BUNDLE_BYTES, for a deployed file that imports packages. */
  maxBundleBytes?: number;
}

/** Mounts /functions and /functions/<name> on the admin router. */
export function functionRoutes(router: Router, parts: FunctionSources, auth: Middleware): void {
  const { store, pool, metrics, configLimits } = parts;
  /** Whether this version is quarantined (docs/spec.md §3), and why: it runs alone until it runs clean. */
  const quarantineOf = (
    name: string,
    version: string | undefined,
  ): Pick<FunctionListing, 'quarantined' | 'quarantine'> => {
    const entry = pool.quarantineOf(name);
    if (entry === undefined || entry.version !== version) return { quarantined: false };
    const { since, reason, strikes, cleanRuns, cleanRunsNeeded } = entry;
    return {
      quarantined: true,
      quarantine: { since, reason, strikes, cleanRuns, cleanRunsNeeded },
    };
  };

  router.get('/functions', async (ctx) => {
    const counts = await metrics.invocationCounts();
    const answer: FunctionListAnswer = {
      functions: (await store.list()).map((fn) => ({
        ...fn,
        ...quarantineOf(fn.name, fn.version),
        invocations: counts.get(fn.name) ?? {},
      })),
    };
    ctx.body = answer;
  });

  router.get('/functions/*name', auth, async (ctx) => {
    const name = nameParam(ctx);
    const fn = await store.get(name);
    const counts = await metrics.invocationCounts();
    const answer: FunctionDetail = {
      ...functionInfo(fn),
      ...quarantineOf(name, fn.version),
      invocations: counts.get(name) ?? {},
      source: fn.source,
    };
    ctx.body = answer;
  });

  // A deploy: compile, load in a throwaway sandbox (it must yield a function, in time, with a
  // valid config), then write the file atomically.
  router.put('/functions/*name', auth, async (ctx) => {
    const state = ctx.state as RequestState;
    const name = nameParam(ctx);
    const { source, language } = sourceFromBody(ctx);
    const file = `${name}.${language}`;
    let config: FunctionConfig;
    let compiled: CompiledFunction | undefined;
    try {
      compiled = await compileFunction(source, file, {
        functionsDir: store.functionsDir,
        maxBundleBytes: parts.maxBundleBytes,
      });
      const checked = await pool.run({
        name,
        version: compiled.version ?? versionOf(source, file),
        source: compiled.code,
        file: compiled.filename,
        eventJson: '',
        requestId: state.requestId,
        check: true,
      });
      config = parseFunctionConfig(toResponse(checked.outcome).body as string, configLimits);
    } catch (err) {
      throw refusedDeploy(inUserFile(compiled, err));
    }
    const { created } = await store.write(name, source, language);
    ctx.status = created ? 201 : 200;
    const version = compiled.version ?? versionOf(source, file);
    const answer: DeployAnswer = {
      name,
      file,
      version,
      bytes: Buffer.byteLength(source),
      config,
      ...(compiled.bundle ? { bundle: compiled.bundle } : {}),
      ...(compiled.package ? { package: compiled.package } : {}),
    };
    ctx.body = answer;
  });

  router.delete('/functions/*name', auth, async (ctx) => {
    await store.remove(nameParam(ctx));
    ctx.status = 204;
  });
}
