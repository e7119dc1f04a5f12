/**
 * Reads the fenced code blocks of the documentation and the markers before them (HTML comments on
 * the lines just above a fence; docs/operations.md "The docs test"):
 *
 *   <!-- example: NAME -->   the block is functions/NAME.js (NAME.ts for a ts block)
 *   <!-- file: PATH -->      the block is PATH in the shell's working folder
 *   <!-- run -->             the block is run with bash against a real server
 *   <!-- expect: TEXT -->    with run: the output holds TEXT (several: in this order)
 *   <!-- no-run: why -->     not run, and why
 *
 * Pure: no I/O beyond reading the files it is given.
 */
import fs from 'node:fs';
import path from 'node:path';

/** The languages whose blocks must carry a marker. */
export const CHECKED_LANGUAGES: ReadonlySet<string> = new Set(['js', 'ts', 'sh', 'bash']);

export interface Block {
  /** The file, relative to the repository root, and the fence's 1-based line. */
  readonly file: string;
  readonly line: number;
  /** The fence's info string's first word (`js`, `sh`, …), '' when none. */
  readonly language: string;
  readonly code: string;
  readonly example?: string;
  readonly path?: string;
  readonly run: boolean;
  readonly noRun?: string;
  readonly expect: readonly string[];
}

/** `file:line`, how a block is named in failures. */
export const where = (block: Block): string => `${block.file}:${block.line}`;

const MARKER = /^<!--\s*(example|file|run|expect|no-run)\s*(?::\s*(.*?))?\s*-->$/;

/** The fenced blocks of one Markdown text, with the markers of the comment lines above each. */
export function parseBlocks(file: string, text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, language] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !lines[j].trimStart().startsWith(fence); j++) {
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j]);
    }
    // The comment lines just above the fence (blank lines between them allowed).
    const markers: { kind: string; value: string }[] = [];
    for (let k = i - 1; k >= 0; k--) {
      const line = lines[k].trim();
      if (line === '') continue;
      const marker = MARKER.exec(line);
      if (!marker) break;
      markers.unshift({ kind: marker[1], value: marker[2] ?? '' });
    }
    const value = (kind: string) => markers.find((m) => m.kind === kind)?.value;
    blocks.push({
      file,
      line: i + 1,
      language,
      code: body.join('\n') + '\n',
      example: value('example'),
      path: value('file'),
      run: markers.some((m) => m.kind === 'run'),
      noRun: value('no-run'),
      expect: markers.filter((m) => m.kind === 'expect').map((m) => m.value),
    });
    i = j;
  }
  return blocks;
}

/** What is wrong with a block's markers, or undefined. */
export function markerProblem(block: Block): string | undefined {
  const kinds = [
    block.example !== undefined,
    block.path !== undefined,
    block.run,
    block.noRun !== undefined,
  ].filter(Boolean).length;
  if (kinds === 0) {
    return CHECKED_LANGUAGES.has(block.language)
      ? `a \`${block.language}\` block without a marker (example, file, run or no-run)`
      : undefined;
  }
  if (kinds > 1) return 'more than one of example, file, run, no-run';
  if (block.example !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_/-]*$/.test(block.example)) {
    return `example name "${block.example}" is not a function name`;
  }
  if (block.example !== undefined && block.language !== 'js' && block.language !== 'ts') {
    return 'an example must be a js or ts block';
  }
  if (block.path !== undefined && !/^[\w.-]+$/.test(block.path)) {
    return `file "${block.path}" must be a plain file name`;
  }
  if (block.run && block.language !== 'sh' && block.language !== 'bash') {
    return 'run must be a sh or bash block';
  }
  if (block.expect.length > 0 && !block.run) return 'expect without run';
  if (block.noRun === '') return 'no-run must say why';
  return undefined;
}

/** README.md, then every docs/*.md, relative to `root`, each read once. */
export function readDocs(root: string): Block[] {
  const files = [
    'README.md',
    ...fs
      .readdirSync(path.join(root, 'docs'))
      .filter((name) => name.endsWith('.md'))
      .sort()
      .map((name) => `docs/${name}`),
  ];
  return files.flatMap((file) => parseBlocks(file, fs.readFileSync(path.join(root, file), 'utf8')));
}

/** Expected texts found in `output` in order: the first one missing, or undefined. */
export function missingExpectation(output: string, expect: readonly string[]): string | undefined {
  let from = 0;
  for (const text of expect) {
    const at = output.indexOf(text, from);
    if (at < 0) return text;
    from = at + text.length;
  }
  return undefined;
}
