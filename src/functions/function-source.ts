/**
 * What a function file is, apart from where it is stored: the name a request path maps to
 * (SPEC §2) and its version (a content hash). What it compiles to is transform.ts.
 */
import { createHash } from 'node:crypto';
import { InvalidFunctionNameError } from '../errors';

/** One path segment of a function name. */
export const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const MAX_SEGMENTS = 8;

/**
 * The function name for a request path: `/hello` → `hello`, `/a/b/` → `a/b`, `/` → `index`.
 * @throws InvalidFunctionNameError for anything else (dots, `%`, backslashes, empty segments…).
 */
export function functionNameFromPath(urlPath: string): string {
  if (urlPath === '/' || urlPath === '') return 'index';
  const trimmed = urlPath.endsWith('/') ? urlPath.slice(1, -1) : urlPath.slice(1);
  const segments = trimmed.split('/');
  if (
    !urlPath.startsWith('/') ||
    segments.length > MAX_SEGMENTS ||
    !segments.every((segment) => SEGMENT.test(segment))
  ) {
    const shown = JSON.stringify(urlPath.length > 80 ? `${urlPath.slice(0, 80)}…` : urlPath);
    throw new InvalidFunctionNameError(
      `invalid function name ${shown}: use up to ${MAX_SEGMENTS} segments of ` +
        '[A-Za-z0-9][A-Za-z0-9_-]* (at most 64 characters each), separated by /',
    );
  }
  return segments.join('/');
}

/** A version: the first 16 hex digits of the source's SHA-256. */
export function hashSource(source: string): string {
  return createHash('sha256').update(source).digest('hex').slice(0, 16);
}
