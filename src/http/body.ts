/**
 * The request body (docs/spec.md §2 "What a function receives"). koa-bodyparser parses the
 * common bodies, JSON and text, as it exists to; in front of it, small and ours, what it cannot
 * do: it reads the request stream itself and keeps only the text it decoded, while a webhook
 * signature needs the exact bytes; it decodes bodies as UTF-8 whatever their charset; its
 * inflation counts only decompressed bytes and lets zlib's errors out as 500s; its qs nests
 * `a[b]` and turns more than 20 repeated form keys into an object. So:
 *
 * 1. read the bytes once, bounded (413 at once, with the lingering close of linger.ts);
 * 2. undo the Content-Encoding, bounded by the same limit (a zip bomb is a 413);
 * 3. keep those exact bytes (`rawBody`, webhook signatures);
 * 4. parse by media type:
 *
 * | Content-Type                                                  | ctx.request.body                | by              |
 * |---------------------------------------------------------------|---------------------------------|-----------------|
 * | application/json, application/*+json, application/csp-report | the JSON value                  | koa-bodyparser  |
 * | text/*                                                        | string                          | koa-bodyparser  |
 * | application/x-www-form-urlencoded                             | object, repeated keys → arrays  | ours (flat keys, any charset) |
 * | anything else, or none                                        | base64 text, bodyIsBase64       | ours            |
 * | no body, or an empty one (any framing, any type)              | undefined                       |                 |
 *
 * koa-bodyparser reads a stream of the decoded bytes (never the socket), always UTF-8: a body in
 * another charset is transcoded first, and JSON nested too deeply for the event is refused
 * before it is parsed.
 */
import querystring from 'node:querystring';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import iconv from 'iconv-lite';
import type { Context, Middleware, Next } from 'koa';
import bodyParser from 'koa-bodyparser';
import { FaasError, InvalidBodyError, UnsupportedMediaTypeError } from '../errors';
import { tooLarge } from './error-handler';

/** Deepest nesting of arrays and objects a JSON body may have (the event is built recursively). */
export const MAX_JSON_DEPTH = 100;
/** Content codings applied one over the other (`gzip, br`) that are undone, at most. */
const MAX_CODINGS = 3;

type Kind = 'json' | 'form' | 'text' | 'binary';

const JSON_TYPE = /^application\/(?:json|csp-report|[\w!#$&^.+-]+\+json)$/;
const TEXT_TYPE = /^text\/[\w!#$&^.+-]+$/;
const CHARSET = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i;
const UTF8 = /^utf-?8$/i;
// iconv-lite knows these as "encodings", but they are Node's byte-to-text notations, not charsets.
const NOT_CHARSETS = new Set(['base64', 'hex']);
// A form is split on these bytes, so its charset must write them as ASCII does (not UTF-16).
const SEPARATORS = '&=%+';

/** What the body middleware leaves in ctx.state, besides ctx.request.body. */
export interface BodyState {
  /** The body's bytes after Content-Encoding decoding, before charset decoding; unset when empty. */
  rawBody?: Buffer;
  /** Set when ctx.request.body is base64 text of a type that is not JSON, form or text. */
  bodyIsBase64?: boolean;
}

/** Whether the request carries a body at all (type-is's definition). */
function hasBody(ctx: Context): boolean {
  const headers = ctx.req.headers;
  return !!headers['transfer-encoding'] || Number(headers['content-length'] || 0) > 0;
}

/**
 * Reads the body as sent, up to `limit` bytes. Past it: 413 at once, without reading on (the
 * 413's Connection: close ends the rest, after a bounded lingering read: linger.ts); a declared
 * Content-Length over it fails before a byte is read.
 */
function readRaw(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || NaN);
  if (declared > limit) return Promise.reject(tooLarge(`request body is over ${limit} bytes`));
  const req = ctx.req;
  if (req.destroyed) return Promise.reject(new InvalidBodyError('the connection closed early'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (err?: Error) => {
      req.off('data', onData).off('end', onEnd).off('error', stop).off('close', onClose);
      // Pause rather than destroy: destroying the request destroys the socket, and the 413
      // would never reach the client. The lingering close resumes it once the 413 is written.
      req.pause();
      if (!err) resolve(Buffer.concat(chunks, size));
      else if (err instanceof FaasError) reject(err);
      else reject(new InvalidBodyError(`the request body could not be read: ${err.message}`));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) stop(tooLarge(`request body is over ${limit} bytes`));
      else chunks.push(chunk);
    };
    const onEnd = () => stop();
    const onClose = () => stop(new InvalidBodyError('the connection closed before the body ended'));
    req.on('data', onData).on('end', onEnd).on('error', stop).on('close', onClose);
  });
}

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const inflateRaw = promisify(zlib.inflateRaw);
const brotli = promisify(zlib.brotliDecompress);

/**
 * Undoes one content coding, its output bounded by `limit` (a zip bomb stops there: 413).
 * `deflate` means the zlib format (RFC 9110 §8.4.1.2), but some clients send raw deflate: a body
 * without a zlib header is read as raw deflate.
 */
async function decodeOne(coding: string, bytes: Buffer, limit: number): Promise<Buffer> {
  const options = { maxOutputLength: limit };
  try {
    switch (coding) {
      case 'gzip':
      case 'x-gzip':
        return await gunzip(bytes, options);
      case 'deflate': {
        const zlibHeader =
          bytes.length >= 2 && (bytes[0] & 0x0f) === 8 && bytes.readUInt16BE(0) % 31 === 0;
        return await (zlibHeader ? inflate : inflateRaw)(bytes, options);
      }
      case 'br':
        return await brotli(bytes, options);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw tooLarge(`request body is over ${limit} bytes once decompressed (${coding})`);
    }
    throw new InvalidBodyError(`request body is not valid ${coding}: ${(err as Error).message}`);
  }
  throw new UnsupportedMediaTypeError(
    `Content-Encoding "${coding.slice(0, 64)}" is not supported: use gzip, deflate, br or identity`,
  );
}

/** Undoes the Content-Encoding, last applied first (RFC 9110 §8.4). */
async function decodeContent(header: string, bytes: Buffer, limit: number): Promise<Buffer> {
  const codings = header
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && coding !== 'identity');
  if (codings.length > MAX_CODINGS) {
    throw new UnsupportedMediaTypeError(
      `more than ${MAX_CODINGS} content codings are not supported`,
    );
  }
  for (const coding of codings.reverse()) bytes = await decodeOne(coding, bytes, limit);
  return bytes;
}

function kindOf(mediaType: string): Kind {
  if (JSON_TYPE.test(mediaType)) return 'json';
  if (mediaType === 'application/x-www-form-urlencoded') return 'form';
  if (TEXT_TYPE.test(mediaType)) return 'text';
  return 'binary';
}

/** The Content-Type's charset, UTF-8 when none; one iconv-lite cannot decode is a 415. */
function charsetOf(contentType: string): string {
  const match = CHARSET.exec(contentType);
  if (!match) return 'utf-8';
  const charset = match[1] ?? match[2];
  const plain = charset.toLowerCase().replace(/[^0-9a-z]/g, '');
  if (NOT_CHARSETS.has(plain) || !iconv.encodingExists(charset)) {
    throw new UnsupportedMediaTypeError(`charset "${charset.slice(0, 64)}" is not supported`);
  }
  return charset;
}

/**
 * Refuses JSON nested deeper than MAX_JSON_DEPTH, in one pass over its UTF-8 bytes without
 * recursion, before it is parsed: the event is built with JSON.stringify, which overflows the
 * stack near 5000 levels. (Quotes, backslashes and brackets are single bytes in UTF-8, never part
 * of a multi-byte character.)
 */
function checkDepth(bytes: Buffer): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      // A backslash escapes the next character, a quote included.
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new InvalidBodyError(`JSON body is nested deeper than ${MAX_JSON_DEPTH} levels`);
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
}

/** The media type koa-bodyparser is shown for each kind it parses. */
const PARSE_AS = { json: 'application/json', text: 'text/plain' } as const;

/**
 * koa-bodyparser for JSON (any JSON value, not only objects: `strict` off; `__proto__` is a key
 * like any other, as JSON.parse makes it) and text. The limit was applied to the bytes already.
 */
const parser = bodyParser({
  enableTypes: ['json', 'text'],
  strict: false,
  // co-body's option (@hapi/bourne), missing from the types: `__proto__` is data, not an error.
  ...({ onProtoPoisoning: 'ignore' } as object),
  // MAX_BODY was applied to the bytes, before and after decompression: none again here.
  jsonLimit: '1024gb',
  textLimit: '1024gb',
  onerror: (err: Error) => {
    if (err instanceof SyntaxError) {
      throw new InvalidBodyError(`request body is not valid JSON: ${err.message}`);
    }
    throw new InvalidBodyError(`the request body could not be read: ${err.message}`);
  },
});

/**
 * Runs koa-bodyparser over UTF-8 bytes already read and decoded: it gets a context of its own,
 * whose request stream replays those bytes typed as `kind`, and leaves the value in its body.
 */
async function koaParse(bytes: Buffer, kind: 'json' | 'text'): Promise<unknown> {
  const type = PARSE_AS[kind];
  const headers = { 'content-type': `${type}; charset=utf-8`, 'content-length': `${bytes.length}` };
  const req = Object.assign(Readable.from([bytes]), { headers });
  const request = {
    body: undefined as unknown,
    get: (name: string) => headers[name.toLowerCase() as keyof typeof headers] ?? '',
    is: (types: string | string[]) => ([] as string[]).concat(types).includes(type) && type,
  };
  await parser({ req, request } as unknown as Context, () => Promise.resolve());
  return request.body;
}

/**
 * application/x-www-form-urlencoded, read as Koa reads the query (node:querystring): flat keys
 * (`a[b]` is a key), repeated keys → an array however many, an object without a prototype. The
 * percent-escapes are bytes in the body's charset (WHATWG URL "urlencoded parser"), so the
 * body is split as latin1 (one character per byte) and each name and value decoded on its own.
 */
function parseForm(bytes: Buffer, charset: string): Record<string, string | string[]> {
  if (!iconv.encode(SEPARATORS, charset).equals(Buffer.from(SEPARATORS))) {
    throw new UnsupportedMediaTypeError(
      `charset "${charset.slice(0, 64)}" cannot carry a form: use UTF-8`,
    );
  }
  const decode = (binary: string) => {
    const unescaped = binary.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) =>
      String.fromCharCode(parseInt(hex, 16)),
    );
    return iconv.decode(Buffer.from(unescaped, 'latin1'), charset);
  };
  // maxKeys 0: no silent cut at 1000 pairs (MAX_BODY bounds the body).
  return querystring.parse(bytes.toString('latin1'), '&', '=', {
    maxKeys: 0,
    decodeURIComponent: decode,
  }) as Record<string, string | string[]>;
}

/**
 * Parses the body into ctx.request.body (see the table above), with the decoded bytes in
 * `ctx.state.rawBody`. Over `limit` bytes, before or after decompression → 413; a body that is
 * not what its Content-Encoding or type says, or is nested too deeply → 400 INVALID_BODY; an
 * unknown Content-Encoding or charset → 415 UNSUPPORTED_MEDIA_TYPE.
 */
export function body(limits: BodyLimits): Middleware {
  // Not an async function: a request without a body (most GETs) passes with no promise made here.
  return (ctx: Context, next: Next) =>
    hasBody(ctx) ? read(ctx, next, bodyLimit(limits, ctx.method, ctx.path)) : next();
}

/** MAX_BODY, and MAX_DEPLOY_BODY for a deploy (a bundle and its source map are larger). */
export interface BodyLimits {
  maxBodyBytes: number;
  maxDeployBytes: number;
}

/**
 * The body limit of a request, bytes: MAX_DEPLOY_BODY for `PUT /_/functions/<name>` (docs/spec.md
 * §6), else MAX_BODY. `path` as sent (the node server checks it before Koa parses it).
 */
export function bodyLimit(limits: BodyLimits, method: string | undefined, path: string): number {
  return method === 'PUT' && path.startsWith('/_/functions/')
    ? Math.max(limits.maxDeployBytes, limits.maxBodyBytes)
    : limits.maxBodyBytes;
}

/** The body middleware for a request that has a body. */
async function read(ctx: Context, next: Next, limit: number): Promise<void> {
  const request = ctx.request as Context['request'] & { body?: unknown };
  const state = ctx.state as BodyState;
  let bytes = await readRaw(ctx, limit);
  const encoding = ctx.get('content-encoding');
  if (bytes.length > 0 && encoding !== '') bytes = await decodeContent(encoding, bytes, limit);
  // Empty is no body, whatever the framing (chunked, Content-Length, a gzipped nothing).
  if (bytes.length === 0) return next();
  state.rawBody = bytes;
  const parsed = await parseBody(bytes, ctx.get('content-type'));
  request.body = parsed.body;
  if (parsed.isBase64) state.bodyIsBase64 = true;
  await next();
}

/**
 * Parses a decoded, non-empty body by its Content-Type (the table above); the draft runs of the
 * console (admin/drafts.ts) parse theirs with it too.
 * @throws InvalidBodyError, UnsupportedMediaTypeError as `body` answers them.
 */
export async function parseBody(
  bytes: Buffer,
  contentType: string,
): Promise<{ body: unknown; isBase64: boolean }> {
  const kind = kindOf(contentType.split(';')[0].trim().toLowerCase());
  if (kind === 'binary') return { body: bytes.toString('base64'), isBase64: true };
  const charset = charsetOf(contentType);
  if (kind === 'form') return { body: parseForm(bytes, charset), isBase64: false };
  // koa-bodyparser reads UTF-8: another charset is transcoded first (iconv-lite).
  const utf8 = UTF8.test(charset) ? bytes : Buffer.from(iconv.decode(bytes, charset), 'utf8');
  if (kind === 'json') checkDepth(utf8);
  return { body: await koaParse(utf8, kind), isBase64: false };
}
