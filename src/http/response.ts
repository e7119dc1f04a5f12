/**
 * What a function's outcome becomes over HTTP (SPEC §2). Pure: no Koa, no I/O.
 *
 * | the function returns (or resolves to)                 | response                              |
 * |-------------------------------------------------------|---------------------------------------|
 * | undefined                                             | 204, no body                          |
 * | a string                                              | 200, text/plain; charset=utf-8        |
 * | any other JSON value                                  | 200, application/json; charset=utf-8  |
 * | { statusCode, headers?, body?, isBase64Encoded? }     | that status and headers; a string     |
 * |   (integer statusCode 100–599, no other keys)         |   body as is, other bodies as JSON,   |
 * |                                                       |   base64 decoded when isBase64Encoded |
 * | a function, symbol, BigInt, circular value            | 500 INVALID_RESULT                    |
 * | throws / rejects                                      | 500 FUNCTION_ERROR                    |
 *
 * The classification happens inside the sandbox (worker/envelope.ts); this module decodes its
 * tagged outcome (wire.ts) and validates everything the function controls: status, header names
 * and values, base64.
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
// Visible ASCII, space, tab and obs-text; no CR, LF or NUL (header injection).
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
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

function headerValue(name: string, value: unknown): string | string[] {
  if (Array.isArray(value)) return value.map((item) => headerValue(name, item) as string);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value !== 'string' || !HEADER_VALUE.test(value)) {
    throw invalid(`header "${name}" must be a string without control characters`);
  }
  return value;
}

function toHeaders(raw: unknown): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  if (raw === undefined || raw === null) return headers;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('headers must be an object');
  for (const [name, value] of Object.entries(raw)) {
    if (!TOKEN.test(name)) throw invalid(`"${name.slice(0, 64)}" is not a valid header name`);
    const lower = name.toLowerCase();
    if (RESERVED.has(lower) || value === undefined || value === null) continue;
    headers[lower] = headerValue(name, value);
  }
  return headers;
}

function fromShape(json: string): HttpResponse {
  const shape = JSON.parse(json) as ResponseShape;
  const headers = toHeaders(shape.h);
  const status = shape.s;
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
