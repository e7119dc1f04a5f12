/**
 * One run of a function version for an event, as runFaaS (a request) and the async runner (a
 * queued invocation) both do it: `context.env` and `context.secrets` with it, the pool, the
 * console lines with every secret value masked, and the outcome turned into the response the
 * caller gets (response.ts) or the error it gets.
 */
import { FunctionError, InvalidResultError } from '../errors';
import { inUserFile } from '../functions/function-store';
import type { FunctionVersion, VersionLoader } from '../functions/function-store';
import type { Logger } from '../observe/logger';
import type { InvocationResult, SandboxPool } from '../pool/sandbox-pool';
import { maskSecrets } from '../services/secret-mask';
import { toResponse } from './response';
import type { HttpResponse } from './response';

export { maskSecrets };

/**
 * The function store's loader (VersionLoader): a new version's file runs once on a worker, which
 * keeps it warm there and reports the file's exported config as JSON text.
 */
export function loadOnPool(pool: SandboxPool): VersionLoader {
  return async (fn, compiled) => {
    const loaded = await pool.run({
      name: fn.name,
      version: fn.version,
      source: compiled.code,
      file: compiled.filename,
      eventJson: '',
      requestId: `load-${fn.version}`,
      check: true,
      keep: true,
    });
    return toResponse(loaded.outcome).body as string;
  };
}

/** The secrets a function declared, by name; the secrets service of the server. */
export type SecretValues = (names: readonly string[]) => Promise<Record<string, string>>;

export interface InvokeParts {
  pool: SandboxPool;
  secrets?: SecretValues;
}

export interface Invocation {
  fn: FunctionVersion;
  eventJson: string;
  requestId: string;
  /** `context.attempt` (docs/spec.md §9); 1 when absent. */
  attempt?: number;
}

/** A settled run: what the pool reported, and the response it makes. */
export interface Ran {
  result: InvocationResult;
  /** The function's console lines, secret values masked. */
  logs: string[];
  /**
   * The response the caller gets.
   * @throws FunctionError (secret values masked), InvalidResultError, FunctionCompileError, with
   *   positions in the user's own file.
   */
  response(): HttpResponse;
}

const CONSOLE_LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/** Writes a function's console lines to the server log, tagged with its request and function. */
export function logConsole(log: Logger, lines: string[]): void {
  for (const line of lines) {
    const tab = line.indexOf('\t');
    const level = line.slice(0, tab);
    const method = CONSOLE_LEVELS.has(level)
      ? (level as 'debug' | 'info' | 'warn' | 'error')
      : 'info';
    log[method]('function console', { console: line.slice(tab + 1) });
  }
}

/**
 * Runs a loaded, compiled version once.
 * @throws what the pool throws (FunctionTimeoutError, WorkerCrashedError, OverloadedError,
 *   ShuttingDownError…) and KV_UNAVAILABLE when the secrets cannot be read.
 */
export async function invokeVersion(parts: InvokeParts, invocation: Invocation): Promise<Ran> {
  const { fn } = invocation;
  const { config } = fn;
  const compiled = fn.compiled as NonNullable<typeof fn.compiled>;
  // context.env and context.secrets travel with the invocation, for functions that have them.
  let contextJson: string | undefined;
  let secretValues: string[] = [];
  if (config.env || config.secrets) {
    const values = config.secrets && parts.secrets ? await parts.secrets(config.secrets) : {};
    secretValues = Object.values(values);
    contextJson = JSON.stringify({ env: config.env ?? {}, secrets: values });
  }
  const result = await parts.pool.run({
    name: fn.name,
    version: fn.version,
    source: compiled.code,
    file: compiled.filename,
    eventJson: invocation.eventJson,
    requestId: invocation.requestId,
    timeoutMs: config.timeoutMs,
    contextJson,
    attempt: invocation.attempt,
    maxConcurrency: config.maxConcurrency,
  });
  // A secret's value never reaches a log line, a record or an error answer (docs/spec.md §8).
  const logs =
    secretValues.length === 0 ? result.logs : result.logs.map((l) => maskSecrets(l, secretValues));
  return {
    result,
    logs,
    response() {
      try {
        return toResponse(result.outcome);
      } catch (err) {
        const mapped = inUserFile(fn.compiled, err);
        if (secretValues.length > 0 && mapped instanceof FunctionError) {
          throw new FunctionError(
            maskSecrets(mapped.type, secretValues),
            maskSecrets(mapped.message, secretValues),
            mapped.functionStack && maskSecrets(mapped.functionStack, secretValues),
          );
        }
        // A result that cannot be sent says why, in words the function chose (a toJSON that
        // throws its own message).
        if (secretValues.length > 0 && mapped instanceof InvalidResultError) {
          throw new InvalidResultError(maskSecrets(mapped.message, secretValues));
        }
        throw mapped;
      }
    },
  };
}
