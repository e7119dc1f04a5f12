/**
 * What the sandbox runs for a function file (docs/spec.md §2 "A file holds one function"), and how the
 * positions of what it runs map back to the user's files.
 *
 * A `.js` file that V8 compiles as a script (the seed form, CommonJS) runs untouched: no
 * transform, no cost, the same completion value and error positions as ever. Everything else
 * (every `.ts` file, and a `.js` file with ES module syntax) goes through esbuild once per version:
 * types stripped (not checked), `export`s turned into properties of `module.exports` (`default`,
 * `handler`, `config`, through esbuild's `__toCommonJS` getters), syntax Node lacks lowered, and a
 * source map kept so that compile errors and stacks point into the user's file. A file that
 * imports anything is bundled instead (bundle.ts: packages from FUNCTIONS_DIR/node_modules, the
 * built-ins' stand-ins; docs/spec.md §2 "Packages"), and so is a script that calls the free
 * `require`, so that a call of the sandbox's missing `require` is a compile error naming its line,
 * not a failure of every call. A package function (a folder) is bundled by the store through
 * bundle.ts directly; an uploaded bundle (a script carrying its source map inline) runs as it
 * is, its map kept.
 */
import { SourceMap } from 'node:module';
import type { SourceMapPayload, SourceMapping } from 'node:module';
import type { BuildOptions, Loader, Plugin } from 'esbuild';
import { FunctionCompileError, FunctionError } from '../errors';
import { bundleFile } from './bundle';
import type { Bundle } from './bundle';
import type { FileStamp } from './bundle-files';
import type { BundleInfo, PackageInfo } from './bundle-info';
import {
  IMPORT_PLUGIN,
  compileError,
  isImportError,
  syntaxError,
  v8SyntaxError,
} from './compile-errors';
import { isBuildFailure, runEsbuild } from './esbuild-service';

export { stopCompiler } from './esbuild-service';

/** What a worker runs for one function file, and how to map positions back to the user's file. */
export interface CompiledFunction {
  /** JavaScript the sandbox runs as a script: the original source untouched when it needs no transform. */
  code: string;
  /** The file name used in stacks and errors, e.g. `a/b.ts` or `hello.js`. */
  filename: string;
  /**
   * Present when code differs from the source; maps code positions to the user's files (one, or
   * every file of a bundle).
   */
  sourceMap?: SourceMapPayload;
  /** For a bundle: its version (the hash of every input), which replaces the source's. */
  version?: string;
  /** For a bundle: the files to stat to know it is unchanged. */
  stamps?: FileStamp[];
  /** For a bundle: what it is made of. */
  bundle?: BundleInfo;
  /** For a package function: its package.json. */
  package?: PackageInfo;
}

/** What the sandbox runs for a bundle. */
export function fromBundle(bundle: Bundle, filename: string): CompiledFunction {
  let { code } = bundle;
  const sourceMap = { ...bundle.sourceMap };
  // ES modules are strict mode code; the script esbuild makes of one is not, unless told. (This
  // puts the packages of the bundle in strict mode too: one written for sloppy mode may break.)
  if (bundle.esm) {
    code = `"use strict";\n${code}`;
    insertLine(sourceMap, 0);
  }
  return {
    code,
    filename,
    sourceMap,
    version: bundle.version,
    stamps: bundle.stamps,
    bundle: bundle.info,
  };
}

/**
 * Answers every import, require and `export … from` with an error: nothing is ever resolved. A
 * file that imports anything is bundled instead (bundle.ts), which says what is wrong with each.
 */
const refuseImports: Plugin = {
  name: IMPORT_PLUGIN,
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: /.*/ }, (args) => ({
      errors: [{ text: 'imports are not available', detail: { kind: args.kind } }],
    }));
  },
};

/** The build for one file; esbuild adds the import's location to the plugin's errors itself. */
function buildOptions(source: string, file: string, loader: Loader): BuildOptions {
  return {
    stdin: { contents: source, sourcefile: file, loader },
    bundle: true,
    write: false,
    outfile: 'function.js',
    format: 'cjs',
    // 'neutral': no browser defaults such as a `process.env.NODE_ENV` substitution.
    platform: 'neutral',
    // Lower only what this Node (the workers' Node) cannot parse: decorators, `using`, accessors.
    target: `node${process.versions.node}`,
    // Keep the seed form's bare function expression: it is the file's completion value.
    treeShaking: false,
    // Never read a tsconfig.json from the server's disk.
    tsconfigRaw: {},
    charset: 'utf8',
    legalComments: 'inline',
    sourcemap: 'external',
    sourcesContent: false,
    metafile: true,
    logLevel: 'silent',
    // Warnings that would mean a silently broken function are errors. The two `unsupported-*`
    // ones are import(x) / require(x) with a computed name, reported even inside a try block.
    logOverride: {
      'unsupported-dynamic-import': 'error',
      'unsupported-require-call': 'error',
      'empty-import-meta': 'error',
      'commonjs-variable-in-esm': 'error',
    },
    plugins: [refuseImports],
  };
}

/**
 * Whether a `.js` script (which runs untouched) calls the free `require` (or `import()`): then it
 * is bundled, so the call is resolved or refused with its position. esbuild's bundler reports each
 * such call through the import plugin, and only where `require` is the global one (a `require`
 * the file declares, a parameter named `require`, a string or a comment are not calls of it).
 * Skipped for a file that mentions neither word nor a `\u` escape (which could spell one).
 * Whatever else esbuild dislikes in a file V8 compiles is not this check's business: the script
 * runs as written.
 */
async function scriptImports(source: string, file: string): Promise<boolean> {
  if (!/require|import|\\u/.test(source)) return false;
  try {
    await runEsbuild({ ...buildOptions(source, file, 'js'), sourcemap: false, metafile: false });
    return false;
  } catch (err) {
    if (!isBuildFailure(err)) throw err;
    return err.errors.some(isImportError);
  }
}

/** Inserts an empty line before line `index` (0-based) of a source map's generated code. */
function insertLine(map: SourceMapPayload, index: number): void {
  const lines = map.mappings.split(';');
  lines.splice(index, 0, '');
  map.mappings = lines.join(';');
}

/** The inline source map comment an uploaded bundle ends with (docs/spec.md §6 deploy). */
const INLINE_MAP =
  /\n\/\/# sourceMappingURL=data:application\/json;(?:charset=utf-8;)?base64,([A-Za-z0-9+/=]+)\s*$/;

/** Set in an uploaded bundle's source map (`x_koa_faas`) by the CLI: what the bundle holds. */
export interface UploadedBundle {
  bundle?: BundleInfo;
  package?: PackageInfo;
}

/**
 * An uploaded bundle: a script that carries its source map inline, made by `koa-faas deploy`
 * (bundle.ts, on the user's machine). It runs as it is, without the map comment; the map (and
 * what the CLI said of the bundle) is kept, so stacks point at the package's files.
 */
function uploadedBundle(source: string, file: string): CompiledFunction | undefined {
  const match = INLINE_MAP.exec(source);
  if (!match) return undefined;
  let map: SourceMapPayload & { x_koa_faas?: UploadedBundle };
  try {
    map = JSON.parse(Buffer.from(match[1], 'base64').toString('utf8')) as typeof map;
    if (!Array.isArray(map.sources) || typeof map.mappings !== 'string') return undefined;
  } catch {
    return undefined;
  }
  const code = source.slice(0, match.index + 1);
  const about = map.x_koa_faas ?? {};
  const compiled: CompiledFunction = {
    code,
    filename: file,
    sourceMap: {
      version: map.version,
      file,
      sources: map.sources.map(String),
      sourceRoot: '',
      sourcesContent: [],
      names: Array.isArray(map.names) ? map.names.map(String) : [],
      mappings: map.mappings,
    },
  };
  if (about.bundle) compiled.bundle = about.bundle;
  if (about.package) compiled.package = about.package;
  return compiled;
}

export interface CompileOptions {
  /** FUNCTIONS_DIR's real path: imported packages resolve in its node_modules (none without). */
  functionsDir?: string;
  /** MAX_BUNDLE_BYTES for a file that imports packages. */
  maxBundleBytes?: number;
}

/**
 * Turns a function file's source into what the sandbox runs. Runs esbuild only for files that
 * need it: every `.ts` file, and a `.js` file that V8 cannot compile as a script, or that imports.
 * @throws FunctionCompileError (compile-errors.ts) with the message and the 1-based line/column in the user's file:
 * a syntax error, an import that cannot be bundled (a package not installed, another file, a
 * refused built-in: bundle.ts), a computed require, top-level await, import.meta, ES module and
 * CommonJS exports mixed in one file.
 */
export async function compileFunction(
  source: string,
  file: string,
  options: CompileOptions = {},
): Promise<CompiledFunction> {
  const extension = file.slice(file.lastIndexOf('.'));
  if (extension !== '.js' && extension !== '.ts') {
    throw new TypeError(`compileFunction: ${file} is neither a .js nor a .ts file`);
  }
  const loader: Loader = extension === '.ts' ? 'ts' : 'js';
  const bundled = async () =>
    fromBundle(
      await bundleFile(source, file, loader, {
        functionsDir: options.functionsDir,
        maxBytes: options.maxBundleBytes,
      }),
      file,
    );
  let v8Error: ReturnType<typeof v8SyntaxError>;
  if (loader === 'js') {
    v8Error = v8SyntaxError(source, file);
    if (!v8Error) {
      const uploaded = uploadedBundle(source, file);
      if (uploaded) return uploaded;
      if (await scriptImports(source, file)) return bundled();
      return { code: source, filename: file };
    }
  }
  let result: Awaited<ReturnType<typeof runEsbuild>>;
  try {
    result = await runEsbuild(buildOptions(source, file, loader));
  } catch (err) {
    if (!isBuildFailure(err) || err.errors.length === 0) throw err;
    if (err.errors.some(isImportError)) return bundled();
    throw compileError(err.errors, file, v8Error);
  }
  let code = '';
  let sourceMap: SourceMapPayload | undefined;
  for (const output of result.outputFiles ?? []) {
    if (output.path.endsWith('.map')) sourceMap = JSON.parse(output.text) as SourceMapPayload;
    else code = output.text;
  }
  if (!sourceMap) throw new Error(`esbuild returned no source map for ${file}`);
  sourceMap = { ...sourceMap, file, sources: [file], sourceRoot: '', sourcesContent: [] };
  // ES modules are strict mode code; the script esbuild makes of one is not, unless told.
  if (result.metafile?.inputs[file]?.format === 'esm') {
    const hashbang = code.startsWith('#!') ? code.indexOf('\n') + 1 : 0;
    code = `${code.slice(0, hashbang)}"use strict";\n${code.slice(hashbang)}`;
    insertLine(sourceMap, hashbang > 0 ? 1 : 0);
  }
  const compiled: CompiledFunction = { code, filename: file, sourceMap };
  // What esbuild leaves as it is must still compile in this V8 (a worker compiles the same way).
  const late = v8SyntaxError(code, file);
  if (late) {
    const { line, column } = late.position;
    const position = line ? originalPosition(compiled, line, column ?? 1) : {};
    throw syntaxError(file, { message: late.message, position });
  }
  return compiled;
}

/** A 1-based position in one of the user's files; `source` names the file (a bundle's module). */
export interface OriginalPosition {
  line: number;
  column: number;
  /** The file, as the source map names it (`zodfn/index.ts`); undefined when unknown. */
  source?: string;
}

type Mapper = (line: number, column: number) => OriginalPosition;

/** One parse of each version's source map (a bundle's may be megabytes), kept with the version. */
const mappers = new WeakMap<CompiledFunction, Mapper>();

/** Maps 1-based positions in `fn.code` to the user's files, with one parse of the source map. */
function mapper(fn: CompiledFunction): Mapper {
  const payload = fn.sourceMap;
  if (!payload) return (line, column) => ({ line, column });
  const known = mappers.get(fn);
  if (known) return known;
  const map = new SourceMap(payload);
  let lines: string[] | undefined;
  const mapped: Mapper = (line, column) => {
    const entry = map.findEntry(line - 1, column - 1) as Partial<SourceMapping>;
    // Before the first mapping: esbuild's own helpers at the top of the code, part of no line
    // of the file; the file's first position is the honest answer.
    if (entry.originalLine === undefined || entry.originalColumn === undefined)
      return { line: 1, column: 1 };
    let offset = 0;
    if (entry.generatedLine === line - 1 && entry.generatedColumn !== undefined) {
      // A segment may begin with the code's indentation (esbuild maps a statement from column
      // 0); a position inside it is the same distance from the segment's first token.
      lines ??= fn.code.split('\n');
      const text = lines[line - 1] ?? '';
      let start = entry.generatedColumn;
      while (start < column - 1 && (text[start] === ' ' || text[start] === '\t')) start++;
      offset = column - 1 - start;
    }
    const position: OriginalPosition = {
      line: entry.originalLine + 1,
      column: entry.originalColumn + 1 + offset,
    };
    // A bundle's other files are named; a single file's one source is the file itself.
    if (entry.originalSource && entry.originalSource !== fn.filename) {
      position.source = entry.originalSource;
    }
    return position;
  };
  mappers.set(fn, mapped);
  return mapped;
}

/**
 * A 1-based line/column in `fn.code` → the same in the user's file (identity when
 * untransformed); `source` names the file when the code is a bundle of several.
 */
export function originalPosition(
  fn: CompiledFunction,
  line: number,
  column: number,
): OriginalPosition {
  return mapper(fn)(line, column);
}

/**
 * Rewrites the `file:line:col` (and `file:line`) positions of a stack or message from code to
 * the user's files: `zodfn/index.ts:2140:7` → `zodfn/node_modules/zod/v4/core/core.js:41:9`.
 */
export function remapStack(fn: CompiledFunction, text: string): string {
  if (!fn.sourceMap) return text;
  const map = mapper(fn);
  const name = fn.filename.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`(?<![^\\s(])${name}:(\\d+)(?::(\\d+))?`, 'g');
  return text.replace(pattern, (_, line: string, column: string | undefined) => {
    const mapped = map(Number(line), column === undefined ? 1 : Number(column));
    const source = mapped.source ?? fn.filename;
    return `${source}:${mapped.line}${column === undefined ? '' : `:${mapped.column}`}`;
  });
}

/**
 * An error from running a version, with its positions moved from the compiled code into the
 * user's file (identity for files that needed no transform). A compile error's position in
 * another file of a bundle than its entry names that file (`file`).
 */
export function inUserFile<E>(compiled: CompiledFunction | undefined, err: E): E {
  if (!compiled?.sourceMap) return err;
  if (err instanceof FunctionCompileError) {
    let position: { line?: number; column?: number; file?: string } = {};
    if (err.line !== undefined) {
      const { source, ...at } = originalPosition(compiled, err.line, err.column ?? 1);
      position =
        source === undefined || source === compiled.filename ? at : { ...at, file: source };
    }
    const mapped = new FunctionCompileError(remapStack(compiled, err.message), position);
    mapped.statusCode = err.statusCode;
    return mapped as E;
  }
  if (err instanceof FunctionError && err.functionStack !== undefined) {
    return new FunctionError(err.type, err.message, remapStack(compiled, err.functionStack)) as E;
  }
  return err;
}
