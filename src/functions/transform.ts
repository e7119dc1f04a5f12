/**
 * What the sandbox runs for a function file (docs/spec.md §2 "A file holds one function"), and how the
 * positions of what it runs map back to the file.
 *
 * A `.js` file that V8 compiles as a script (the seed form, CommonJS) runs untouched: no
 * transform, no cost, the same completion value and error positions as ever. Everything else
 * (every `.ts` file, and a `.js` file with ES module syntax) goes through esbuild once per version:
 * types stripped (not checked), `export`s turned into properties of `module.exports` (`default`,
 * `handler`, `config`, through esbuild's `__toCommonJS` getters), syntax Node lacks lowered, and a
 * source map kept so that compile errors and stacks point into the user's file. Imports of any
 * kind are refused at compile time: a function is one file, and the bundler must never read
 * another one (it would read the server's own disk). A script that runs untouched is still read
 * by esbuild once when it mentions `require` or `import`, so that a call to the sandbox's missing
 * `require` (or an `import()`) is a compile error naming its line, not a failure of every call.
 */
import { SourceMap } from 'node:module';
import type { SourceMapPayload, SourceMapping } from 'node:module';
import { build, stop } from 'esbuild';
import type { BuildFailure, BuildOptions, Loader, Plugin } from 'esbuild';
import { FunctionCompileError, FunctionError } from '../errors';
import {
  IMPORT_PLUGIN,
  compileError,
  isImportError,
  syntaxError,
  v8SyntaxError,
} from './compile-errors';

/** What a worker runs for one function file, and how to map positions back to the user's file. */
export interface CompiledFunction {
  /** JavaScript the sandbox runs as a script: the original source untouched when it needs no transform. */
  code: string;
  /** The file name used in stacks and errors, e.g. `a/b.ts` or `hello.js`. */
  filename: string;
  /** Present when code differs from the source; maps code positions to the user's file. */
  sourceMap?: SourceMapPayload;
}

/** Answers every import, require and `export … from` with an error: nothing is ever resolved. */
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

function isBuildFailure(err: unknown): err is BuildFailure {
  return err instanceof Error && Array.isArray((err as Partial<BuildFailure>).errors);
}

/** esbuild's async API: one long-lived esbuild process, so the event loop never waits on it. */
async function runEsbuild(options: BuildOptions): ReturnType<typeof build> {
  try {
    return await build(options);
  } catch (err) {
    if (isBuildFailure(err)) throw err;
    // esbuild keeps using its service process after that process died (killed, out of memory)
    // and answers "The service is no longer running" forever; stop() forgets it, so the next
    // build starts a new one.
    await stop();
    return build(options);
  }
}

/**
 * Ends esbuild's service process, if one is running (the server's close calls it, so nothing it
 * started outlives it). The next compile starts a new one.
 */
export async function stopCompiler(): Promise<void> {
  await stop();
}

/**
 * Refuses a call of the free `require` (and an `import()`) in a `.js` script, which runs
 * untouched: esbuild's bundler reports each one through the import plugin with its location,
 * and only where `require` is the global one (a `require` the file declares, a parameter named
 * `require`, a string or a comment are not calls of it). Skipped for a file that mentions neither
 * word nor a `\u` escape (which could spell one). Whatever else esbuild dislikes in a file V8
 * compiles is not this check's business: the script runs as written.
 * @throws FunctionCompileError naming the first call and its line and column.
 */
async function refuseScriptImports(source: string, file: string): Promise<void> {
  if (!/require|import|\\u/.test(source)) return;
  try {
    await runEsbuild({ ...buildOptions(source, file, 'js'), sourcemap: false, metafile: false });
  } catch (err) {
    if (!isBuildFailure(err)) throw err;
    const imports = err.errors.filter(isImportError);
    if (imports.length > 0) throw compileError(imports, file);
  }
}

/** Inserts an empty line before line `index` (0-based) of a source map's generated code. */
function insertLine(map: SourceMapPayload, index: number): void {
  const lines = map.mappings.split(';');
  lines.splice(index, 0, '');
  map.mappings = lines.join(';');
}

/**
 * Turns a function file's source into what the sandbox runs. Runs esbuild only for files that
 * need it: every `.ts` file, and a `.js` file that V8 cannot compile as a script.
 * @throws FunctionCompileError (compile-errors.ts) with the message and the 1-based line/column in the user's file:
 * a syntax error, an import of any kind (a call of the free `require` in every form, scripts
 * included), top-level await, import.meta, ES module and CommonJS exports mixed in one file.
 */
export async function compileFunction(source: string, file: string): Promise<CompiledFunction> {
  const extension = file.slice(file.lastIndexOf('.'));
  if (extension !== '.js' && extension !== '.ts') {
    throw new TypeError(`compileFunction: ${file} is neither a .js nor a .ts file`);
  }
  const loader: Loader = extension === '.ts' ? 'ts' : 'js';
  let v8Error: ReturnType<typeof v8SyntaxError>;
  if (loader === 'js') {
    v8Error = v8SyntaxError(source, file);
    if (!v8Error) {
      await refuseScriptImports(source, file);
      return { code: source, filename: file };
    }
  }
  let result: Awaited<ReturnType<typeof build>>;
  try {
    result = await runEsbuild(buildOptions(source, file, loader));
  } catch (err) {
    if (!isBuildFailure(err) || err.errors.length === 0) throw err;
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

/** Maps 1-based positions in `fn.code` to the user's file, with one parse of the source map. */
function mapper(
  fn: CompiledFunction,
): (line: number, column: number) => { line: number; column: number } {
  const payload = fn.sourceMap;
  if (!payload) return (line, column) => ({ line, column });
  const map = new SourceMap(payload);
  const lines = fn.code.split('\n');
  return (line, column) => {
    const entry = map.findEntry(line - 1, column - 1) as Partial<SourceMapping>;
    // Before the first mapping: esbuild's own helpers at the top of the code, part of no line
    // of the file; the file's first position is the honest answer.
    if (entry.originalLine === undefined || entry.originalColumn === undefined)
      return { line: 1, column: 1 };
    let offset = 0;
    if (entry.generatedLine === line - 1 && entry.generatedColumn !== undefined) {
      // A segment may begin with the code's indentation (esbuild maps a statement from column
      // 0); a position inside it is the same distance from the segment's first token.
      const text = lines[line - 1] ?? '';
      let start = entry.generatedColumn;
      while (start < column - 1 && (text[start] === ' ' || text[start] === '\t')) start++;
      offset = column - 1 - start;
    }
    return { line: entry.originalLine + 1, column: entry.originalColumn + 1 + offset };
  };
}

/** A 1-based line/column in `fn.code` → the same in the user's file (identity when untransformed). */
export function originalPosition(
  fn: CompiledFunction,
  line: number,
  column: number,
): { line: number; column: number } {
  return mapper(fn)(line, column);
}

/** Rewrites the `file:line:col` (and `file:line`) positions of a stack or message from code to the user's file. */
export function remapStack(fn: CompiledFunction, text: string): string {
  if (!fn.sourceMap) return text;
  const map = mapper(fn);
  const name = fn.filename.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`(?<![^\\s(])${name}:(\\d+)(?::(\\d+))?`, 'g');
  return text.replace(pattern, (_, line: string, column: string | undefined) => {
    const mapped = map(Number(line), column === undefined ? 1 : Number(column));
    return `${fn.filename}:${mapped.line}${column === undefined ? '' : `:${mapped.column}`}`;
  });
}

/**
 * An error from running a version, with its positions moved from the compiled code into the
 * user's file (identity for files that needed no transform).
 */
export function inUserFile<E>(compiled: CompiledFunction | undefined, err: E): E {
  if (!compiled?.sourceMap) return err;
  if (err instanceof FunctionCompileError) {
    const position =
      err.line === undefined ? {} : originalPosition(compiled, err.line, err.column ?? 1);
    const mapped = new FunctionCompileError(remapStack(compiled, err.message), position);
    mapped.statusCode = err.statusCode;
    return mapped as E;
  }
  if (err instanceof FunctionError && err.functionStack !== undefined) {
    return new FunctionError(err.type, err.message, remapStack(compiled, err.functionStack)) as E;
  }
  return err;
}
