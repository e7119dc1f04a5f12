/**
 * Bundling a function with what it imports (docs/spec.md §2 "Packages"), in the server when it
 * loads a version and in the CLI before an upload: the same module, the same rules, the same
 * errors. esbuild reads the function's files and the npm packages it imports and writes one
 * self-contained script with a source map; the sandbox runs that script as it runs a single file.
 *
 * The rules, each enforced while esbuild resolves an import (so a refusal names the import's
 * file, line and the chain of imports that led to it):
 * - a package function (a folder with a package.json) imports its own files, and packages from
 *   its own node_modules, then from FUNCTIONS_DIR/node_modules; a single-file function imports
 *   packages from FUNCTIONS_DIR/node_modules only. Nothing resolves outside those folders (a
 *   symlink out of them, `../`, an absolute path, the server's own node_modules);
 * - a Node built-in is either one of STAND_INS (a pure-JS npm package of the server's bundled in
 *   its place) or refused by name; a package's `browser` field may map one away first;
 * - a native addon (`.node`), and a file no loader reads (`.css`, `.wasm`), is refused;
 * - the bundle is at most `maxBytes` (MAX_BUNDLE_BYTES), a file it reads FILE_BYTES_FACTOR times
 *   that;
 * - every file read is a regular file (never a FIFO or a device: a build never hangs on one, nor
 *   reads without end), and the manifests esbuild reads itself (package.json, Yarn's .pnp files)
 *   are checked before it starts (checkManifests).
 *
 * The version of a bundle is the hash of every file it read (and of the lockfile), so editing
 * any of them, or installing, makes a new version; `stamps` tell the store what to stat to know
 * that nothing changed.
 *
 * The parts: bundle-resolver.ts (the rules, while esbuild resolves), bundle-files.ts (safe reads,
 * manifests, stamps), package-entry.ts (a package's entry), bundle-info.ts (what the API shows).
 */
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import type { SourceMapPayload } from 'node:module';
import path from 'node:path';
import type { BuildOptions, Loader, Message, Metafile } from 'esbuild';
import { FunctionCompileError } from '../errors';
import {
  FILE_BYTES_FACTOR,
  MAX_MANIFEST_BYTES,
  checkManifests,
  foldersUpTo,
  inside,
  lockfiles,
  readRegular,
  stampOf,
  withStamps,
} from './bundle-files';
import type { FileStamp } from './bundle-files';
import type { BundleInfo, PackageInfo } from './bundle-info';
import { INJECT, Resolver, STAND_IN, packageOf } from './bundle-resolver';
import { compileError } from './compile-errors';
import { isBuildFailure, runEsbuild } from './esbuild-service';
import { packageEntry } from './package-entry';
import type { PackageEntry } from './package-entry';

/** The default of MAX_BUNDLE_BYTES: the largest bundle (script, without its source map). */
export const DEFAULT_MAX_BUNDLE_BYTES = 5 * 1024 * 1024;

export interface Bundle {
  /** The script the sandbox runs: CommonJS (`module.exports`), no imports left. */
  code: string;
  /**
   * Maps `code` to the files it was made of. Sources are named `<name>/index.ts`,
   * `<name>/node_modules/zod/…` (a package), `node_modules/ms/index.js` (FUNCTIONS_DIR's), or
   * `koa-faas:buffer/index.js` (a stand-in); no sources' content.
   */
  sourceMap: SourceMapPayload;
  /** 16 hex digits of the SHA-256 of every input file and the lockfile. */
  version: string;
  stamps: FileStamp[];
  info: BundleInfo;
  /** Whether the entry is an ES module (its code is strict mode code). */
  esm: boolean;
}

/** What is the same in every bundle's build. */
function bundleOptions(resolver: Resolver): BuildOptions {
  return {
    bundle: true,
    write: false,
    absWorkingDir: resolver.scope.base,
    outfile: path.join(resolver.scope.base, `${resolver.scope.name.replace(/\//g, '-')}.bundle.js`),
    format: 'cjs',
    // Like a Worker: packages' browser builds (no fs, no net), no Node built-ins but STAND_INS.
    platform: 'browser',
    conditions: ['worker', 'browser'],
    // The sandbox runs on the server's Node, at least 20.
    target: 'node20',
    define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
    inject: [INJECT],
    // Never read a tsconfig.json from disk: the same build on every machine.
    tsconfigRaw: {},
    charset: 'utf8',
    legalComments: 'eof',
    sourcemap: 'external',
    sourcesContent: false,
    metafile: true,
    logLevel: 'silent',
    // A computed require or import() in a package is left (it throws if reached, as it would in a
    // browser); in the function's own files it is an error (see ownWarnings).
    // Reported as warnings even inside a try block (esbuild's default is silence there).
    logOverride: {
      'empty-import-meta': 'error',
      'commonjs-variable-in-esm': 'error',
      'unsupported-dynamic-import': 'warning',
      'unsupported-require-call': 'warning',
    },
    plugins: [resolver.plugin()],
  };
}

/** Warnings esbuild gives about the function's own files that mean a broken function. */
const OWN_ERRORS = new Set(['unsupported-dynamic-import', 'unsupported-require-call']);

/** The version: every input's name and hash, and the lockfiles, in one SHA-256. */
function versionOf(resolver: Resolver, extra: [string, string][]): string {
  const hash = createHash('sha256');
  const named = [...resolver.inputs].map(
    ([file, input]) => [path.relative(resolver.scope.base, file), input.hash] as const,
  );
  for (const [name, digest] of [...named, ...extra].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    hash.update(`${name}\0${digest}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}

/** The installed version of every npm package bundled. */
async function installedPackages(resolver: Resolver): Promise<Record<string, string>> {
  const found = new Map<string, string>();
  for (const file of resolver.inputs.keys()) {
    const pkg = packageOf(file);
    if (pkg === undefined || found.has(pkg)) continue;
    const marker = `node_modules${path.sep}`;
    const root = file.slice(0, file.lastIndexOf(marker) + marker.length) + pkg;
    try {
      const { contents } = await readRegular(path.join(root, 'package.json'), MAX_MANIFEST_BYTES);
      const json = JSON.parse(contents.toString('utf8')) as {
        version?: unknown;
      };
      found.set(pkg, typeof json.version === 'string' ? json.version : '');
    } catch {
      found.set(pkg, '');
    }
  }
  return Object.fromEntries([...found].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
}

/** The source map, with sources named for people (see Bundle.sourceMap). */
function namedMap(resolver: Resolver, text: string): SourceMapPayload {
  const map = JSON.parse(text) as SourceMapPayload;
  const { base, name, packageDir } = resolver.scope;
  const sources = map.sources.map((source) => {
    if (source.startsWith(`${STAND_IN}:`)) return `koa-faas:${source.slice(STAND_IN.length + 1)}`;
    if (source.includes(':') && !source.startsWith('.') && !source.startsWith('/')) return source;
    const file = path.resolve(base, source);
    if (packageDir && inside(file, packageDir)) {
      return `${name}/${path.relative(packageDir, file).split(path.sep).join('/')}`;
    }
    if (inside(file, base)) return path.relative(base, file).split(path.sep).join('/');
    const shown = resolver.shown(file);
    return shown.startsWith('koa-faas:') ? shown : `koa-faas:${shown}`;
  });
  return { ...map, file: name, sources, sourceRoot: '', sourcesContent: [] };
}

/** The compile error for a failed build: the first error, in the words compile-errors.ts uses. */
function failure(errors: Message[], file: string, resolver: Resolver): FunctionCompileError {
  return compileError(errors, file, undefined, (message) => {
    const located = message.location?.file;
    if (!located) return undefined;
    const abs = path.resolve(resolver.scope.base, located);
    return abs === resolver.scope.entry ? undefined : resolver.shown(abs);
  });
}

/** The largest packages (or own files) in a bundle, for a too-large error. */
function largest(metafile: Metafile, resolver: Resolver): string {
  const sizes = new Map<string, number>();
  const output = Object.values(metafile.outputs).find((o) => o.entryPoint !== undefined);
  for (const [input, { bytesInOutput }] of Object.entries(output?.inputs ?? {})) {
    const file = path.resolve(resolver.scope.base, input);
    const key = packageOf(file) ?? resolver.shown(file);
    sizes.set(key, (sizes.get(key) ?? 0) + bytesInOutput);
  }
  return [...sizes]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([key, bytes]) => `${key} ${(bytes / 1024).toFixed(0)} KiB`)
    .join(', ');
}

/** Runs one bundle build and makes a Bundle of it (or the compile error that says why not). */
async function run(
  resolver: Resolver,
  options: BuildOptions,
  file: string,
  maxBytes: number,
  extraStamps: FileStamp[],
  extraHashes: [string, string][],
): Promise<Bundle> {
  const stampsSoFar = () => [
    ...[...resolver.inputs.values()].map((input) => input.stamp),
    ...extraStamps,
  ];
  const failed = async (err: FunctionCompileError) =>
    withStamps(err, [
      ...stampsSoFar(),
      ...(await Promise.all([...resolver.awaited].map((file) => stampOf(file)))),
    ]);
  let result: Awaited<ReturnType<typeof runEsbuild>>;
  try {
    result = await runEsbuild(options);
  } catch (err) {
    if (!isBuildFailure(err) || err.errors.length === 0) throw err;
    throw await failed(failure(err.errors, file, resolver));
  }
  const own = result.warnings.filter(
    (warning) =>
      OWN_ERRORS.has(warning.id) &&
      warning.location &&
      packageOf(path.resolve(resolver.scope.base, warning.location.file)) === undefined,
  );
  if (own.length > 0) throw withStamps(failure(own, file, resolver), stampsSoFar());
  let code = '';
  let mapText = '';
  for (const output of result.outputFiles ?? []) {
    if (output.path.endsWith('.map')) mapText = output.text;
    else code = output.text;
  }
  // esbuild ends the script with a sourceMappingURL comment naming a file that is never written.
  code = code.replace(/\n\/\/# sourceMappingURL=[^\n]*\n?$/, '\n');
  const bytes = Buffer.byteLength(code);
  if (bytes > maxBytes) {
    throw withStamps(
      new FunctionCompileError(
        `${file}: the bundle is ${bytes} bytes; at most ${maxBytes} (MAX_BUNDLE_BYTES). ` +
          `The largest parts: ${largest(result.metafile as Metafile, resolver)}`,
      ),
      stampsSoFar(),
    );
  }
  const metafile = result.metafile as Metafile;
  const entryInput = Object.entries(metafile.inputs).find(
    ([input]) => path.resolve(resolver.scope.base, input) === resolver.scope.entry,
  );
  const stamps = stampsSoFar();
  return {
    code,
    sourceMap: namedMap(resolver, mapText),
    version: versionOf(resolver, extraHashes),
    stamps,
    info: {
      bytes,
      sourceMapBytes: Buffer.byteLength(mapText),
      modules: Object.keys(metafile.inputs).length,
      packages: await installedPackages(resolver),
      standIns: [...resolver.usedStandIns].sort(),
    },
    esm: entryInput?.[1].format === 'esm',
  };
}

export interface SingleFileOptions {
  /** FUNCTIONS_DIR's real path: packages resolve in its node_modules (none without it). */
  functionsDir?: string;
  maxBytes?: number;
}

/**
 * Bundles a single-file function that imports packages (from FUNCTIONS_DIR/node_modules).
 * `file` is its name relative to FUNCTIONS_DIR (`a/b.ts`), `source` its text.
 * @throws FunctionCompileError (compile-errors.ts): a missing package, an import of another file,
 *   a refused built-in or addon (with the chain of imports), a syntax error, a bundle over
 *   `maxBytes`, a file that is not a regular file or is over FILE_BYTES_FACTOR × `maxBytes`, a
 *   package.json (or PnP manifest) esbuild would read that is not a regular file inside the
 *   folders (checkManifests).
 */
export async function bundleFile(
  source: string,
  file: string,
  loader: Loader,
  options: SingleFileOptions = {},
): Promise<Bundle> {
  const base = options.functionsDir ?? path.resolve('/nonexistent-functions-dir');
  const sharedModules = options.functionsDir
    ? await fsp.realpath(path.join(options.functionsDir, 'node_modules')).catch(() => undefined)
    : undefined;
  const entry = path.join(base, file);
  const resolver = new Resolver({
    name: file,
    sharedModules,
    base,
    entry,
    entryName: file,
    maxFileBytes: FILE_BYTES_FACTOR * (options.maxBytes ?? DEFAULT_MAX_BUNDLE_BYTES),
    installHint: (pkg) =>
      options.functionsDir
        ? `run \`npm install ${pkg}\` in FUNCTIONS_DIR, or make the function a package folder (docs/packages.md)`
        : 'no FUNCTIONS_DIR/node_modules to import it from',
  });
  const build: BuildOptions = {
    ...bundleOptions(resolver),
    stdin: { contents: source, sourcefile: file, loader, resolveDir: path.dirname(entry) },
    // Keep the seed form's bare function expression: it is the file's completion value.
    treeShaking: false,
  };
  const lock = options.functionsDir
    ? await lockfiles(options.functionsDir)
    : { hashes: [], stamps: [] };
  if (options.functionsDir) {
    const parents = foldersUpTo(path.dirname(entry), options.functionsDir);
    try {
      await checkManifests(
        parents.map((dir) => path.join(dir, 'node_modules')),
        parents,
        options.functionsDir,
      );
    } catch (err) {
      if (err instanceof FunctionCompileError) {
        throw withStamps(new FunctionCompileError(`${file}: ${err.message}`), lock.stamps);
      }
      throw err;
    }
  }
  const own: [string, string][] = [
    [`\0${file}`, createHash('sha256').update(source).digest('hex')],
  ];
  const bundle = await run(
    resolver,
    build,
    file,
    options.maxBytes ?? DEFAULT_MAX_BUNDLE_BYTES,
    lock.stamps,
    [...own, ...lock.hashes],
  );
  // A single file's own name in its map is the file's, as before it imported anything.
  bundle.sourceMap.sources = bundle.sourceMap.sources.map((s) =>
    s === `koa-faas:${file}` || s === path.basename(file) ? file : s,
  );
  return bundle;
}

export interface PackageOptions {
  /** The function's name (`zodfn`), the prefix of its sources. */
  name: string;
  /** FUNCTIONS_DIR's real path (the server), so its node_modules is searched second. */
  functionsDir?: string;
  maxBytes?: number;
  /** What to say to install a missing package; default: npm install in the folder. */
  installHint?: (pkg: string) => string;
}

/**
 * Bundles a package function: the folder `dir` (its real path) holding a package.json.
 * @throws FunctionCompileError as bundleFile, and as packageEntry.
 */
export async function bundlePackage(
  dir: string,
  options: PackageOptions,
): Promise<Bundle & { package: PackageInfo; entry: string }> {
  const packageDir = await fsp.realpath(dir);
  const lock = await lockfiles(packageDir);
  if (options.functionsDir)
    lock.stamps.push(await stampOf(path.join(options.functionsDir, 'node_modules')));
  let found: PackageEntry;
  // In FUNCTIONS_DIR, esbuild also looks in its parents up to FUNCTIONS_DIR (and their node_modules).
  const { functionsDir } = options;
  const parents =
    functionsDir && inside(path.dirname(packageDir), functionsDir)
      ? foldersUpTo(path.dirname(packageDir), functionsDir)
      : [];
  try {
    found = await packageEntry(packageDir, options.name);
    await checkManifests(
      [packageDir, ...parents.map((dir) => path.join(dir, 'node_modules'))],
      parents,
      parents.length > 0 ? (functionsDir as string) : packageDir,
    );
  } catch (err) {
    if (err instanceof FunctionCompileError) throw withStamps(err, lock.stamps);
    throw err;
  }
  const { entry, info } = found;
  const sharedModules = options.functionsDir
    ? await fsp.realpath(path.join(options.functionsDir, 'node_modules')).catch(() => undefined)
    : undefined;
  const resolver = new Resolver({
    name: options.name,
    packageDir,
    sharedModules,
    base: packageDir,
    entry,
    entryName: info.entry,
    maxFileBytes: FILE_BYTES_FACTOR * (options.maxBytes ?? DEFAULT_MAX_BUNDLE_BYTES),
    installHint:
      options.installHint ??
      ((pkg) =>
        `add '${pkg}' to ${options.name}/package.json and run \`npm install\` in the folder` +
        (sharedModules ? ' (or install it in FUNCTIONS_DIR)' : '')),
  });
  const bundle = await run(
    resolver,
    { ...bundleOptions(resolver), entryPoints: [entry] },
    `${options.name}/${info.entry}`,
    options.maxBytes ?? DEFAULT_MAX_BUNDLE_BYTES,
    lock.stamps,
    lock.hashes.map(([key, digest]) => [path.relative(packageDir, key.slice(1)), digest]),
  );
  return { ...bundle, package: info, entry };
}
