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

/**
 * The source of a deploy and its language: a JavaScript or text body (TypeScript with
 * `Content-Type: application/typescript`), or JSON `{ "source": "…", "language"?: "js" | "ts" }`.
 */
function sourceFromBody(ctx: Context): { source: string; language: Language } {
  const body = (ctx.request as { body?: unknown }).body;
  if (typeof body === 'string') {
    const source = ctx.state.bodyIsBase64 ? Buffer.from(body, 'base64').toString('utf8') : body;
    return { source, language: TYPESCRIPT.test(ctx.request.type) ? 'ts' : 'js' };
  }
  const { source, language = 'js' } = (body ?? {}) as { source?: unknown; language?: unknown };
  if (typeof source === 'string' && (language === 'js' || language === 'ts')) {
    return { source, language };
  }
  throw new InvalidBodyError(
    'send the source as the body (application/javascript, application/typescript or text/plain) ' +
      'or as JSON {"source": "…", "language": "js" | "ts"}',
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
      compiled = await compileFunction(source, file);
      const checked = await pool.run({
        name,
        version: versionOf(source, file),
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
    const version = versionOf(source, file);
    const answer: DeployAnswer = { name, file, version, bytes: Buffer.byteLength(source), config };
    ctx.body = answer;
  });

  router.delete('/functions/*name', auth, async (ctx) => {
    await store.remove(nameParam(ctx));
    ctx.status = 204;
  });
}
