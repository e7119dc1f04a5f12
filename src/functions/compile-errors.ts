/**
 * What a function file's compile errors say (docs/spec.md §2: "the error and its line"): V8's
 * SyntaxError, and esbuild's errors turned into messages that say what is not available in a
 * function, each as a FunctionCompileError with the 1-based line and column in the user's file.
 */
import vm from 'node:vm';
import type { Message } from 'esbuild';
import { FunctionCompileError } from '../errors';

/** The name of transform.ts's esbuild plugin that refuses every import. */
export const IMPORT_PLUGIN = 'faas-no-imports';

/** 1-based; either may be unknown. */
export interface Position {
  line?: number;
  column?: number;
}

/**
 * Why bundle.ts refused an import (the `detail` of its esbuild error): `builtin` a Node built-in
 * with no stand-in, `native` an addon, `type` a file no loader reads, `missing` a package not
 * installed, `missing-file` a file that is not there, `relative` a file import in a single-file
 * function, `outside` a path out of the function's folder, `unavailable` `require.resolve`.
 */
export interface Refusal {
  kind:
    | 'builtin'
    | 'native'
    | 'type'
    | 'missing'
    | 'missing-file'
    | 'relative'
    | 'outside'
    | 'unavailable';
  /** What esbuild says, or what is refused (`node:fs`, `a .css file`). */
  reason: string;
  /** The specifier as written: `fs`, `./x`, `zod`. */
  spec: string;
  importKind: string;
  /** The files that led to the import, the entry first, the importing file last. */
  chain: string[];
  builtin?: string;
  /** What to do, for a missing package. */
  hint?: string;
}

/** The built-ins with a stand-in (bundle.ts STAND_INS), for refusals; kept in step by a test. */
export const STAND_IN_NAMES = 'assert, buffer, events, path, process, string_decoder, url, util';

/** ` (line L, column C)`, or as much of it as is known. */
export function at(position: Position): string {
  if (!position.line) return '';
  return ` (line ${position.line}${position.column ? `, column ${position.column}` : ''})`;
}

/** V8's SyntaxError for `source` compiled as a script, with its 1-based line and column. */
export function v8SyntaxError(
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
  return error && syntaxError(filename, error);
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
  const detail = message.detail as { kind?: string; refusal?: Refusal } | undefined;
  const kind = detail?.kind ?? detail?.refusal?.importKind;
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

/** Whether an esbuild message is transform.ts's refusal of an import, require or import(). */
export function isImportError(message: Message): boolean {
  return (
    message.pluginName === IMPORT_PLUGIN ||
    message.id === 'unsupported-dynamic-import' ||
    message.id === 'unsupported-require-call'
  );
}

/** Whether an esbuild message is about `require(x)` / `import(x)` with a computed name. */
function isComputedImport(message: Message): boolean {
  return message.id === 'unsupported-dynamic-import' || message.id === 'unsupported-require-call';
}

/** Whether an import refusal is about `require(…)` / `require.resolve(…)` rather than an import. */
function isRequire(message: Message): boolean {
  const kind = (message.detail as { kind?: string } | undefined)?.kind;
  return (
    kind === 'require-call' ||
    kind === 'require-resolve' ||
    message.id === 'unsupported-require-call'
  );
}

function refusalOf(message: Message): Refusal | undefined {
  return (message.detail as { refusal?: Refusal } | undefined)?.refusal;
}

/** What a refusal says, after `file: ` (`shown`: the import as written, `where`: its position). */
function refusalText(refusal: Refusal, shown: string, where: string, more: string): string {
  const chain = `import chain: ${refusal.chain.join(' → ')}`;
  switch (refusal.kind) {
    case 'builtin':
      return (
        `node:${refusal.builtin} is not available in functions: \`${shown}\`${where}; ` +
        `${chain} → node:${refusal.builtin}; stand-ins exist only for ${STAND_IN_NAMES}`
      );
    case 'native':
      return `native addons are not available in functions: \`${shown}\`${where}; ${chain} → ${refusal.spec}`;
    case 'type':
      return `${refusal.reason} cannot be imported in a function: \`${shown}\`${where}; ${chain}`;
    case 'missing':
      return `${refusal.reason}: \`${shown}\`${where}${more}; ${refusal.hint ?? ''}`;
    case 'missing-file':
      return `${refusal.reason}: \`${shown}\`${where}`;
    case 'relative':
      return (
        `imports of other files are not available in a single-file function: \`${shown}\`${where}${more}; ` +
        'make the function a package folder (a folder with a package.json, docs/packages.md) to split it into files'
      );
    case 'outside':
      return `\`${shown}\` leads outside the function's folder${where}`;
    case 'unavailable':
      return `${refusal.reason}: \`${shown}\`${where}`;
  }
}

/**
 * The first of esbuild's errors (by position) as a compile error that says what to do.
 * `otherFile(message)`: the name of the file a message is about when it is not the function's
 * entry file (a package's module), else undefined.
 */
function fromEsbuild(
  errors: Message[],
  file: string,
  otherFile: (message: Message) => string | undefined = () => undefined,
): EsbuildError {
  const sorted = [...errors].sort(
    (a, b) =>
      (a.location?.line ?? 0) - (b.location?.line ?? 0) ||
      (a.location?.column ?? 0) - (b.location?.column ?? 0),
  );
  // The function's own entry file first: what the user wrote comes before what packages do.
  const first = sorted.find((message) => !otherFile(message)) ?? sorted[0];
  const other = otherFile(first);
  const position: Position & { file?: string } = positionOf(first);
  if (other !== undefined) position.file = other;
  const where =
    other === undefined
      ? at(position)
      : ` (${other}${position.line ? `${at(position).slice(2, -1).replace(/^/, ' ')}` : ''})`;
  let text: string;
  let syntax = false;
  const refusal = refusalOf(first);
  if (refusal) {
    const same = sorted.filter((m) => refusalOf(m)?.kind === refusal.kind).length - 1;
    text = refusalText(refusal, importShown(first), where, same > 0 ? `, and ${same} more` : '');
  } else if (isComputedImport(first)) {
    text =
      `${isRequire(first) ? 'require' : 'import()'} with a computed name is not available in functions: ` +
      `\`${importShown(first)}\`${where}; name the package in a string`;
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

/** A SyntaxError V8 reported, in checkSyntax's words. */
export function syntaxError(
  file: string,
  error: { message: string; position: Position },
): FunctionCompileError {
  return new FunctionCompileError(
    `${file}: SyntaxError: ${error.message}${at(error.position)}`,
    error.position,
  );
}

/**
 * The compile error for a file esbuild rejected. For a `.js` file V8 rejected too (`v8`):
 * V8's own message, unless esbuild read further (an ES module with a mistake after its first
 * `export`) or says what is not available (an import, top-level await) where V8 stopped.
 */
export function compileError(
  errors: Message[],
  file: string,
  v8?: { message: string; position: Position },
  otherFile?: (message: Message) => string | undefined,
): FunctionCompileError {
  const fromBuild = fromEsbuild(errors, file, otherFile);
  if (
    v8 &&
    !later(fromBuild.error, v8.position) &&
    (fromBuild.syntax || later(v8.position, fromBuild.error))
  ) {
    return syntaxError(file, v8);
  }
  return fromBuild.error;
}
