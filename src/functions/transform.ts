/**
 * What the sandbox runs for a function file (SPEC §2 "A file holds one function"), and how the
 * positions of what it runs map back to the file.
 *
 * A `.js` file that V8 compiles as a script (the seed form, CommonJS) runs untouched: no
 * transform, no cost, the same completion value and error positions as ever. Everything else
 * (every `.ts` file, and a `.js` file with ES module syntax) goes through esbuild once per version:
 * types stripped (not checked), `export`s turned into properties of `module.exports` (`default`,
 * `handler`, `config`, through esbuild's `__toCommonJS` getters), syntax Node lacks lowered, and a
 * source map kept so that compile errors and stacks point into the user's file. Imports of any
 * kind are refused at compile time: a function is one file, and the bundler must never read
 * another one (it would read the server's own disk).
 */
import { SourceMap } from 'node:module';
import type { SourceMapPayload, SourceMapping } from 'node:module';
import vm from 'node:vm';
import { build, stop } from 'esbuild';
import type { BuildFailure, BuildOptions, Loader, Message, Plugin } from 'esbuild';
import { FunctionCompileError } from '../errors';

/** What a worker runs for one function file, and how to map positions back to the user's file. */
export interface CompiledFunction {
  /** JavaScript the sandbox runs as a script: the original source untouched when it needs no transform. */
  code: string;
  /** The file name used in stacks and errors, e.g. `a/b.ts` or `hello.js`. */
  filename: string;
  /** Present when code differs from the source; maps code positions to the user's file. */
  sourceMap?: SourceMapPayload;
}

interface Position {
  line?: number;
  column?: number;
}

const PLUGIN_NAME = 'faas-no-imports';

/** Answers every import, require and `export … from` with an error: nothing is ever resolved. */
const refuseImports: Plugin = {
  name: PLUGIN_NAME,
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

function at(position: Position): string {
  if (!position.line) return '';
  return ` (line ${position.line}${position.column ? `, column ${position.column}` : ''})`;
}

/** V8's SyntaxError for `source` compiled as a script, with its 1-based line and column. */
function v8SyntaxError(
  source: string,
  filename: string,
): { message: string; position: Position } | undefined {
  try {
    new vm.Script(source, { filename });
    return undefined;
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    // V8 puts "file:line", the source line and a caret line on top of a SyntaxError's stack.
    const [where = '', , caret = ''] = String(err.stack).split('\n');
    const line = Number(/:(\d+)$/.exec(where)?.[1]);
    const column = caret.indexOf('^') + 1;
    const position = {
      line: Number.isInteger(line) && line > 0 ? line : undefined,
      column: column > 0 ? column : undefined,
    };
    return { message: err.message, position };
  }
}

/**
 * Compiles (without running) a `.js` function file as a script, the way a worker runs it
 * untouched, to report syntax errors with their line and column in the file.
 */
export function checkSyntax(source: string, name: string): FunctionCompileError | undefined {
  const filename = `${name}.js`;
  const error = v8SyntaxError(source, filename);
  if (!error) return undefined;
  return new FunctionCompileError(
    `${filename}: SyntaxError: ${error.message}${at(error.position)}`,
    error.position,
  );
}

/** An esbuild error as a compile error, and whether it is a plain syntax error. */
interface EsbuildError {
  error: FunctionCompileError;
  syntax: boolean;
}

/** esbuild's 0-based byte column on a line → a 1-based UTF-16 column, as V8 and editors count. */
function positionOf(message: Message): Position {
  const location = message.location;
  if (!location) return {};
  const bytes = Buffer.from(location.lineText, 'utf8');
  return {
    line: location.line,
    column: bytes.subarray(0, location.column).toString('utf8').length + 1,
  };
}

/** The import a refusal is about, as written: `import x from 'y'`, `require('y')`, `import(…)`. */
function importShown(message: Message): string {
  const location = message.location;
  if (!location) return 'import';
  const bytes = Buffer.from(location.lineText, 'utf8');
  const written = bytes.subarray(location.column, location.column + location.length).toString();
  const kind = (message.detail as { kind?: string } | undefined)?.kind;
  if (kind === 'dynamic-import') return `import(${written})`;
  if (kind === 'require-call') return `require(${written})`;
  if (kind === 'require-resolve') return `require.resolve(${written})`;
  // A computed import(x) / require(x): esbuild points at the keyword.
  if (message.id === 'unsupported-dynamic-import' || message.id === 'unsupported-require-call') {
    return `${written}(…)`;
  }
  // `import … from 'y'`, `export … from 'y'`: the statement's line.
  const line = location.lineText.trim().replace(/;$/, '');
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}

function isImportError(message: Message): boolean {
  return (
    message.pluginName === PLUGIN_NAME ||
    message.id === 'unsupported-dynamic-import' ||
    message.id === 'unsupported-require-call'
  );
}

/** The first of esbuild's errors (by position) as a compile error that says what to do. */
function fromEsbuild(errors: Message[], file: string): EsbuildError {
  const sorted = [...errors].sort(
    (a, b) =>
      (a.location?.line ?? 0) - (b.location?.line ?? 0) ||
      (a.location?.column ?? 0) - (b.location?.column ?? 0),
  );
  const first = sorted[0];
  const position = positionOf(first);
  const where = at(position);
  let text: string;
  let syntax = false;
  if (isImportError(first)) {
    const more = sorted.filter(isImportError).length - 1;
    text =
      `imports are not available in functions: \`${importShown(first)}\`${where}` +
      (more > 0 ? `, and ${more} more` : '');
  } else if (first.text.startsWith('Top-level await')) {
    text = `top-level await is not available in functions (a function file runs as a script): await inside the function${where}`;
  } else if (first.id === 'empty-import-meta') {
    text = `import.meta is not available in functions${where}`;
  } else if (first.id === 'commonjs-variable-in-esm') {
    text = `a file uses ES module syntax (export) or CommonJS (module.exports, exports), not both${where}`;
  } else {
    syntax = true;
    text = `SyntaxError: ${first.text}${where}`;
  }
  return { error: new FunctionCompileError(`${file}: ${text}`, position), syntax };
}

/** Whether position a is after position b; columns count only when both are known. */
function later(a: Position, b: Position): boolean {
  if (a.line === undefined) return false;
  if (b.line === undefined) return true;
  if (a.line !== b.line) return a.line > b.line;
  return a.column !== undefined && b.column !== undefined && a.column > b.column;
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
 * @throws FunctionCompileError with the message and the 1-based line/column in the user's file:
 * a syntax error, an import of any kind, top-level await, import.meta, ES module and CommonJS
 * exports mixed in one file.
 */
export async function compileFunction(source: string, file: string): Promise<CompiledFunction> {
  const loader: Loader | undefined = file.endsWith('.ts')
    ? 'ts'
    : file.endsWith('.js')
      ? 'js'
      : undefined;
  if (!loader) throw new TypeError(`compileFunction: ${file} is neither a .js nor a .ts file`);
  let v8Error: ReturnType<typeof v8SyntaxError>;
  if (loader === 'js') {
    v8Error = v8SyntaxError(source, file);
    if (!v8Error) return { code: source, filename: file };
  }
  let result: Awaited<ReturnType<typeof build>>;
  try {
    result = await runEsbuild(buildOptions(source, file, loader));
  } catch (err) {
    if (!isBuildFailure(err) || err.errors.length === 0) throw err;
    const fromBuild = fromEsbuild(err.errors, file);
    // A .js file both V8 and esbuild reject: V8's own message, unless esbuild read further (the
    // file is an ES module with a mistake after its first `export`) or says what is not
    // available (an import, top-level await) where V8 stopped.
    if (
      v8Error &&
      !later(fromBuild.error, v8Error.position) &&
      (fromBuild.syntax || later(v8Error.position, fromBuild.error))
    ) {
      throw new FunctionCompileError(
        `${file}: SyntaxError: ${v8Error.message}${at(v8Error.position)}`,
        v8Error.position,
      );
    }
    throw fromBuild.error;
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
    const position = late.position.line
      ? originalPosition(compiled, late.position.line, late.position.column ?? 1)
      : {};
    throw new FunctionCompileError(
      `${file}: SyntaxError: ${late.message}${at(position)}`,
      position,
    );
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
