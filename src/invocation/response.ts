/**
 * What a function's outcome becomes over HTTP (docs/spec.md §2). Pure: no Koa, no I/O.
 *
 * | the function returns (or resolves to)                 | response                              |
 * |-------------------------------------------------------|---------------------------------------|
 * | undefined                                             | 204, no body                          |
 * | a string                                              | 200, text/plain; charset=utf-8        |
 * | any other JSON value                                  | 200, application/json; charset=utf-8  |
 * | { statusCode, headers?, body?, isBase64Encoded? }     | that status and headers; a string     |
 * |   (integer statusCode 200–599, no other keys)         |   body as is, other bodies as JSON,   |
 * |                                                       |   base64 decoded when isBase64Encoded |
 * | a function, symbol, BigInt, circular value            | 500 INVALID_RESULT                    |
 * | throws / rejects                                      | 500 FUNCTION_ERROR                    |
 *
 * The classification happens inside the sandbox (worker/envelope.ts); this module decodes its
 * tagged outcome (wire.ts) and validates everything the function controls: status, header names
 * and values, base64. Header names are case-insensitive: keys that differ only in case are one
 * field, merged, never dropped (toHeaders).
 */
import {
  FunctionCompileError,
  FunctionError,
  FunctionTimeoutError,
  InvalidResultError,
} from '../errors';
import { Outcome } from '../pool/wire';
import type { ResponseShape } from '../pool/wire';

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body?: string | Buffer;
}

export const TEXT = 'text/plain; charset=utf-8';
export const JSON_TYPE = 'application/json; charset=utf-8';

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Visible ASCII, space and tab (docs/spec.md §2): one rule whatever the body. Node writes a
// header value as latin1 or UTF-8 depending on how the response is sent, so any other character
// would reach the wire as different bytes on different answers (and CR, LF, NUL inject headers).
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;
// eslint-disable-next-line no-control-regex -- finding control characters is its purpose
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
// Framing is the server's business: a function cannot set these.
const RESERVED = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
]);
// Statuses that never carry a body (RFC 9110).
const NO_BODY = new Set([204, 205, 304]);

function invalid(message: string): InvalidResultError {
  return new InvalidResultError(`invalid result: ${message}`);
}

/**
 * Fields that take a single value (RFC 9110, RFC 6265bis, Fetch): joined with ", " they would
 * mean something else or nothing, so two different values are an INVALID_RESULT, not a guess.
 */
const SINGLE = new Set([
  'access-control-allow-credentials',
  'access-control-allow-origin',
  'access-control-max-age',
  'age',
  'content-disposition',
  'content-location',
  'content-range',
  'content-type',
  'date',
  'etag',
  'expires',
  'last-modified',
  'location',
  'retry-after',
  'strict-transport-security',
  'x-content-type-options',
  'x-frame-options',
]);

/** Why a header value was refused: a control character, or a character outside ASCII. */
function badHeaderValue(name: string, value: string): InvalidResultError {
  const control = CONTROL.exec(value);
  if (control) {
    const code = control[0].charCodeAt(0).toString(16).padStart(2, '0').toUpperCase();
    return invalid(`header "${name}" contains a control character (0x${code})`);
  }
  const char = [...value].find((c) => !HEADER_VALUE.test(c)) ?? '';
  const point = `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
  const hint =
    name.toLowerCase() === 'content-disposition'
      ? `use RFC 8187's filename*=UTF-8''<percent-encoded name> (encodeURIComponent), ` +
        `with an ASCII filename="…" beside it`
      : 'percent-encode it (encodeURIComponent) or put it in the body';
  return invalid(
    `header "${name}" contains a non-ASCII character (${point}): header values are ASCII; ${hint}`,
  );
}

/** A header's value, or list of values, as strings. */
function headerValues(name: string, value: unknown): string[] {
  const items = Array.isArray(value) ? (value as unknown[]) : [value];
  return items.map((item) => {
    if (typeof item === 'number' || typeof item === 'boolean') return String(item);
    if (typeof item !== 'string') {
      throw invalid(`header "${name}" must be a string, a number or a boolean`);
    }
    if (!HEADER_VALUE.test(item)) throw badHeaderValue(name, item);
    return item;
  });
}

/**
 * The function's headers, names lower-cased. Names differ only in case → one field, values in
 * key order: Set-Cookie keeps one line per cookie; a single-valued field (SINGLE) must not be
 * given two different values; any other field is joined with ", " (RFC 9110 §5.3).
 */
function toHeaders(raw: unknown): Record<string, string | string[]> {
  // No prototype: a header named __proto__ is a name like any other.
  const headers = Object.create(null) as Record<string, string | string[]>;
  if (raw === undefined || raw === null) return headers;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('headers must be an object');
  const fields = new Map<string, { name: string; values: string[] }>();
  for (const [name, value] of Object.entries(raw)) {
    if (!TOKEN.test(name)) throw invalid(`"${name.slice(0, 64)}" is not a valid header name`);
    const lower = name.toLowerCase();
    if (RESERVED.has(lower) || value === undefined || value === null) continue;
    const field = fields.get(lower) ?? { name, values: [] };
    field.values.push(...headerValues(name, value));
    fields.set(lower, field);
  }
  for (const [lower, { name, values }] of fields) {
    if (values.length === 0) continue;
    if (lower === 'set-cookie') {
      headers[lower] = values.length === 1 ? values[0] : values;
    } else if (SINGLE.has(lower)) {
      const distinct = new Set(values).size;
      if (distinct > 1) {
        throw invalid(`header "${name}" takes one value but was given ${distinct} different ones`);
      }
      headers[lower] = values[0];
    } else {
      headers[lower] = values.join(', ');
    }
  }
  return headers;
}

function fromShape(json: string): HttpResponse {
  const shape = JSON.parse(json) as ResponseShape;
  const headers = toHeaders(shape.h);
  const status = shape.s;
  // Checked here, not only in the sandbox: a worker is not trusted with the status line (a 101
  // would hand the connection over). A 1xx is informational and never ends an exchange.
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw invalid(
      `statusCode ${String(status).slice(0, 16)} cannot end an exchange: use 200–599` +
        (status >= 100 && status < 200 ? ' (1xx statuses are informational)' : ''),
    );
  }
  if (NO_BODY.has(status) || shape.b === undefined) return { status, headers };
  let body: string | Buffer = shape.b;
  if (shape.e) {
    if (shape.j || !BASE64.test(shape.b))
      throw invalid('isBase64Encoded is set but body is not base64');
    body = Buffer.from(shape.b, 'base64');
    headers['content-type'] ??= 'application/octet-stream';
  } else {
    headers['content-type'] ??= shape.j ? JSON_TYPE : TEXT;
  }
  return { status, headers, body };
}

/**
 * Decodes a worker's tagged outcome into a response.
 * @throws FunctionError, InvalidResultError, FunctionTimeoutError or FunctionCompileError.
 */
export function toResponse(outcome: string): HttpResponse {
  const rest = outcome.slice(1);
  switch (outcome[0]) {
    case Outcome.undefined:
      return { status: 204, headers: {} };
    case Outcome.string:
      return { status: 200, headers: { 'content-type': TEXT }, body: rest };
    case Outcome.json:
      return { status: 200, headers: { 'content-type': JSON_TYPE }, body: rest };
    case Outcome.response:
      return fromShape(rest);
    case Outcome.error: {
      const { name, message, stack } = JSON.parse(rest) as {
        name: string;
        message: string;
        stack?: string;
      };
      throw new FunctionError(name, message, stack);
    }
    case Outcome.timeout:
      throw new FunctionTimeoutError(rest);
    case Outcome.compile: {
      const { message, line, column } = JSON.parse(rest) as {
        message: string;
        line?: number;
        column?: number;
      };
      throw new FunctionCompileError(message, { line, column });
    }
    case Outcome.invalid:
      throw invalid(rest);
    default:
      throw invalid('the worker sent an unknown outcome');
  }
}
