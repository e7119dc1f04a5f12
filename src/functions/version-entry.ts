/**
 * One entry of the store's cache: a version of a function with what tells whether its source
 * changed, and the two steps that make it ready to run, each done once per version. It is
 * compiled when read (transform.ts: ES modules and TypeScript become a script; bundle.ts: a file
 * that imports packages, or a package folder, becomes one self-contained script), then loaded once
 * on a worker, which reports the file's exported config (validated by function-config.ts). A
 * version that fails either step keeps its compile error and is never invoked.
 */
import type fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FunctionCompileError } from '../errors';
import { bundlePackage } from './bundle';
import { stampsOf } from './bundle-files';
import type { FileStamp } from './bundle-files';
import { nameOfFile } from './folder-index';
import { parseFunctionConfig } from './function-config';
import type { ConfigLimits } from './function-config';
import { hashSource, versionOf } from './function-source';
import type { FunctionVersion, Layer, VersionLoader } from './function-version';
import { compileFunction, fromBundle, inUserFile } from './transform';
import type { CompileOptions } from './transform';

export interface Entry {
  fn: FunctionVersion;
  /** The file's real path; '' for a shared deploy. */
  realPath: string;
  ino: number;
  /** The hash of the source as read (`fn.version` is the bundle's when it imports). */
  sourceVersion?: string;
  /** The file's mtime as stat gives it (sub-millisecond: `fn.modified` is rounded). */
  mtimeMs: number;
  checkedAt: number;
  /**
   * For a bundle (a package, or a file that imports packages), and for one that failed: the
   * other files to stat to know it is unchanged (bundle.ts).
   */
  stamps?: FileStamp[];
  /** The worker load of this version, once started (see VersionLoader). */
  loading?: Promise<void>;
  /** Whether it is loaded (or cannot be: a compile error), so `get` answers at once. */
  loaded?: boolean;
}

/**
 * A new entry for a version read at `checkedAt`, compiled (not loaded yet). `tooLarge`: the
 * version was not read, being too large; it is cached with that error.
 */
export async function compileEntry(
  file: string,
  realPath: string,
  source: string,
  stat: Pick<fs.Stats, 'size' | 'mtimeMs' | 'ino'>,
  checkedAt: number,
  layer: Layer,
  tooLarge?: FunctionCompileError,
  options: CompileOptions = {},
): Promise<Entry> {
  const fn: FunctionVersion = {
    name: nameOfFile(file) as string,
    file,
    version: versionOf(source, file),
    source,
    config: Object.freeze({}),
    bytes: stat.size,
    modified: new Date(stat.mtimeMs),
    compileError: tooLarge,
    layer,
  };
  let stamps: FileStamp[] | undefined;
  if (!tooLarge) {
    try {
      fn.compiled = await compileFunction(source, file, options);
      if (fn.compiled.version) fn.version = fn.compiled.version;
      stamps = fn.compiled.stamps;
    } catch (err) {
      if (!(err instanceof FunctionCompileError)) throw err;
      fn.compileError = err;
      stamps = stampsOf(err);
    }
  }
  const sourceVersion = versionOf(source, file);
  return { fn, realPath, ino: stat.ino, mtimeMs: stat.mtimeMs, checkedAt, stamps, sourceVersion };
}

/**
 * A new entry for a package function (docs/spec.md §2 "Packages"): the folder `name` at
 * `realPath` bundled (bundle.ts), not loaded yet. Its `file` is its entry file (`zodfn/index.ts`),
 * its `source` that file as written, its version the bundle's; a package that does not bundle
 * keeps the compile error, and the stamps of the files that may fix it.
 */
export async function compilePackageEntry(
  name: string,
  realPath: string,
  checkedAt: number,
  options: CompileOptions,
): Promise<Entry> {
  const manifest = await fsp.stat(path.join(realPath, 'package.json'));
  const fn: FunctionVersion = {
    name,
    file: `${name}/package.json`,
    version: '',
    source: '',
    config: Object.freeze({}),
    bytes: 0,
    modified: new Date(manifest.mtimeMs),
    layer: 'file',
  };
  let stamps: FileStamp[] | undefined;
  try {
    const bundle = await bundlePackage(realPath, {
      name,
      functionsDir: options.functionsDir,
      maxBytes: options.maxBundleBytes,
    });
    fn.file = `${name}/${bundle.package.entry}`;
    fn.source = await fsp.readFile(bundle.entry, 'utf8');
    fn.bytes = Buffer.byteLength(fn.source);
    fn.version = bundle.version;
    fn.compiled = { ...fromBundle(bundle, fn.file), package: bundle.package };
    stamps = bundle.stamps;
    fn.modified = new Date(Math.max(...stamps.map((stamp) => stamp.mtimeMs)));
  } catch (err) {
    if (!(err instanceof FunctionCompileError)) throw err;
    fn.compileError = err;
    stamps = stampsOf(err);
    fn.version = hashSource(`${manifest.mtimeMs}\0${err.message}`);
  }
  return { fn, realPath, ino: manifest.ino, mtimeMs: manifest.mtimeMs, checkedAt, stamps };
}

/**
 * Loads a version once on a worker (see VersionLoader) and validates its config. A compile
 * error is kept with the version; any other failure is passed on, and the next request tries
 * again. Without a loader (tests of the store alone) the version counts as loaded, config empty.
 */
export async function loadEntry(
  entry: Entry,
  loader: VersionLoader | undefined,
  limits: ConfigLimits,
): Promise<void> {
  const joined = entry.loading;
  if (!joined) return startLoad(entry, loader, limits);
  try {
    await joined;
  } catch {
    // The load this call joined failed for its own caller (a timeout or a crash, perhaps a
    // neighbour's on its worker): it made no effect, so this call loads again, on its own
    // deadline, rather than inherit an error that belongs to a request older than itself.
    await startLoad(entry, loader, limits);
  }
}

function startLoad(
  entry: Entry,
  loader: VersionLoader | undefined,
  limits: ConfigLimits,
): Promise<void> {
  const { fn } = entry;
  if (entry.loaded) return Promise.resolve();
  if (fn.compileError || !loader || !fn.compiled) {
    entry.loaded = true;
    return Promise.resolve();
  }
  const compiled = fn.compiled;
  entry.loading ??= (async () => {
    try {
      fn.config = parseFunctionConfig(await loader(fn, compiled), limits);
    } catch (err) {
      if (!(err instanceof FunctionCompileError)) throw err;
      fn.compileError = inUserFile(fn.compiled, err);
    }
    entry.loaded = true;
  })().catch((err: unknown) => {
    entry.loading = undefined;
    throw err;
  });
  return entry.loading;
}
