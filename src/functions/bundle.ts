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
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import type { Dirent, Stats } from 'node:fs';
import fsp from 'node:fs/promises';
import { createRequire, isBuiltin } from 'node:module';
import type { SourceMapPayload } from 'node:module';
import path from 'node:path';
import type {
  BuildOptions,
  Loader,
  Message,
  Metafile,
  OnResolveArgs,
  Plugin,
  PluginBuild,
} from 'esbuild';
import { FunctionCompileError } from '../errors';
import { compileError } from './compile-errors';
import type { Refusal } from './compile-errors';
import { isBuildFailure, runEsbuild } from './esbuild-service';

/** The default of MAX_BUNDLE_BYTES: the largest bundle (script, without its source map). */
export const DEFAULT_MAX_BUNDLE_BYTES = 5 * 1024 * 1024;

/**
 * The Node built-ins a function may import, and the pure-JS package bundled in place of each
 * (browserify's, as webpack 4 and most bundlers used them). Every other built-in is refused.
 */
export const STAND_INS: Readonly<Record<string, string>> = {
  assert: 'assert/',
  buffer: 'buffer/',
  events: 'events/',
  path: 'path-browserify',
  'path/posix': 'path-browserify',
  process: 'process/browser.js',
  string_decoder: 'string_decoder/',
  url: 'url/',
  util: 'util/',
};

/** Files esbuild may read as modules, by extension. */
const LOADERS: Readonly<Record<string, Loader>> = {
  '.js': 'js',
  '.mjs': 'js',
  '.cjs': 'js',
  '.jsx': 'jsx',
  '.ts': 'ts',
  '.mts': 'ts',
  '.cts': 'ts',
  '.tsx': 'tsx',
  '.json': 'json',
};

/** The lockfiles whose contents a package's version covers. */
const LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml'];

/** The files esbuild reads itself while it resolves (a package.json, Yarn PnP's), never through onLoad. */
const MANIFESTS = new Set(['package.json', '.pnp.data.json', '.pnp.cjs', '.pnp.js']);
/** The largest manifest a build reads, bytes. */
const MAX_MANIFEST_BYTES = 1024 * 1024;
/** The largest lockfile whose contents a version covers, bytes (a larger one is stamped only). */
const MAX_LOCKFILE_BYTES = 64 * 1024 * 1024;
/**
 * A file a build reads is at most this many times MAX_BUNDLE_BYTES (a file may shrink in the
 * bundle, losing comments and types; the bundle's own size is checked after).
 */
const FILE_BYTES_FACTOR = 4;
/** The most entries checkManifests looks at (a node_modules of 300,000 files is refused). */
const MAX_CHECKED_ENTRIES = 300_000;

/** Marks esbuild's own resolution, asked for from inside the plugin, so the plugin lets it be. */
const RESOLVING = Symbol('resolving');
/** Modules that are not files: a disabled import (`browser: {fs: false}`), the process stand-in. */
const EMPTY = 'faas-empty';
const STAND_IN = 'faas-stand-in';
/** The module injected for a free `process`, and the process stand-in it imports. */
const INJECT = `${STAND_IN}:inject`;
const PROCESS = `${STAND_IN}:process`;

/** What the store stats to know that a bundle's inputs are unchanged (`missing`: it was absent). */
export interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
  missing?: boolean;
}

/** What a bundle is made of, as `GET /_/functions/<name>` shows it. */
export interface BundleInfo {
  /** The script's size, bytes. */
  bytes: number;
  sourceMapBytes: number;
  /** How many files it was made of. */
  modules: number;
  /** The npm packages bundled, with their installed versions: `{ "zod": "4.6.7" }`. */
  packages: Record<string, string>;
  /** The built-ins bundled as stand-ins: `["buffer", "events"]`. */
  standIns: string[];
}

/** A package function's package.json, as the admin API shows it. */
export interface PackageInfo {
  /** Its `name` and `version`, when it has them. */
  name?: string;
  version?: string;
  /** The entry file, relative to the folder: `index.ts`. */
  entry: string;
  /** Its `dependencies`, as declared. */
  dependencies: Record<string, string>;
}

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

/** Where a build may read, and how it names what it read. */
interface Scope {
  /** The function's name (`zodfn`), the prefix of its sources. */
  name: string;
  /** The package folder's real path; undefined for a single file. */
  packageDir?: string;
  /** FUNCTIONS_DIR/node_modules's real path, when there is one. */
  sharedModules?: string;
  /** The folder sources are named relative to (absWorkingDir). */
  base: string;
  /** The entry's absolute path (for a single file, where it would be: it is read from memory). */
  entry: string;
  /** How the entry is named in an import chain: `index.ts`, `a/b.js`. */
  entryName: string;
  /** What to say to install a missing package. */
  installHint: (pkg: string) => string;
  /** The largest file it may read (FILE_BYTES_FACTOR × MAX_BUNDLE_BYTES), bytes. */
  maxFileBytes: number;
}

let standInPaths: Map<string, string> | undefined;
let standInRoots: string[] = [];

/** The absolute path of each stand-in (resolved once, in the server's own node_modules). */
function standIns(): Map<string, string> {
  if (standInPaths) return standInPaths;
  const own = createRequire(__filename);
  const paths = new Map<string, string>();
  const roots = new Set<string>();
  for (const [builtin, pkg] of Object.entries(STAND_INS)) {
    const resolved = own.resolve(pkg);
    paths.set(builtin, resolved);
    roots.add(resolved.slice(0, resolved.lastIndexOf(`${path.sep}node_modules${path.sep}`) + 13));
  }
  standInRoots = [...roots];
  standInPaths = paths;
  return paths;
}

async function isFile(file: string): Promise<boolean> {
  return (await fsp.stat(file).catch(() => undefined))?.isFile() ?? false;
}

function inside(file: string, dir: string | undefined): boolean {
  return dir !== undefined && (file === dir || file.startsWith(dir + path.sep));
}

/** `zod` of `…/node_modules/zod/lib/x.js`, `@scope/pkg` of a scoped one; undefined outside. */
function packageOf(file: string): string | undefined {
  const marker = `node_modules${path.sep}`;
  const at = file.lastIndexOf(marker);
  if (at < 0) return undefined;
  const parts = file.slice(at + marker.length).split(path.sep);
  return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
}

/** The package a bare specifier names: `zod` of `zod/v4`, `@a/b` of `@a/b/c`. */
function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function isBare(spec: string): boolean {
  return !spec.startsWith('.') && !path.isAbsolute(spec);
}

/**
 * Reads a regular file of at most `limit` bytes, through one descriptor: a FIFO is opened without
 * blocking and refused, like a device, so a read never hangs nor goes on without end
 * (docs/spec.md §2 "Packages").
 * @throws Error saying what the file is instead (`not a regular file`, `N bytes; at most M`).
 */
async function readRegular(
  file: string,
  limit: number,
): Promise<{ contents: Buffer; stat: Stats }> {
  const handle = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > limit) throw new Error(`${stat.size} bytes; at most ${limit}`);
    const contents = Buffer.alloc(stat.size);
    let read = 0;
    while (read < contents.length) {
      const { bytesRead } = await handle.read(contents, read, contents.length - read, read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return { contents: contents.subarray(0, read), stat };
  } finally {
    await handle.close();
  }
}

/** The folder `dir` and its parents up to `top` (both included); only `dir` when it is not in `top`. */
function foldersUpTo(dir: string, top: string | undefined): string[] {
  const folders = [dir];
  if (!top || !inside(dir, top)) return folders;
  for (let at = dir; at !== top;) {
    at = path.dirname(at);
    folders.push(at);
  }
  return folders;
}

/**
 * esbuild reads package.json files (and Yarn PnP's manifests) itself, in every folder it looks
 * in while it resolves, with no limit and following links: a FIFO there would hang the build, a
 * link to /dev/zero exhaust esbuild's memory. So before a build every such file in the folders
 * it may look in (docs/spec.md §2 "Packages") must be a regular file inside `within` (the
 * function's folder, or FUNCTIONS_DIR) of at most MAX_MANIFEST_BYTES: the trees `roots` (each
 * node_modules it may search, the package folder), and the folders `parents` (up to
 * FUNCTIONS_DIR). A linked folder leading elsewhere inside `within` is checked too (esbuild
 * follows it, and looks in its parents).
 * @throws FunctionCompileError naming the first file that is not so (relative to `within`).
 */
async function checkManifests(roots: string[], parents: string[], within: string): Promise<void> {
  const shown = (file: string) => path.relative(within, file) || '.';
  const seen = new Set<string>();
  let entries = 0;
  const checkEntry = async (file: string) => {
    let real: string;
    try {
      real = await fsp.realpath(file);
    } catch {
      return; // a dangling link: esbuild sees no file either
    }
    const stat = await fsp.stat(real);
    if (stat.isDirectory()) return;
    let problem: string | undefined;
    if (!inside(real, within)) problem = 'it leads outside the folder';
    else if (!stat.isFile()) problem = 'not a regular file';
    else if (stat.size > MAX_MANIFEST_BYTES) {
      problem = `${stat.size} bytes; at most ${MAX_MANIFEST_BYTES}`;
    }
    if (problem) throw new FunctionCompileError(`${shown(file)}: ${problem}`);
  };
  const checkFolder = async (dir: string, walk: boolean) => {
    let items: Dirent[];
    try {
      items = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      return; // not there (or not a folder): esbuild finds nothing in it either
    }
    entries += items.length;
    if (entries > MAX_CHECKED_ENTRIES) {
      throw new FunctionCompileError(
        `${shown(dir)}: more than ${MAX_CHECKED_ENTRIES} files in the folders a bundle may read`,
      );
    }
    for (const item of items) {
      const file = path.join(dir, item.name);
      if (MANIFESTS.has(item.name)) await checkEntry(file);
      if (!walk) continue;
      if (item.isDirectory()) await visit(file);
      else if (item.isSymbolicLink()) {
        const real = await fsp.realpath(file).catch(() => undefined);
        if (real === undefined || !inside(real, within)) continue;
        if ((await fsp.stat(real)).isDirectory()) {
          for (const parent of foldersUpTo(path.dirname(real), within)) {
            await checkFolder(parent, false);
          }
          await visit(real);
        }
      }
    }
  };
  const visit = async (dir: string) => {
    if (seen.has(dir)) return;
    seen.add(dir);
    await checkFolder(dir, true);
  };
  for (const parent of parents) await checkFolder(parent, false);
  for (const root of roots) await visit(root);
}

/** The esbuild plugin that applies the rules (see the header) and records what it read. */
class Resolver {
  readonly scope: Scope;
  /** Who first imported each file (absolute paths): the chain of a refusal. */
  private readonly parents = new Map<string, string>();
  /**
   * The files of the stand-ins (and of their own dependencies), in our node_modules: each is a
   * module of the STAND_IN namespace named by its path in that node_modules (`buffer/index.js`),
   * so no path of the server's appears in a bundle, its map or its wrappers' names.
   */
  private readonly virtual = new Map<string, string>();
  /** Every file read, with its hash and stat. */
  readonly inputs = new Map<string, { hash: string; stamp: FileStamp }>();
  readonly usedStandIns = new Set<string>();
  /** Files whose appearance would change the build: the package.json of a missing package. */
  readonly awaited = new Set<string>();

  constructor(scope: Scope) {
    this.scope = scope;
  }

  /** How a file is named in a chain: `index.ts`, `zod/lib/x.js`, `koa-faas:buffer/index.js`. */
  shown(file: string): string {
    if (file === this.scope.entry) return this.scope.entryName;
    if (this.virtual.has(file) || file === 'process') return `koa-faas:${file}`;
    const pkg = packageOf(file);
    if (pkg !== undefined) {
      const marker = `node_modules${path.sep}`;
      return file.slice(file.lastIndexOf(marker) + marker.length);
    }
    if (this.scope.packageDir && inside(file, this.scope.packageDir)) {
      return path.relative(this.scope.packageDir, file);
    }
    return file;
  }

  /** `index.ts → some-pkg/lib/io.js` (the files that led to `file`, `file` last). */
  chain(file: string): string[] {
    const files = [file];
    for (let at = file; this.parents.has(at) && files.length < 50;) {
      at = this.parents.get(at) as string;
      files.unshift(at);
    }
    return files.map((f) => this.shown(f));
  }

  /** Whether a file is the function's own (not a package's, not a stand-in's). */
  private own(file: string): boolean {
    if (file === this.scope.entry) return true;
    return inside(file, this.scope.packageDir) && packageOf(file) === undefined;
  }

  private refuse(args: OnResolveArgs, refusal: Omit<Refusal, 'chain' | 'spec' | 'importKind'>) {
    const full: Refusal = {
      ...refusal,
      spec: args.path,
      importKind: args.kind,
      chain: this.chain(args.importer),
    };
    return { errors: [{ text: refusal.reason, detail: { refusal: full } }] };
  }

  /**
   * Refuses an import of a package that is not installed, and notes where its package.json would
   * be once it is (`awaited`), so that its install is a change of the version.
   */
  private missing(args: OnResolveArgs, pkg: string) {
    for (const dir of [
      this.scope.packageDir,
      this.scope.sharedModules && path.dirname(this.scope.sharedModules),
    ]) {
      if (dir) this.awaited.add(path.join(dir, 'node_modules', pkg, 'package.json'));
    }
    return this.refuse(args, {
      kind: 'missing',
      reason: `package '${pkg}' is not installed`,
      hint: this.scope.installHint(pkg),
    });
  }

  /** A file of our node_modules as a STAND_IN module (see `virtual`). */
  private standInModule(file: string, importer: string) {
    const root = standInRoots.find((dir) => inside(file, dir)) as string;
    const name = path.relative(root, file).split(path.sep).join('/');
    this.virtual.set(name, file);
    if (!this.parents.has(name)) this.parents.set(name, importer);
    return { path: name, namespace: STAND_IN };
  }

  /** The stand-in of a built-in (see STAND_INS), or its refusal. */
  private standIn(args: OnResolveArgs, builtin: string) {
    const file = standIns().get(builtin);
    if (file === undefined) {
      return this.refuse(args, { kind: 'builtin', reason: `node:${builtin}`, builtin });
    }
    this.usedStandIns.add(builtin);
    if (builtin === 'process') return { path: 'process', namespace: STAND_IN };
    return this.standInModule(file, args.importer);
  }

  /** An import made by a stand-in's module: resolved in our node_modules, and only there. */
  private async resolveForStandIn(build: PluginBuild, args: OnResolveArgs) {
    const spec = args.path;
    if (spec === PROCESS) return { path: 'process', namespace: STAND_IN };
    if (args.importer === 'process') return this.standInModule(spec, 'process');
    const builtin = spec.startsWith('node:') ? spec.slice(5) : isBuiltin(spec) ? spec : '';
    const resolved = await build.resolve(spec, {
      kind: args.kind,
      importer: this.virtual.get(args.importer),
      resolveDir: args.resolveDir,
      pluginData: RESOLVING,
    });
    if (resolved.errors.length === 0 && !(await isFile(resolved.path))) {
      return { path: spec, namespace: EMPTY };
    }
    if (builtin && (resolved.errors.length > 0 || packageOf(resolved.path) === builtin)) {
      return this.standIn(args, builtin);
    }
    if (resolved.errors.length > 0) return { errors: resolved.errors };
    if (!standInRoots.some((dir) => inside(resolved.path, dir))) {
      return this.refuse(args, { kind: 'outside', reason: "outside the function's folder" });
    }
    return this.standInModule(resolved.path, args.importer);
  }

  plugin(): Plugin {
    return {
      name: 'faas-bundle',
      setup: (build) => {
        build.onResolve({ filter: /.*/ }, async (args) => {
          if (args.pluginData === RESOLVING) return undefined;
          if (args.kind === 'entry-point') {
            if (args.path === INJECT) return { path: 'inject', namespace: STAND_IN };
            return undefined;
          }
          const { path: spec, importer } = args;
          if (args.namespace === STAND_IN) return this.resolveForStandIn(build, args);
          const fromOwn = this.own(importer);
          if (args.kind === 'require-resolve') {
            if (fromOwn) {
              return this.refuse(args, {
                kind: 'unavailable',
                reason: 'require.resolve is not available in functions',
              });
            }
            return { path: spec, external: true };
          }
          if (!this.scope.packageDir && importer === this.scope.entry && !isBare(spec)) {
            return this.refuse(args, {
              kind: 'relative',
              reason: 'a single-file function imports packages only',
            });
          }
          // esbuild would look in the folder of a path outside (reading its package.json) before
          // the check below refuses the file: refuse it first (docs/spec.md §2 "Packages").
          if (!isBare(spec) && args.resolveDir) {
            const target = path.resolve(args.resolveDir, spec);
            if (
              !inside(target, this.scope.packageDir) &&
              !inside(target, this.scope.sharedModules)
            ) {
              return this.refuse(args, {
                kind: 'outside',
                reason: "outside the function's folder",
              });
            }
          }
          const builtin = spec.startsWith('node:') ? spec.slice(5) : isBuiltin(spec) ? spec : '';
          const resolved = await build.resolve(spec, {
            kind: args.kind,
            importer,
            resolveDir: args.resolveDir,
            pluginData: RESOLVING,
          });
          // Never a FIFO, a socket or a device (docs/spec.md §2 "Packages"): a read would hang, or
          // never end.
          if (resolved.errors.length === 0 && path.isAbsolute(resolved.path)) {
            const stat = await fsp.stat(resolved.path).catch(() => undefined);
            if (stat && !stat.isFile() && !stat.isDirectory()) {
              return this.refuse(args, {
                kind: 'type',
                reason: 'a file that is not a regular file',
              });
            }
          }
          // A package's `browser` field may map a module away (`false`): an empty module.
          // esbuild answers such a module with its bare name, or with a path where no file is.
          if (
            resolved.errors.length === 0 &&
            (!path.isAbsolute(resolved.path) || !(await isFile(resolved.path)))
          ) {
            return { path: spec, namespace: EMPTY };
          }
          if (builtin && (resolved.errors.length > 0 || packageOf(resolved.path) === builtin)) {
            return this.standIn(args, builtin);
          }
          if (resolved.errors.length > 0) {
            if (!isBare(spec)) {
              return this.refuse(args, { kind: 'missing-file', reason: resolved.errors[0].text });
            }
            return this.missing(args, packageName(spec));
          }
          const file = resolved.path;
          const allowed =
            inside(file, this.scope.packageDir) || inside(file, this.scope.sharedModules);
          if (!allowed) {
            if (isBare(spec)) {
              return this.missing(args, packageName(spec));
            }
            return this.refuse(args, { kind: 'outside', reason: "outside the function's folder" });
          }
          const extension = path.extname(file);
          if (extension === '.node') {
            return this.refuse(args, { kind: 'native', reason: 'a native addon' });
          }
          if (LOADERS[extension] === undefined) {
            return this.refuse(args, {
              kind: 'type',
              reason: `a ${extension || 'extensionless'} file`,
            });
          }
          // Never a file larger than the bundle may be (docs/spec.md §2 "Packages"): it would
          // flood the read.
          const { size } = await fsp.stat(file);
          if (size > this.scope.maxFileBytes) {
            return this.refuse(args, {
              kind: 'type',
              reason: `a file of ${size} bytes (over ${FILE_BYTES_FACTOR} × MAX_BUNDLE_BYTES, ${this.scope.maxFileBytes})`,
            });
          }
          if (!this.parents.has(file)) this.parents.set(file, importer);
          return { path: file, sideEffects: resolved.sideEffects };
        });

        build.onLoad({ filter: /.*/, namespace: EMPTY }, () => ({ contents: '', loader: 'js' }));
        // `process`: the stand-in with `env.NODE_ENV` set, as `require('process')` gets it and
        // as the free `process` (injected) is.
        build.onLoad({ filter: /^(inject|process)$/, namespace: STAND_IN }, (args) => ({
          contents:
            args.path === 'inject'
              ? `import p from ${JSON.stringify(PROCESS)};\nexport { p as process };\n`
              : `const p = require(${JSON.stringify(standIns().get('process'))});\n` +
                "p.env.NODE_ENV = 'production';\nmodule.exports = p;\n",
          loader: 'js',
          resolveDir: this.scope.base,
        }));
        // A stand-in's file, from our node_modules (see `virtual`).
        build.onLoad({ filter: /.*/, namespace: STAND_IN }, async (args) => {
          const file = this.virtual.get(args.path) as string;
          return {
            contents: await fsp.readFile(file),
            loader: LOADERS[path.extname(file)] ?? 'js',
            resolveDir: path.dirname(file),
          };
        });
        build.onLoad({ filter: /.*/, namespace: 'file' }, async (args) => {
          // Read here, not by esbuild: the hash covers exactly what was bundled.
          const real = await fsp.realpath(args.path);
          const allowed =
            inside(real, this.scope.packageDir) || inside(real, this.scope.sharedModules);
          if (!allowed) {
            return {
              errors: [{ text: `${this.shown(args.path)} leads outside the function's folder` }],
            };
          }
          let read: Awaited<ReturnType<typeof readRegular>>;
          try {
            read = await readRegular(real, this.scope.maxFileBytes);
          } catch (err) {
            return { errors: [{ text: `${this.shown(args.path)}: ${(err as Error).message}` }] };
          }
          const { contents, stat } = read;
          const hash = createHash('sha256').update(contents).digest('hex');
          const stamp = { path: args.path, size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino };
          this.inputs.set(args.path, { hash, stamp });
          return { contents, loader: LOADERS[path.extname(args.path)] ?? 'js' };
        });
      },
    };
  }
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

const STAMPS = Symbol('stamps');

/** Keeps with a bundle's compile error the files whose change may fix it (see stampsOf). */
function withStamps(err: FunctionCompileError, stamps: FileStamp[]): FunctionCompileError {
  Object.defineProperty(err, STAMPS, { value: stamps });
  return err;
}

/** The files to stat to know a failed bundle's inputs are unchanged; undefined for other errors. */
export function stampsOf(err: unknown): FileStamp[] | undefined {
  return (err as { [STAMPS]?: FileStamp[] } | undefined)?.[STAMPS];
}

/** Stats `file` for a stamp (a missing file is stamped missing: its creation is a change). */
async function stampOf(file: string): Promise<FileStamp> {
  try {
    const stat = await fsp.stat(file);
    return { path: file, size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino };
  } catch {
    return { path: file, size: -1, mtimeMs: -1, ino: -1, missing: true };
  }
}

/** The lockfiles of `dir`: their hashes (for the version) and stamps. */
async function lockfiles(
  dir: string,
): Promise<{ hashes: [string, string][]; stamps: FileStamp[] }> {
  const hashes: [string, string][] = [];
  const stamps: FileStamp[] = [];
  for (const name of [
    ...LOCKFILES,
    'package.json',
    path.join('node_modules', '.package-lock.json'),
  ]) {
    const file = path.join(dir, name);
    const stamp = await stampOf(file);
    stamps.push(stamp);
    if (stamp.missing) continue;
    // Only a regular file inside the folder, of bounded size (docs/spec.md §2 "Packages"): a link
    // out of it, a FIFO, a device is stamped, never read.
    const real = await fsp.realpath(file).catch(() => '');
    if (!inside(real, dir)) continue;
    const contents = await readRegular(real, MAX_LOCKFILE_BYTES).then(
      (r) => r.contents,
      () => undefined,
    );
    if (contents) hashes.push([`\0${file}`, createHash('sha256').update(contents).digest('hex')]);
  }
  // The node_modules folder itself: a package installed into it (or removed) changes its mtime,
  // so an import that was missing is looked for again.
  stamps.push(await stampOf(path.join(dir, 'node_modules')));
  return { hashes, stamps };
}

/**
 * Whether every stamped file is as stamped (none changed, none appeared, none went).
 */
export async function stampsUnchanged(stamps: readonly FileStamp[]): Promise<boolean> {
  const now = await Promise.all(stamps.map((stamp) => stampOf(stamp.path)));
  return now.every(
    (stamp, i) =>
      stamp.missing === stamps[i].missing &&
      stamp.size === stamps[i].size &&
      stamp.mtimeMs === stamps[i].mtimeMs &&
      stamp.ino === stamps[i].ino,
  );
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

/** A package folder's entry and package.json, read and checked. */
export interface PackageEntry {
  /** Absolute path of the entry file. */
  entry: string;
  info: PackageInfo;
}

/**
 * The entry of a package function: package.json's `main` (with `.ts`/`.js` or `/index.*` tried
 * after it, as Node does), else `index.ts`, else `index.js`, inside the folder.
 * @throws FunctionCompileError when package.json is not a JSON object, `main` leads outside the
 *   folder or to no file, or there is no entry.
 */
export async function packageEntry(dir: string, shown: string): Promise<PackageEntry> {
  // Its own regular file, of bounded size (docs/spec.md §2 "Packages"): a link out of the folder
  // would put the start of another file (/etc/passwd) in JSON.parse's message.
  const manifest = await fsp.realpath(path.join(dir, 'package.json')).catch(() => '');
  if (!inside(manifest, dir)) {
    throw new FunctionCompileError(`${shown}/package.json leads outside the folder`);
  }
  let json: Record<string, unknown>;
  try {
    const { contents } = await readRegular(manifest, MAX_MANIFEST_BYTES);
    json = JSON.parse(contents.toString('utf8')) as Record<string, unknown>;
    if (json === null || typeof json !== 'object' || Array.isArray(json))
      throw new Error('not an object');
  } catch (err) {
    throw new FunctionCompileError(
      `${shown}/package.json: not a JSON object (${(err as Error).message})`,
    );
  }
  const main = typeof json.main === 'string' && json.main !== '' ? json.main : undefined;
  const tries = main
    ? [main, `${main}.ts`, `${main}.js`, path.join(main, 'index.ts'), path.join(main, 'index.js')]
    : ['index.ts', 'index.js'];
  for (const candidate of tries) {
    const file = path.resolve(dir, candidate);
    if (!inside(file, dir)) {
      throw new FunctionCompileError(
        `${shown}/package.json: main '${main}' leads outside the folder`,
      );
    }
    const real = await fsp.realpath(file).catch(() => undefined);
    if (!real || !(await fsp.stat(real)).isFile()) continue;
    if (!inside(real, dir)) {
      throw new FunctionCompileError(
        `${shown}/package.json: main '${main}' leads outside the folder`,
      );
    }
    if (LOADERS[path.extname(real)] === undefined || path.extname(real) === '.json') {
      throw new FunctionCompileError(
        `${shown}/package.json: main '${main}' is not a .js or .ts file`,
      );
    }
    const dependencies: Record<string, string> = {};
    if (json.dependencies && typeof json.dependencies === 'object') {
      for (const [name, range] of Object.entries(json.dependencies as Record<string, unknown>)) {
        if (typeof range === 'string') dependencies[name] = range;
      }
    }
    return {
      entry: real,
      info: {
        ...(typeof json.name === 'string' ? { name: json.name } : {}),
        ...(typeof json.version === 'string' ? { version: json.version } : {}),
        entry: path.relative(dir, real).split(path.sep).join('/'),
        dependencies,
      },
    };
  }
  throw new FunctionCompileError(
    main
      ? `${shown}/package.json: main '${main}' names no file`
      : `${shown}: no entry file: package.json has no main, and there is no index.ts or index.js`,
  );
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
