/**
 * The rules of a bundle, applied while esbuild resolves each import (docs/spec.md §2
 * "Packages"; bundle.ts runs the build): where an import may resolve, the built-ins' stand-ins,
 * the refusals with the chain of imports that led to them, and every file read (by us, not by
 * esbuild: the version hashes exactly what was bundled).
 */
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import { createRequire, isBuiltin } from 'node:module';
import path from 'node:path';
import type { Loader, OnResolveArgs, Plugin, PluginBuild } from 'esbuild';
import type { Refusal } from './compile-errors';
import { FILE_BYTES_FACTOR, inside, isFile, readRegular } from './bundle-files';
import type { FileStamp } from './bundle-files';

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
export const LOADERS: Readonly<Record<string, Loader>> = {
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

/** Marks esbuild's own resolution, asked for from inside the plugin, so the plugin lets it be. */
const RESOLVING = Symbol('resolving');
/** Modules that are not files: a disabled import (`browser: {fs: false}`), the process stand-in. */
const EMPTY = 'faas-empty';
export const STAND_IN = 'faas-stand-in';
/** The module injected for a free `process`, and the process stand-in it imports. */
export const INJECT = `${STAND_IN}:inject`;
const PROCESS = `${STAND_IN}:process`;

export interface Scope {
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

/** `zod` of `…/node_modules/zod/lib/x.js`, `@scope/pkg` of a scoped one; undefined outside. */
export function packageOf(file: string): string | undefined {
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

/** The esbuild plugin that applies the rules (see the header) and records what it read. */
export class Resolver {
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
