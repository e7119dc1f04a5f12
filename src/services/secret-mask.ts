/**
 * Masking of secret values in text a function produced (docs/spec.md §8): console lines, error
 * messages and stacks, an invalid result's message. A value leaves a function in more shapes than
 * the one it was stored in, so each is masked in every encoding a function is likely to give it:
 *
 * | form | example for `p"w\n1` | why |
 * |---|---|---|
 * | as is | `p"w⏎1` | `console.log(pw)`, `throw new Error(pw)` |
 * | JSON-escaped, once and twice | `p\"w\n1`, `p\\\"w\\n1` | `console.log({ pw })`, `JSON.stringify` of a JSON string |
 * | percent-encoded | `p%22w%0A1` (and `+` for spaces) | a URL or a form body built with it |
 * | base64 / base64url of its UTF-8 (and Latin-1) bytes, at each of the 3 byte alignments | the characters that depend on the value's bytes alone | `btoa('user:' + pw)`, a Basic auth header |
 * | hex | `7022770a31` | a key printed as hex |
 * | each line of a multi-line value, of 12 characters or more (and its base64 and hex) | a PEM key's lines | a key logged in part |
 *
 * Values under MIN_VALUE characters are not masked (they would mask common text); derived forms
 * under MIN_FORM characters are left out for the same reason. The forms of a value are computed
 * once and kept (a bounded map).
 */

/** Shortest secret value that is masked at all. */
export const MIN_VALUE = 3;
/** Shortest derived form (a base64 fragment, a line) that is masked. */
const MIN_FORM = 8;
/** Shortest line of a multi-line value masked on its own. */
const MIN_LINE = 12;
const CACHE_MAX = 512;

const MASK = '[secret]';
const cache = new Map<string, readonly string[]>();

/** The base64 characters that depend on `bytes` alone, placed after `k` bytes of anything. */
function base64Core(bytes: Buffer, k: number): string {
  const encoded = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64');
  const start = Math.ceil((k * 8) / 6);
  const end = Math.floor(((k + bytes.length) * 8) / 6);
  return encoded.slice(start, end);
}

/** Every form of `value` to mask, longest first (so no shorter form splits a longer one). */
export function secretForms(value: string): readonly string[] {
  const cached = cache.get(value);
  if (cached) return cached;
  const forms = new Set<string>();
  const add = (form: string, min = MIN_VALUE) => {
    if (form.length >= min) forms.add(form);
  };
  add(value);
  const json = JSON.stringify(value).slice(1, -1);
  add(json);
  add(JSON.stringify(json).slice(1, -1));
  const percent = encodeURIComponent(value);
  add(percent);
  add(percent.replace(/%20/g, '+'));
  const binary = (text: string) => {
    const encodings = [Buffer.from(text, 'utf8')];
    // btoa() encodes a string's characters as single bytes (Latin-1), not as UTF-8.
    if (/[\x80-\xff]/.test(text) && [...text].every((c) => c.charCodeAt(0) <= 0xff)) {
      encodings.push(Buffer.from(text, 'latin1'));
    }
    for (const bytes of encodings) {
      add(bytes.toString('hex'), MIN_FORM);
      for (let k = 0; k < 3; k++) {
        const core = base64Core(bytes, k);
        add(core, MIN_FORM);
        add(core.replace(/\+/g, '-').replace(/\//g, '_'), MIN_FORM);
      }
    }
  };
  binary(value);
  const lines = value.split(/\r?\n/);
  if (lines.length > 1) {
    for (const line of lines) {
      if (line.trim().length < MIN_LINE) continue;
      add(line.trim(), MIN_LINE);
      binary(line.trim());
    }
  }
  const sorted = [...forms].sort((a, b) => b.length - a.length);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(value, sorted);
  return sorted;
}

/**
 * Replaces every form of every secret value in a text with `[secret]` (values under MIN_VALUE
 * characters are left).
 */
export function maskSecrets(text: string, values: readonly string[]): string {
  let masked = text;
  for (const value of values) {
    if (value.length < MIN_VALUE) continue;
    for (const form of secretForms(value)) {
      if (masked.includes(form)) masked = masked.split(form).join(MASK);
    }
  }
  return masked;
}
