/**
 * What a function file is, apart from where it is stored: the name a request path maps to
 * (docs/spec.md §2) and its version (a content hash). What it compiles to is transform.ts.
 */
import { createHash } from 'node:crypto';
import { InvalidFunctionNameError } from '../errors';

/** One path segment of a function name. */
export const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const MAX_SEGMENTS = 8;

/** A function name a request path may name, and the rest of the path after it. */
export interface Candidate {
  name: string;
  /** The path after the name: `''` or `/…` (kept as sent, percent-encoding included). */
  subpath: string;
}

/**
 * The function names a request path may name, longest first (docs/spec.md §2): `/hello` → `hello`;
 * `/a/b/` → `a/b`, then `a` with sub-path `/b/`; `/` → `index`. Every leading segment that is a
 * valid name segment (at most MAX_SEGMENTS) gives a candidate; the rest of the path is data and
 * may hold anything. A trailing slash is ignored.
 * @throws InvalidFunctionNameError when the first segment is not a name (dots, `%`, backslashes,
 *   empty…): nothing is looked up for such a path.
 */
export function candidatesForPath(urlPath: string): Candidate[] {
  if (urlPath === '/' || urlPath === '') return [{ name: 'index', subpath: '' }];
  // The hot path: `/name`, one valid segment.
  if (urlPath.indexOf('/', 1) < 0 && urlPath[0] === '/') {
    const name = urlPath.slice(1);
    if (SEGMENT.test(name)) return [{ name, subpath: '' }];
  }
  const segments = urlPath.slice(1).split('/');
  let valid = 0;
  while (valid < segments.length && valid < MAX_SEGMENTS && SEGMENT.test(segments[valid])) valid++;
  if (!urlPath.startsWith('/') || valid === 0) throw invalidName(urlPath);
  const candidates: Candidate[] = [];
  for (let count = valid; count >= 1; count--) {
    const rest = segments.slice(count);
    const subpath =
      rest.length === 0 || (rest.length === 1 && rest[0] === '') ? '' : `/${rest.join('/')}`;
    candidates.push({ name: segments.slice(0, count).join('/'), subpath });
  }
  return candidates;
}

/**
 * The one function name of a path with no sub-path (admin routes: `/_/functions/<name>`).
 * @throws InvalidFunctionNameError when the path is not exactly a name.
 */
export function exactFunctionName(urlPath: string): string {
  const [longest] = candidatesForPath(urlPath);
  if (longest.subpath !== '') throw invalidName(urlPath);
  return longest.name;
}

function invalidName(urlPath: string): InvalidFunctionNameError {
  const shown = JSON.stringify(urlPath.length > 80 ? `${urlPath.slice(0, 80)}…` : urlPath);
  return new InvalidFunctionNameError(
    `invalid function name ${shown}: use up to ${MAX_SEGMENTS} segments of ` +
      '[A-Za-z0-9][A-Za-z0-9_-]* (at most 64 characters each), separated by /',
  );
}

/** A version: the first 16 hex digits of the source's SHA-256. */
export function hashSource(source: string): string {
  return createHash('sha256').update(source).digest('hex').slice(0, 16);
}

/** A file's version: the hash of its source, and of its extension when it is not `.js`. */
export function versionOf(source: string, file: string): string {
  return file.endsWith('.js')
    ? hashSource(source)
    : hashSource(`${file.slice(file.lastIndexOf('.'))}\0${source}`);
}
