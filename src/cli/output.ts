/**
 * What a command prints: results on stdout (JSON only with `--json`), messages on stderr. Every
 * write goes through here, so the `--json` rule holds in one place.
 */

/** A result: the JSON document with `--json`, else the plain text (a line each). */
export function result(json: boolean, value: unknown, plain: () => string | string[]): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    return;
  }
  const text = plain();
  const lines = Array.isArray(text) ? text : [text];
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
}

/** One JSON document a line (NDJSON), for lists that stream, such as `logs --json`. */
export function jsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** A message for the person at the terminal, never mixed with the result. */
export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Left-aligned columns, two spaces apart. */
export function columns(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd(),
  );
}
