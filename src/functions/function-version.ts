/**
 * What one version of a function is, as every part of the server sees it: the types the store
 * hands out (a version, its admin API summary, a request path resolved to one), the language of
 * a function file, the contract with the worker that loads a version, and the error for a name
 * that none serves. It imports nothing of the store or its layers, so each of them
 * (function-store.ts, folder-index.ts, file-layer.ts, shared-functions.ts) can import it
 * without a circle.
 */
import { FunctionNotFoundError } from '../errors';
import type { FunctionCompileError } from '../errors';
import type { FunctionConfig } from './function-config';
import type { BundleInfo, PackageInfo } from './bundle-info';
import type { CompiledFunction } from './transform';

/** The language of a function file, and its extension. */
export type Language = 'js' | 'ts';

/**
 * `file`: FUNCTIONS_DIR (or an API deploy without Redis, which writes a file); `shared`: an API
 * deploy in Redis; `draft`: a console draft run (admin/drafts.ts), never stored.
 */
export type Layer = 'file' | 'shared' | 'draft';

/** One version of a function, as read from disk (or from the shared layer). */
export interface FunctionVersion {
  name: string;
  /** The file, relative to FUNCTIONS_DIR: `a/b.js` or `a/b.ts`. */
  file: string;
  /** Content hash of the source (first 16 hex digits of its SHA-256). */
  version: string;
  /** The file as written. */
  source: string;
  /** What the sandbox runs (the source itself unless it had to be transformed). */
  compiled?: CompiledFunction;
  /** The file's validated `config` (§7); empty when it exports none or is not loaded yet. */
  config: FunctionConfig;
  bytes: number;
  modified: Date;
  /** Set when the source does not compile or load; such a version is never invoked. */
  compileError?: FunctionCompileError;
  /** Where it comes from: a file in FUNCTIONS_DIR, or a deploy shared through Redis. */
  layer: Layer;
}

/** A version as the admin API lists it (its JSON shape: FunctionInfo in http/admin/api.ts). */
export interface FunctionInfo {
  name: string;
  file: string;
  version: string;
  bytes: number;
  modified: string;
  status: 'ok' | 'compile_error';
  error?: string;
  errorFile?: string;
  line?: number;
  column?: number;
  config: FunctionConfig;
  layer: Layer;
  package?: PackageInfo;
  bundle?: BundleInfo;
}

/** What the admin API shows of a version (no source). */
export function functionInfo(fn: FunctionVersion): FunctionInfo {
  const error = fn.compileError;
  return {
    name: fn.name,
    file: fn.file,
    version: fn.version,
    bytes: fn.bytes,
    modified: fn.modified.toISOString(),
    status: error ? 'compile_error' : 'ok',
    ...(error ? { error: error.message, line: error.line, column: error.column } : {}),
    ...(error?.file !== undefined ? { errorFile: error.file } : {}),
    config: fn.config,
    layer: fn.layer,
    ...(fn.compiled?.package ? { package: fn.compiled.package } : {}),
    ...(fn.compiled?.bundle ? { bundle: fn.compiled.bundle } : {}),
  };
}

/** A request path resolved to a function (docs/spec.md §2 sub-paths). */
export interface Resolved {
  fn: FunctionVersion;
  /** The part of the path after the function's name, `''` when none, e.g. `/users/42`. */
  subpath: string;
  /** Whether resolving it waited for the version's first load on a worker (a cold start). */
  cold: boolean;
}

/**
 * Loads a compiled version once on a worker and resolves with its exported config as JSON text
 * (undefined or 'null' for none). Rejects with FunctionCompileError when the file does not load;
 * any other rejection (timeout, crash, overload) is passed on and the load is tried again later.
 */
export type VersionLoader = (
  fn: FunctionVersion,
  code: CompiledFunction,
) => Promise<string | undefined>;

/**
 * Told that the function `name` changed (or any under the folder `name`; any at all when
 * undefined).
 */
export type ChangeListener = (name: string | undefined) => void;

/** The error for a name no layer serves. */
export function notFound(name: string): FunctionNotFoundError {
  return new FunctionNotFoundError(`function '${name}' not found`);
}
