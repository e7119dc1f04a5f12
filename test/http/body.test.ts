/**
 * Request bodies (docs/spec.md §2 "What a function receives", §3 400/413/415), kind by kind: media types,
 * charsets, content codings and their limits, empty bodies, form keys, JSON depth, `__proto__`,
 * and the exact bytes kept for webhook signatures.
 *
 * First the body middleware alone (the error boundary, body(), and a last middleware answering
 * what it left in ctx) over real HTTP on loopback, then the real server, to show what a function
 * receives.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import zlib from 'node:zlib';
import iconv from 'iconv-lite';
import Koa from 'koa';
import { after, before, describe, test } from 'node:test';
import { body, MAX_JSON_DEPTH } from '../../src/http/body';
import type { BodyState } from '../../src/http/body';
import { errorBoundary } from '../../src/http/error-handler';
import { createLogger } from '../../src/observe/logger';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const LIMIT = 64 * 1024;

/** What the last middleware saw. */
interface Seen {
  has: boolean;
  body: unknown;
  /** 'null' for an object without a prototype, 'Object' for a plain one. */
  prototype?: string;
  base64: boolean;
  /** ctx.state.rawBody as base64, null when unset. */
  raw: string | null;
  rawIsBuffer: boolean;
  query: Record<string, string | string[]>;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown>;
}

interface Send {
  type?: string;
  encoding?: string;
  /** Sent with a Content-Length. */
  body?: Buffer | string;
  /** Sent chunked, one chunk each (none: an empty chunked body). */
  chunks?: (Buffer | string)[];
  path?: string;
  method?: string;
  /** The middleware app's by default. */
  port?: number;
}

let server: http.Server;
let port: number;
const logs: Record<string, unknown>[] = [];

function bodyApp(limit: number): Koa {
  const app = new Koa();
  const logger = createLogger({ level: 'debug', write: (line) => logs.push(JSON.parse(line)) });
  // As in server.ts: errors are answered by the boundary; this only sees a response that could
  // not be written (a client that hung up), which Koa would print to stderr.
  app.on('error', () => undefined);
  app.use(errorBoundary(logger));
  app.use(body({ maxBodyBytes: limit, maxDeployBytes: limit }));
  app.use((ctx) => {
    const parsed = (ctx.request as { body?: unknown }).body;
    const state = ctx.state as BodyState;
    const isObject = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed);
    const report: Seen = {
      has: parsed !== undefined,
      body: parsed ?? null,
      prototype: isObject
        ? Object.getPrototypeOf(parsed) === null
          ? 'null'
          : 'Object'
        : undefined,
      base64: state.bodyIsBase64 === true,
      raw: state.rawBody === undefined ? null : state.rawBody.toString('base64'),
      rawIsBuffer: Buffer.isBuffer(state.rawBody),
      query: ctx.query as Record<string, string | string[]>,
    };
    ctx.body = report;
  });
  return app;
}

function send(options: Send): Promise<Reply> {
  const headers: http.OutgoingHttpHeaders = {};
  if (options.type !== undefined) headers['Content-Type'] = options.type;
  if (options.encoding !== undefined) headers['Content-Encoding'] = options.encoding;
  if (options.chunks) headers['Transfer-Encoding'] = 'chunked';
  else headers['Content-Length'] = Buffer.byteLength(options.body ?? '');
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: options.port ?? port,
        path: options.path ?? '/',
        method: options.method ?? 'POST',
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            json: JSON.parse(text),
          });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    for (const chunk of options.chunks ?? []) req.write(chunk);
    req.end(options.chunks ? undefined : options.body);
  });
}

/** Sends, asserts a 200, returns what the middleware saw. */
async function seen(options: Send): Promise<Seen> {
  const reply = await send(options);
  assert.equal(reply.status, 200, reply.text);
  return reply.json as unknown as Seen;
}

/** Sends, asserts the docs/spec.md §3 error, returns its message. */
async function refused(options: Send, status: number, code: string): Promise<string> {
  const reply = await send(options);
  assert.equal(reply.status, status, reply.text);
  const error = reply.json.error as { code: string; message: string };
  assert.equal(error.code, code, reply.text);
  assert.equal(typeof reply.json.requestId, 'string');
  assert.ok(error.message.length > 0);
  if (status === 413) assert.equal(reply.headers.connection, 'close');
  return error.message;
}

const b64 = (bytes: Buffer | string) => Buffer.from(bytes).toString('base64');
const latin1 = (text: string) => Buffer.from(text, 'latin1');
const thirds = (bytes: Buffer) => {
  const third = Math.ceil(bytes.length / 3);
  return [bytes.subarray(0, third), bytes.subarray(third, 2 * third), bytes.subarray(2 * third)];
};

before(async () => {
  server = http.createServer(bodyApp(LIMIT).callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('media types: every +json type is JSON, text/* is text, the rest is base64', () => {
  const json = '{"a":[1,"x"],"n":null}';
  const jsonTypes = [
    'application/json',
    'APPLICATION/JSON',
    'application/json; charset=utf-8',
    ' application/json ; charset="UTF-8"',
    'application/vnd.api+json',
    'application/merge-patch+json',
    'application/json-patch+json',
    'application/cloudevents+json',
    'application/cloudevents+json; charset=utf-8',
    'application/ld+json',
    'application/problem+json',
    'application/scim+json',
    'application/vnd.github.v3+json',
    'application/csp-report',
  ];
  for (const type of jsonTypes) {
    test(`${JSON.stringify(type)} → the JSON value`, async () => {
      const s = await seen({ type, body: json });
      assert.deepEqual(s.body, { a: [1, 'x'], n: null });
      assert.equal(s.base64, false);
      assert.equal(s.raw, b64(json));
    });
  }

  for (const type of ['application/cloudevents+json', 'application/merge-patch+json']) {
    test(`${type} that is not JSON → 400 INVALID_BODY`, async () => {
      await refused({ type, body: 'not json' }, 400, 'INVALID_BODY');
    });
  }

  const textTypes = [
    'text/plain',
    'text/html',
    'text/csv',
    'text/markdown; charset=utf-8',
    'text/json',
  ];
  for (const type of textTypes) {
    test(`${type} → a string`, async () => {
      const s = await seen({ type, body: `${json}\r\n` });
      assert.equal(s.body, `${json}\r\n`);
      assert.equal(s.base64, false);
    });
  }

  const binaryTypes = [
    'application/octet-stream',
    'image/png',
    'application/jsonx',
    'application/json+xml',
    'video/x+json',
    'image/svg+xml',
    'application/xml',
    'application/javascript',
    'multipart/form-data; boundary=x',
    'application/octet-stream; charset=no-such-charset',
    undefined,
  ];
  const bytes = Buffer.from([0, 1, 2, 0x7b, 0xff, 0xfe, 10, 13]);
  for (const type of binaryTypes) {
    test(`${type ?? 'no Content-Type'} → base64 with bodyIsBase64`, async () => {
      const s = await seen({ type, body: bytes });
      assert.equal(s.body, b64(bytes));
      assert.equal(s.base64, true);
      assert.equal(s.raw, b64(bytes));
    });
  }
});

describe('ctx.state.rawBody: the exact bytes, whatever the type', () => {
  const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const rows: { type: string; bytes: Buffer; body: unknown }[] = [
    // A webhook: whitespace, key order and escapes as sent, which a re-serialisation loses.
    {
      type: 'application/json',
      bytes: Buffer.from('{ "b" : 2,\n  "a":1, "s":"\\u00e9\\/" }\n'),
      body: { b: 2, a: 1, s: 'é/' },
    },
    {
      type: 'application/json',
      bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"bom":true}')]),
      body: { bom: true },
    },
    { type: 'text/plain', bytes: Buffer.from([0xef, 0xbb, 0xbf, 0x68, 0x69]), body: 'hi' },
    { type: 'text/plain', bytes: Buffer.from([0x61, 0xff, 0x62]), body: 'a\uFFFDb' },
    { type: 'text/plain; charset=iso-8859-1', bytes: latin1('caf\xe9\r\n'), body: 'café\r\n' },
    {
      type: 'application/x-www-form-urlencoded',
      bytes: Buffer.from('b=2&a=1&a=%41+%2b'),
      body: { b: '2', a: ['1', 'A +'] },
    },
    { type: 'application/octet-stream', bytes: allBytes, body: b64(allBytes) },
  ];
  for (const row of rows) {
    test(`${row.type} ${JSON.stringify(row.bytes.toString('latin1').slice(0, 24))}`, async () => {
      const s = await seen({ type: row.type, body: row.bytes });
      assert.deepEqual(s.body, row.body);
      assert.equal(s.rawIsBuffer, true);
      assert.equal(s.raw, b64(row.bytes));
    });
  }
});

describe('charsets decode text, forms and JSON; an unknown one is 415', () => {
  const form = 'application/x-www-form-urlencoded';
  const percent = (bytes: Buffer) => [...bytes].map((b) => `%${b.toString(16)}`).join('');
  const rows: { type: string; bytes: Buffer; body: unknown }[] = [
    { type: 'text/plain; charset=iso-8859-1', bytes: latin1('caf\xe9'), body: 'café' },
    { type: 'text/plain; charset=ISO-8859-1', bytes: latin1('caf\xe9'), body: 'café' },
    { type: 'text/plain;charset="latin1"', bytes: latin1('caf\xe9'), body: 'café' },
    { type: 'text/plain; format=flowed; charset=iso-8859-1', bytes: latin1('\xe9'), body: 'é' },
    {
      type: 'text/plain; charset=windows-1252',
      bytes: Buffer.from([0x80, 0x20, 0xe9]),
      body: '€ é',
    },
    {
      type: 'text/plain; charset=utf-16le',
      bytes: Buffer.from('café ✓', 'utf16le'),
      body: 'café ✓',
    },
    { type: 'text/plain; charset=utf-16be', bytes: iconv.encode('café', 'utf-16be'), body: 'café' },
    {
      type: 'text/plain; charset=shift_jis',
      bytes: iconv.encode('日本語', 'shift_jis'),
      body: '日本語',
    },
    { type: 'text/html; charset=koi8-r', bytes: iconv.encode('привет', 'koi8-r'), body: 'привет' },
    { type: 'text/plain', bytes: Buffer.from('café ✓'), body: 'café ✓' },
    { type: 'text/plain; charset=utf-8', bytes: Buffer.from('café ✓'), body: 'café ✓' },
    {
      type: 'application/json; charset=iso-8859-1',
      bytes: latin1('{"a":"caf\xe9"}'),
      body: { a: 'café' },
    },
    {
      type: 'application/json; charset=utf-16',
      bytes: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"a":"é"}', 'utf16le')]),
      body: { a: 'é' },
    },
    {
      type: 'application/vnd.api+json; charset=windows-1252',
      bytes: iconv.encode('["€"]', 'windows-1252'),
      body: ['€'],
    },
    {
      type: `${form}; charset=iso-8859-1`,
      bytes: latin1('a=caf%E9&b=caf\xe9&c%E9=%2B+'),
      body: { a: 'café', b: 'café', cé: '+ ' },
    },
    {
      type: form,
      bytes: Buffer.from('a=caf%C3%A9&b=café&%E2%9C%93=%F0%9F%98%80'),
      body: { a: 'café', b: 'café', '✓': '😀' },
    },
    {
      type: `${form}; charset=shift_jis`,
      bytes: Buffer.from(`k=${percent(iconv.encode('日本', 'shift_jis'))}`),
      body: { k: '日本' },
    },
  ];
  for (const row of rows) {
    test(`${row.type} → ${JSON.stringify(row.body)}`, async () => {
      const s = await seen({ type: row.type, body: row.bytes });
      assert.deepEqual(s.body, row.body);
      assert.equal(s.raw, b64(row.bytes), 'rawBody is the bytes before charset decoding');
    });
  }

  const unknown = ['no-such-charset', 'base64', 'hex', '', '"utf-32"', 'x-user-defined'];
  const kinds = ['text/plain', 'application/json', form, 'application/ld+json'];
  for (const charset of unknown) {
    for (const kind of kinds) {
      test(`${kind}; charset=${charset} → 415 UNSUPPORTED_MEDIA_TYPE`, async () => {
        await refused(
          { type: `${kind}; charset=${charset}`, body: kind === form ? 'a=1' : '"a"' },
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        );
      });
    }
  }

  for (const charset of ['utf-16le', 'utf-16', 'utf-7']) {
    test(`a form in ${charset} (not ASCII-compatible) → 415`, async () => {
      const bytes = iconv.encode('a=1&b=2', charset);
      await refused(
        { type: `${form}; charset=${charset}`, body: bytes },
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
    });
  }
});

describe('Content-Encoding: gzip, deflate, br and identity are undone before parsing', () => {
  const payloads: { type: string; bytes: Buffer; body: unknown }[] = [
    { type: 'application/json', bytes: Buffer.from('{"a":[1,"é"]}'), body: { a: [1, 'é'] } },
    {
      type: 'application/x-www-form-urlencoded',
      bytes: Buffer.from('a=1&a=2&b=%C3%A9'),
      body: { a: ['1', '2'], b: 'é' },
    },
    { type: 'text/plain; charset=iso-8859-1', bytes: latin1('h\xe9llo\r\n'), body: 'héllo\r\n' },
    {
      type: 'application/octet-stream',
      bytes: Buffer.from([0, 1, 2, 255]),
      body: b64(Buffer.from([0, 1, 2, 255])),
    },
  ];
  const codings: { name: string; header: string; encode: (bytes: Buffer) => Buffer }[] = [
    { name: 'gzip', header: 'gzip', encode: (b) => zlib.gzipSync(b) },
    { name: 'x-gzip', header: 'x-gzip', encode: (b) => zlib.gzipSync(b) },
    { name: 'GZIP', header: 'GZIP', encode: (b) => zlib.gzipSync(b) },
    { name: 'deflate (zlib format)', header: 'deflate', encode: (b) => zlib.deflateSync(b) },
    { name: 'deflate (raw)', header: 'deflate', encode: (b) => zlib.deflateRawSync(b) },
    { name: 'br', header: 'br', encode: (b) => zlib.brotliCompressSync(b) },
    { name: 'identity', header: 'identity', encode: (b) => b },
    { name: 'gzip, identity', header: 'gzip, identity', encode: (b) => zlib.gzipSync(b) },
    {
      name: 'gzip then br',
      header: 'gzip, br',
      encode: (b) => zlib.brotliCompressSync(zlib.gzipSync(b)),
    },
  ];
  for (const coding of codings) {
    for (const payload of payloads) {
      for (const framing of ['Content-Length', 'chunked'] as const) {
        test(`${coding.name}, ${payload.type}, ${framing}`, async () => {
          const encoded = coding.encode(payload.bytes);
          const s = await seen({
            type: payload.type,
            encoding: coding.header,
            ...(framing === 'chunked' ? { chunks: thirds(encoded) } : { body: encoded }),
          });
          assert.deepEqual(s.body, payload.body);
          assert.equal(s.raw, b64(payload.bytes), 'rawBody is the bytes after decompression');
        });
      }
    }
  }

  const json = Buffer.from('{"a":1}');
  const gzipped = zlib.gzipSync(json);
  const badCrc = Buffer.from(gzipped);
  badCrc[badCrc.length - 6] ^= 0xff;
  const badAdler = zlib.deflateSync(json);
  badAdler[badAdler.length - 1] ^= 0xff;
  const lies: { name: string; encoding: string; bytes: Buffer }[] = [
    { name: 'plain JSON', encoding: 'gzip', bytes: json },
    { name: 'plain JSON', encoding: 'x-gzip', bytes: json },
    { name: 'plain JSON', encoding: 'deflate', bytes: json },
    { name: 'plain JSON', encoding: 'br', bytes: json },
    { name: 'plain JSON', encoding: 'gzip, br', bytes: json },
    { name: 'a gzip cut in half', encoding: 'gzip', bytes: gzipped.subarray(0, 12) },
    {
      name: 'a gzip with trailing garbage',
      encoding: 'gzip',
      bytes: Buffer.concat([gzipped, json]),
    },
    { name: 'a gzip with a wrong CRC', encoding: 'gzip', bytes: badCrc },
    { name: 'a zlib stream with a wrong Adler-32', encoding: 'deflate', bytes: badAdler },
    { name: 'gzip sent as br', encoding: 'br', bytes: gzipped },
    {
      name: 'a brotli stream cut short',
      encoding: 'br',
      bytes: zlib.brotliCompressSync(crypto.randomBytes(256)).subarray(0, 100),
    },
  ];
  for (const lie of lies) {
    for (const type of ['application/json', 'application/octet-stream']) {
      test(`${lie.name} labelled ${lie.encoding} (${type}) → 400 INVALID_BODY`, async () => {
        const message = await refused(
          { type, encoding: lie.encoding, body: lie.bytes },
          400,
          'INVALID_BODY',
        );
        assert.match(message, /not valid (gzip|x-gzip|deflate|br)/);
      });
    }
  }

  for (const encoding of [
    'compress',
    'zstd',
    'no-such-coding',
    'gzip, zstd',
    'zstd, gzip',
    'gzip, gzip, gzip, gzip',
  ]) {
    test(`Content-Encoding: ${encoding} → 415 UNSUPPORTED_MEDIA_TYPE`, async () => {
      const bytes = zlib.gzipSync(json);
      await refused(
        { type: 'application/json', encoding, body: bytes },
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
    });
  }
});

describe('limits: the compressed and the decompressed size are both bounded by MAX_BODY', () => {
  const codings: [string, (bytes: Buffer) => Buffer][] = [
    ['identity', (b) => b],
    ['gzip', (b) => zlib.gzipSync(b)],
    ['deflate', (b) => zlib.deflateSync(b)],
    ['br', (b) => zlib.brotliCompressSync(b)],
  ];
  for (const [coding, encode] of codings) {
    for (const framing of ['Content-Length', 'chunked'] as const) {
      const frame = (bytes: Buffer) =>
        framing === 'chunked' ? { chunks: thirds(bytes) } : { body: bytes };
      test(`${coding}, ${framing}: MAX_BODY bytes pass, one more → 413`, async () => {
        const exact = Buffer.alloc(LIMIT, 0x61);
        const s = await seen({ type: 'text/plain', encoding: coding, ...frame(encode(exact)) });
        assert.equal(s.body, exact.toString());
        const over = Buffer.alloc(LIMIT + 1, 0x61);
        await refused(
          { type: 'text/plain', encoding: coding, ...frame(encode(over)) },
          413,
          'PAYLOAD_TOO_LARGE',
        );
      });
    }
  }

  // A zip bomb: a few KB that inflate to 16 MB. Decompression stops at MAX_BODY.
  const zeros = Buffer.alloc(16 * 1024 * 1024);
  const bombs: [string, Buffer][] = [
    ['gzip', zlib.gzipSync(zeros, { level: 9 })],
    ['deflate', zlib.deflateSync(zeros, { level: 9 })],
    ['br', zlib.brotliCompressSync(zeros)],
    ['gzip, gzip', zlib.gzipSync(zlib.gzipSync(zeros, { level: 9 }), { level: 9 })],
  ];
  for (const [coding, bomb] of bombs) {
    test(`a ${coding} bomb (${bomb.length} bytes → 16 MB) → 413`, async () => {
      assert.ok(bomb.length < LIMIT, 'the bomb itself is under MAX_BODY');
      const message = await refused(
        { type: 'application/json', encoding: coding, body: bomb },
        413,
        'PAYLOAD_TOO_LARGE',
      );
      assert.match(message, /decompressed/);
    });
  }

  // Incompressible: the gzip is larger than MAX_BODY although its content is not.
  const random = crypto.randomBytes(LIMIT - 8);
  const bigGzip = zlib.gzipSync(random, { level: 0 });
  for (const framing of ['Content-Length', 'chunked'] as const) {
    test(`a compressed body over MAX_BODY (${framing}) → 413, whatever it inflates to`, async () => {
      assert.ok(bigGzip.length > LIMIT);
      const framed = framing === 'chunked' ? { chunks: thirds(bigGzip) } : { body: bigGzip };
      await refused(
        { type: 'application/octet-stream', encoding: 'gzip', ...framed },
        413,
        'PAYLOAD_TOO_LARGE',
      );
    });
  }

  // Raw deflate of empty stored blocks: endless input that inflates to nothing.
  const emptyBlock = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);
  const finalBlock = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]);
  test('compressed input that inflates to nothing is still bounded (chunked) → 413', async () => {
    const blocks = Array.from({ length: Math.ceil(LIMIT / 5 / 64) + 1 }, () =>
      Buffer.concat(Array.from({ length: 64 }, () => emptyBlock)),
    );
    await refused(
      { type: 'text/plain', encoding: 'deflate', chunks: blocks },
      413,
      'PAYLOAD_TOO_LARGE',
    );
  });
  test('the same under MAX_BODY inflates to an empty body: no body', async () => {
    const bytes = Buffer.concat([...Array.from({ length: 100 }, () => emptyBlock), finalBlock]);
    const s = await seen({ type: 'text/plain', encoding: 'deflate', chunks: [bytes] });
    assert.equal(s.has, false);
    assert.equal(s.raw, null);
  });
});

describe('empty means no body, whatever the framing and the type', () => {
  const types = [
    'application/json',
    'application/cloudevents+json',
    'application/x-www-form-urlencoded',
    'text/plain',
    'application/octet-stream',
    undefined,
  ];
  const framings: { name: string; send: Send }[] = [
    { name: 'Content-Length: 0', send: { body: '' } },
    { name: 'chunked, no chunk', send: { chunks: [] } },
    { name: 'chunked, empty chunks only', send: { chunks: ['', ''] } },
    { name: 'a gzipped nothing', send: { encoding: 'gzip', body: zlib.gzipSync(Buffer.alloc(0)) } },
    {
      name: 'a br nothing, chunked',
      send: { encoding: 'br', chunks: [zlib.brotliCompressSync(Buffer.alloc(0))] },
    },
    { name: 'a PUT, chunked', send: { method: 'PUT', chunks: [] } },
  ];
  for (const type of types) {
    for (const framing of framings) {
      test(`${type ?? 'no type'}, ${framing.name} → undefined, no rawBody, no base64`, async () => {
        const s = await seen({ type, ...framing.send });
        assert.equal(s.has, false);
        assert.equal(s.raw, null);
        assert.equal(s.base64, false);
      });
    }
  }
});

describe('forms: flat keys, repeated keys → arrays however many, exactly as the query', () => {
  const form = 'application/x-www-form-urlencoded';
  const repeated = (n: number) => Array.from({ length: n }, (_, i) => `tag=t${i + 1}`).join('&');
  const strings = [
    repeated(1),
    repeated(2),
    repeated(20),
    repeated(21),
    repeated(25),
    repeated(500),
    'a[b]=1&a[c]=2',
    'a[100000]=x',
    'a[0]=x&a[1]=y',
    'a[]=1&a[]=2',
    'a.b=1&a.c=2',
    'x=1&x=&x',
    'a+b=c+d&e=%2B%20',
    '%E2%9C%93=%F0%9F%98%80',
    '=v&k&&k2=',
    'a=1;b=2',
    '__proto__=x&constructor[prototype][polluted]=1',
  ];
  for (const string of strings) {
    test(`${string.length > 50 ? `${string.slice(0, 50)}…` : string}`, async () => {
      const s = await seen({ type: form, body: string, path: `/?${string}` });
      assert.deepEqual(s.body, s.query);
      assert.equal(s.prototype, 'null');
      assert.equal(s.raw, b64(string));
    });
  }

  for (const n of [21, 25, 1000, 5000]) {
    test(`tag repeated ${n} times → an array of ${n}, in order`, async () => {
      const s = await seen({ type: form, body: repeated(n) });
      const tags = (s.body as { tag: string[] }).tag;
      assert.ok(Array.isArray(tags), JSON.stringify(s.body).slice(0, 80));
      assert.deepEqual(
        tags,
        Array.from({ length: n }, (_, i) => `t${i + 1}`),
      );
    });
  }

  test('a sparse index stays a flat key: no array of 100000 holes', async () => {
    const s = await seen({ type: form, body: 'a[100000]=x&b[99999999]=y' });
    assert.deepEqual(s.body, { 'a[100000]': 'x', 'b[99999999]': 'y' });
  });
});

describe(`JSON deeper than ${MAX_JSON_DEPTH} levels → 400, checked without recursion`, () => {
  const arrays = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  const objects = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
  const mixed = (n: number) =>
    Array.from({ length: n }, (_, i) => (i % 2 ? '{"k":' : '[')).join('') +
    '0' +
    Array.from({ length: n }, (_, i) => (i % 2 ? '}' : ']'))
      .reverse()
      .join('');
  const ok = [
    { name: 'arrays, 1 level', text: arrays(1) },
    { name: `arrays, ${MAX_JSON_DEPTH} levels`, text: arrays(MAX_JSON_DEPTH) },
    { name: `objects, ${MAX_JSON_DEPTH} levels`, text: objects(MAX_JSON_DEPTH) },
    { name: `mixed, ${MAX_JSON_DEPTH} levels`, text: mixed(MAX_JSON_DEPTH) },
    { name: 'brackets inside a string', text: `["${'['.repeat(5000)}"]` },
    { name: 'brackets after an escaped quote', text: `["\\"${'{['.repeat(5000)}"]` },
    { name: 'many siblings', text: `[${Array.from({ length: 5000 }, () => '[]').join(',')}]` },
  ];
  for (const row of ok) {
    test(`${row.name} → 200`, async () => {
      const s = await seen({ type: 'application/json', body: row.text });
      assert.deepEqual(s.body, JSON.parse(row.text));
    });
  }
  const deep = [
    { name: `arrays, ${MAX_JSON_DEPTH + 1} levels`, text: arrays(MAX_JSON_DEPTH + 1) },
    { name: `objects, ${MAX_JSON_DEPTH + 1} levels`, text: objects(MAX_JSON_DEPTH + 1) },
    { name: `mixed, ${MAX_JSON_DEPTH + 1} levels`, text: mixed(MAX_JSON_DEPTH + 1) },
    { name: 'arrays, 5000 levels', text: arrays(5000) },
    { name: 'arrays, 30000 levels', text: arrays(30000) },
    { name: 'unclosed, 5000 levels', text: '['.repeat(5000) },
    {
      name: 'an escaped backslash ends the string, then 101 levels',
      text: `["\\\\",${arrays(MAX_JSON_DEPTH)}]`,
    },
  ];
  for (const row of deep) {
    for (const type of ['application/json', 'application/vnd.api+json']) {
      test(`${row.name} (${type}) → 400 INVALID_BODY`, async () => {
        const message = await refused({ type, body: row.text }, 400, 'INVALID_BODY');
        assert.match(message, new RegExp(`deeper than ${MAX_JSON_DEPTH}`));
      });
    }
  }
});

describe('__proto__ keys are plain data: kept, and nothing is polluted', () => {
  const rows: { type: string; send: string; json: string }[] = [
    {
      type: 'application/json',
      send: '{"__proto__":{"polluted":1}}',
      json: '{"__proto__":{"polluted":1}}',
    },
    {
      type: 'application/json',
      send: '{"a":{"__proto__":{"polluted":1}}}',
      json: '{"a":{"__proto__":{"polluted":1}}}',
    },
    {
      type: 'application/merge-patch+json',
      send: '[{"__proto__":{"polluted":1}}]',
      json: '[{"__proto__":{"polluted":1}}]',
    },
    {
      type: 'application/json',
      send: '{"constructor":{"prototype":{"polluted":1}}}',
      json: '{"constructor":{"prototype":{"polluted":1}}}',
    },
    {
      type: 'application/x-www-form-urlencoded',
      send: '__proto__=polluted',
      json: '{"__proto__":"polluted"}',
    },
    {
      type: 'application/x-www-form-urlencoded',
      send: '__proto__[polluted]=1&__proto__=a&__proto__=b',
      json: '{"__proto__[polluted]":"1","__proto__":["a","b"]}',
    },
    {
      type: 'application/x-www-form-urlencoded',
      send: 'constructor[prototype][polluted]=1',
      json: '{"constructor[prototype][polluted]":"1"}',
    },
  ];
  for (const row of rows) {
    test(`${row.type} ${row.send}`, async () => {
      const reply = await send({ type: row.type, body: row.send });
      assert.equal(reply.status, 200, reply.text);
      // The reply's JSON text shows the own keys as the middleware had them.
      assert.equal(JSON.stringify((JSON.parse(reply.text) as { body: unknown }).body), row.json);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted'), false);
    });
  }
});

test('a client that hangs up mid-body is logged as INVALID_BODY, never a 500', async () => {
  const before = logs.length;
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(
    'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a":',
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.destroy();
  const until = Date.now() + 3000;
  while (logs.length === before && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const line = logs.slice(before).find((entry) => entry.msg === 'request');
  assert.ok(line, 'no request line logged');
  assert.equal(line.outcome, 'INVALID_BODY');
  assert.notEqual(line.level, 'error');
});

describe('what a function receives (the real server)', () => {
  let t: TestServer;
  const ECHO = `(event) => ({
    hasBody: 'body' in event,
    body: event.body === undefined ? null : event.body,
    isBase64Encoded: event.isBase64Encoded === true,
    ownProto: event.body !== null && typeof event.body === 'object' &&
      Object.prototype.hasOwnProperty.call(event.body, '__proto__'),
    sandboxPolluted: ({}).polluted !== undefined,
  })`;
  before(async () => {
    t = await startServer({ functions: { echo: ECHO } });
  });
  after(() => t.close());

  const post = (type: string, bytes: Buffer | string, encoding?: string) =>
    send({ port: Number(new URL(t.url).port), path: '/echo', type, encoding, body: bytes });

  const rows: {
    what: string;
    type: string;
    bytes: Buffer | string;
    encoding?: string;
    body: unknown;
  }[] = [
    {
      what: 'a CloudEvent',
      type: 'application/cloudevents+json',
      bytes: '{"specversion":"1.0","type":"t","data":{"x":1}}',
      body: { specversion: '1.0', type: 't', data: { x: 1 } },
    },
    {
      what: 'JSON:API',
      type: 'application/vnd.api+json',
      bytes: '{"data":[]}',
      body: { data: [] },
    },
    {
      what: 'a merge patch',
      type: 'application/merge-patch+json',
      bytes: '{"a":null}',
      body: { a: null },
    },
    {
      what: 'Latin-1 text',
      type: 'text/plain; charset=iso-8859-1',
      bytes: latin1('caf\xe9'),
      body: 'café',
    },
    {
      what: '25 repeated form keys',
      type: 'application/x-www-form-urlencoded',
      bytes: Array.from({ length: 25 }, (_, i) => `tag=t${i + 1}`).join('&'),
      body: { tag: Array.from({ length: 25 }, (_, i) => `t${i + 1}`) },
    },
    {
      what: 'gzipped JSON',
      type: 'application/json',
      bytes: zlib.gzipSync('{"z":true}'),
      encoding: 'gzip',
      body: { z: true },
    },
    {
      what: `JSON ${MAX_JSON_DEPTH} levels deep`,
      type: 'application/json',
      bytes: `${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`,
      body: JSON.parse(`${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`),
    },
  ];
  for (const row of rows) {
    test(`${row.what} → event.body`, async () => {
      const res = await post(row.type, row.bytes, row.encoding);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json.body, row.body);
      assert.equal(res.json.isBase64Encoded, false);
    });
  }

  const deep = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
  const errors: {
    what: string;
    type: string;
    bytes: string;
    encoding?: string;
    status: number;
    code: string;
  }[] = [
    {
      what: '5000 nested [',
      type: 'application/json',
      bytes: `${'['.repeat(5000)}${']'.repeat(5000)}`,
      status: 400,
      code: 'INVALID_BODY',
    },
    {
      what: `${MAX_JSON_DEPTH + 1} nested {`,
      type: 'application/json',
      bytes: deep(MAX_JSON_DEPTH + 1),
      status: 400,
      code: 'INVALID_BODY',
    },
    {
      what: '{"a":1} labelled gzip',
      type: 'application/json',
      bytes: '{"a":1}',
      encoding: 'gzip',
      status: 400,
      code: 'INVALID_BODY',
    },
    {
      what: 'an unknown Content-Encoding',
      type: 'application/json',
      bytes: '{"a":1}',
      encoding: 'zstd',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      what: 'an unknown charset',
      type: 'text/plain; charset=klingon',
      bytes: 'x',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
  ];
  for (const row of errors) {
    test(`${row.what} → ${row.status} ${row.code}`, async () => {
      const res = await post(row.type, row.bytes, row.encoding);
      assert.equal(res.status, row.status, res.text);
      assert.equal((res.json.error as { code: string }).code, row.code);
      assert.equal(res.json.requestId, res.headers['x-request-id']);
    });
  }

  test('an empty JSON body, chunked or Content-Length: 0 → no body key', async () => {
    for (const framing of [{ chunks: [] }, { body: '' }]) {
      const port = Number(new URL(t.url).port);
      const res = await send({ port, path: '/echo', type: 'application/json', ...framing });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.hasBody, false);
    }
  });

  for (const row of [
    { type: 'application/json', bytes: '{"__proto__":{"polluted":1}}' },
    { type: 'application/x-www-form-urlencoded', bytes: '__proto__=1&__proto__[polluted]=1' },
  ]) {
    test(`__proto__ (${row.type}) reaches the function as an own key; nothing polluted`, async () => {
      const res = await post(row.type, row.bytes);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.ownProto, true);
      assert.equal(res.json.sandboxPolluted, false);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });
  }
});
