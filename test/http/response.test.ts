/**
 * toResponse(): the tagged outcome of a worker (src/wire.ts) → status, headers, body, row by row
 * of the result table in docs/spec.md §2; then header merging, unit by unit and over real HTTP.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  FunctionCompileError,
  FunctionError,
  FunctionTimeoutError,
  InvalidResultError,
} from '../../src/errors';
import { JSON_TYPE, TEXT, toResponse } from '../../src/invocation/response';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const shape = (value: Record<string, unknown>) => `R${JSON.stringify(value)}`;

void test('U (undefined) → 204 with no body and no content type', () => {
  const res = toResponse('U');
  assert.equal(res.status, 204);
  assert.equal(res.body, undefined);
  assert.equal(res.headers['content-type'], undefined);
});

const plainRows: { outcome: string; status: number; type: string; body: string }[] = [
  { outcome: 'Shello', status: 200, type: TEXT, body: 'hello' },
  { outcome: 'S', status: 200, type: TEXT, body: '' },
  { outcome: 'S{"looks":"like json"}', status: 200, type: TEXT, body: '{"looks":"like json"}' },
  { outcome: 'J{"a":1}', status: 200, type: JSON_TYPE, body: '{"a":1}' },
  { outcome: 'J[1,"two"]', status: 200, type: JSON_TYPE, body: '[1,"two"]' },
  { outcome: 'J42', status: 200, type: JSON_TYPE, body: '42' },
  { outcome: 'Jfalse', status: 200, type: JSON_TYPE, body: 'false' },
  { outcome: 'Jnull', status: 200, type: JSON_TYPE, body: 'null' },
];
for (const row of plainRows) {
  void test(`${row.outcome} → ${row.status} ${row.type}`, () => {
    const res = toResponse(row.outcome);
    assert.equal(res.status, row.status);
    assert.equal(res.headers['content-type'], row.type);
    assert.equal(res.body, row.body);
  });
}

void test('the content types are text/plain and application/json, utf-8', () => {
  assert.match(TEXT, /^text\/plain; charset=utf-8$/);
  assert.match(JSON_TYPE, /^application\/json; charset=utf-8$/);
});

void test('R with a string body: that status and headers, the body as is, text/plain', () => {
  const res = toResponse(shape({ s: 201, h: { 'X-Custom': 'yes' }, b: 'created' }));
  assert.equal(res.status, 201);
  assert.equal(res.headers['x-custom'], 'yes');
  assert.equal(res.headers['content-type'], TEXT);
  assert.equal(res.body, 'created');
});

void test('R with a JSON body (j): the body is the JSON text, application/json', () => {
  const res = toResponse(shape({ s: 202, b: '{"ok":true}', j: true }));
  assert.equal(res.status, 202);
  assert.equal(res.headers['content-type'], JSON_TYPE);
  assert.equal(res.body, '{"ok":true}');
});

void test("R keeps the function's own content type", () => {
  const res = toResponse(shape({ s: 200, h: { 'Content-Type': 'text/html' }, b: '<p>hi</p>' }));
  assert.equal(res.headers['content-type'], 'text/html');
  assert.equal(res.body, '<p>hi</p>');
});

void test('R with isBase64Encoded (e): the body is decoded to bytes', () => {
  const res = toResponse(
    shape({ s: 200, h: { 'content-type': 'image/png' }, b: 'AAEC/w==', e: true }),
  );
  assert.equal(res.status, 200);
  assert.ok(Buffer.isBuffer(res.body));
  assert.deepEqual([...(res.body as Buffer)], [0, 1, 2, 255]);
  assert.equal(res.headers['content-type'], 'image/png');
});

void test('R with isBase64Encoded and no content type → application/octet-stream', () => {
  const res = toResponse(shape({ s: 200, b: 'aGk=', e: true }));
  assert.equal((res.body as Buffer).toString(), 'hi');
  assert.equal(res.headers['content-type'], 'application/octet-stream');
});

void test('R without a body: the status only, no body', () => {
  const res = toResponse(shape({ s: 302, h: { Location: '/elsewhere' } }));
  assert.equal(res.status, 302);
  assert.equal(res.headers.location, '/elsewhere');
  assert.equal(res.body, undefined);
});

for (const status of [204, 304]) {
  void test(`R ${status} never carries a body, even when given one`, () => {
    const res = toResponse(shape({ s: status, b: 'ignored' }));
    assert.equal(res.status, status);
    assert.equal(res.body, undefined);
  });
}

void test('R header values: numbers and booleans become strings, a Set-Cookie array stays a list', () => {
  const res = toResponse(
    shape({ s: 200, h: { 'X-N': 3, 'X-B': true, 'Set-Cookie': ['a=1', 'b=2'] }, b: '' }),
  );
  assert.equal(res.headers['x-n'], '3');
  assert.equal(res.headers['x-b'], 'true');
  assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2']);
});

void test('R cannot set framing headers (Content-Length, Transfer-Encoding, Connection)', () => {
  const res = toResponse(
    shape({
      s: 200,
      h: { 'Content-Length': '999', 'Transfer-Encoding': 'chunked', Connection: 'close' },
      b: 'x',
    }),
  );
  assert.equal(res.headers['content-length'], undefined);
  assert.equal(res.headers['transfer-encoding'], undefined);
  assert.equal(res.headers.connection, undefined);
});

const invalidRows: { why: string; outcome: string }[] = [
  {
    why: 'header value with CR/LF',
    outcome: shape({ s: 200, h: { 'X-A': 'a\r\nSet-Cookie: x=1' } }),
  },
  { why: 'header value with LF only', outcome: shape({ s: 200, h: { 'X-A': 'a\nb' } }) },
  { why: 'header value with NUL', outcome: shape({ s: 200, h: { 'X-A': 'a\u0000b' } }) },
  {
    why: 'header value in an array with CR/LF',
    outcome: shape({ s: 200, h: { 'X-A': ['ok', 'a\r\nb'] } }),
  },
  { why: 'header value that is an object', outcome: shape({ s: 200, h: { 'X-A': { no: 1 } } }) },
  { why: 'header name with a space', outcome: shape({ s: 200, h: { 'X A': '1' } }) },
  { why: 'header name with a colon', outcome: shape({ s: 200, h: { 'X-A:': '1' } }) },
  { why: 'headers that are an array', outcome: shape({ s: 200, h: ['X-A', '1'] }) },
  { why: 'headers that are a string', outcome: shape({ s: 200, h: 'X-A: 1' }) },
  {
    why: 'isBase64Encoded with a non-base64 body',
    outcome: shape({ s: 200, b: 'not base64!', e: true }),
  },
  { why: 'a 1xx status (100)', outcome: shape({ s: 100 }) },
  { why: 'a 1xx status (101, which would hand the connection over)', outcome: shape({ s: 101 }) },
  { why: 'a 1xx status (199) with a body', outcome: shape({ s: 199, b: 'x' }) },
  { why: 'a status from a worker out of range (600)', outcome: shape({ s: 600 }) },
  { why: 'a status from a worker that is not an integer', outcome: shape({ s: 200.5 }) },
  { why: 'header value with é (non-ASCII)', outcome: shape({ s: 200, h: { 'X-A': 'caf\u00e9' } }) },
  { why: 'header value with € (non-ASCII)', outcome: shape({ s: 200, h: { 'X-A': '\u20ac' } }) },
  { why: 'header value with DEL', outcome: shape({ s: 200, h: { 'X-A': 'a\u007fb' } }) },
  { why: 'an I outcome', outcome: 'Ithe function returned a bigint, which cannot be sent' },
  { why: 'an unknown tag', outcome: 'Xwhatever' },
  { why: 'an empty outcome', outcome: '' },
];
for (const row of invalidRows) {
  void test(`INVALID_RESULT for ${row.why}`, () => {
    assert.throws(
      () => toResponse(row.outcome),
      (err: unknown) => {
        assert.ok(err instanceof InvalidResultError, String(err));
        assert.equal(err.code, 'INVALID_RESULT');
        assert.equal(err.statusCode, 500);
        return true;
      },
    );
  });
}

void test('E → FunctionError with the thrown name as type and its message, stack kept for the log', () => {
  const outcome = `E${JSON.stringify({ name: 'TypeError', message: 'x is not a function', stack: 'TypeError: x\n    at f (fn.js:1:2)' })}`;
  assert.throws(
    () => toResponse(outcome),
    (err: unknown) => {
      assert.ok(err instanceof FunctionError);
      assert.equal(err.code, 'FUNCTION_ERROR');
      assert.equal(err.statusCode, 500);
      assert.equal(err.type, 'TypeError');
      assert.equal(err.message, 'x is not a function');
      assert.match(String(err.functionStack), /fn\.js:1:2/);
      return true;
    },
  );
});

void test('T → FunctionTimeoutError (504) with the message', () => {
  assert.throws(
    () => toResponse("Tfunction 'loop' exceeded its 1000 ms timeout"),
    (err: unknown) => {
      assert.ok(err instanceof FunctionTimeoutError);
      assert.equal(err.statusCode, 504);
      assert.equal(err.message, "function 'loop' exceeded its 1000 ms timeout");
      return true;
    },
  );
});

void test('C → FunctionCompileError with line and column', () => {
  const outcome = `C${JSON.stringify({ message: 'SyntaxError: Unexpected token', line: 3, column: 7 })}`;
  assert.throws(
    () => toResponse(outcome),
    (err: unknown) => {
      assert.ok(err instanceof FunctionCompileError);
      assert.equal(err.code, 'FUNCTION_COMPILE_ERROR');
      assert.equal(err.statusCode, 500);
      assert.equal(err.message, 'SyntaxError: Unexpected token');
      assert.equal(err.line, 3);
      assert.equal(err.column, 7);
      return true;
    },
  );
});

void test('C without a position → FunctionCompileError without line', () => {
  const outcome = `C${JSON.stringify({ message: 'the file does not yield a function' })}`;
  assert.throws(
    () => toResponse(outcome),
    (err: unknown) => {
      assert.ok(err instanceof FunctionCompileError);
      assert.equal(err.line, undefined);
      assert.match(err.message, /does not yield a function/);
      return true;
    },
  );
});

describe('header names are case-insensitive: merged, never dropped', () => {
  const rows: { why: string; h: Record<string, unknown>; name: string; value: unknown }[] = [
    {
      why: 'Set-Cookie under two spellings → two cookies',
      h: { 'Set-Cookie': 'a=1', 'set-cookie': 'b=2' },
      name: 'set-cookie',
      value: ['a=1', 'b=2'],
    },
    {
      why: 'a Set-Cookie array and another spelling → every cookie, in key order',
      h: { 'Set-Cookie': ['a=1', 'b=2'], 'SET-COOKIE': 'c=3; Path=/, x', 'set-cookie': ['d=4'] },
      name: 'set-cookie',
      value: ['a=1', 'b=2', 'c=3; Path=/, x', 'd=4'],
    },
    {
      why: 'one cookie stays one value',
      h: { 'set-cookie': 'a=1' },
      name: 'set-cookie',
      value: 'a=1',
    },
    {
      why: 'a list field under two spellings → joined with ", "',
      h: { 'Cache-Control': 'no-cache', 'cache-control': 'no-store' },
      name: 'cache-control',
      value: 'no-cache, no-store',
    },
    {
      why: 'a list field as an array → one line',
      h: { Vary: ['Accept', 'Origin'] },
      name: 'vary',
      value: 'Accept, Origin',
    },
    {
      why: 'a custom field, numbers and booleans',
      h: { 'X-A': 1, 'x-a': true, 'X-a': ['two'] },
      name: 'x-a',
      value: '1, true, two',
    },
    {
      why: 'null under one spelling is skipped',
      h: { 'X-A': null, 'x-a': 'v' },
      name: 'x-a',
      value: 'v',
    },
    { why: 'an empty array is no header', h: { 'X-Empty': [] }, name: 'x-empty', value: undefined },
    {
      why: 'a single-valued field given the same value twice',
      h: { 'Content-Type': 'text/html', 'content-type': 'text/html' },
      name: 'content-type',
      value: 'text/html',
    },
    {
      why: 'a single-valued field once, in any case',
      h: { LOCATION: '/x' },
      name: 'location',
      value: '/x',
    },
  ];
  for (const row of rows) {
    void test(row.why, () => {
      const res = toResponse(shape({ s: 200, h: row.h, b: '' }));
      assert.deepEqual(res.headers[row.name], row.value);
      assert.equal(
        Object.keys(res.headers).filter((k) => k === row.name).length,
        row.value === undefined ? 0 : 1,
      );
    });
  }

  void test('framing headers stay dropped under any spelling', () => {
    const res = toResponse(
      shape({
        s: 200,
        h: { 'CONTENT-LENGTH': '9', 'content-Length': '1', 'TRANSFER-ENCODING': 'chunked' },
        b: 'x',
      }),
    );
    assert.equal(res.headers['content-length'], undefined);
    assert.equal(res.headers['transfer-encoding'], undefined);
  });

  void test('a header named __proto__ is a header, not a prototype', () => {
    const res = toResponse(
      shape({ s: 200, h: JSON.parse('{"__proto__":["x"],"X-A":"1"}'), b: '' }),
    );
    assert.equal(Object.getPrototypeOf(res.headers), null);
    assert.equal(res.headers.__proto__, 'x');
    assert.equal(res.headers['x-a'], '1');
  });

  // Every field that takes one value (response.ts SINGLE).
  const single = [
    'Access-Control-Allow-Credentials',
    'Access-Control-Allow-Origin',
    'Access-Control-Max-Age',
    'Age',
    'Content-Disposition',
    'Content-Location',
    'Content-Range',
    'Content-Type',
    'Date',
    'ETag',
    'Expires',
    'Last-Modified',
    'Location',
    'Retry-After',
    'Strict-Transport-Security',
    'X-Content-Type-Options',
    'X-Frame-Options',
  ];
  for (const name of single) {
    for (const [how, h] of [
      ['two spellings', { [name]: 'a', [name.toLowerCase()]: 'b' }],
      ['an array', { [name]: ['a', 'b'] }],
    ] as const) {
      void test(`INVALID_RESULT for ${name} given two values (${how})`, () => {
        assert.throws(
          () => toResponse(shape({ s: 200, h, b: '' })),
          (err: unknown) => {
            assert.ok(err instanceof InvalidResultError, String(err));
            assert.match(err.message, new RegExp(`"${name}" takes one value`, 'i'));
            return true;
          },
        );
      });
    }
  }

  void test('INVALID_RESULT for a nested array value', () => {
    assert.throws(() => toResponse(shape({ s: 200, h: { 'X-A': [['a']] } })), InvalidResultError);
  });
});

describe('header merging over real HTTP (rawHeaders)', () => {
  let t: TestServer;
  const fn = (headers: string) => `() => ({ statusCode: 200, headers: ${headers}, body: 'x' });\n`;
  before(async () => {
    t = await startServer({
      functions: {
        'two-cookies': fn(`{ 'Set-Cookie': 'a=1', 'set-cookie': 'b=2' }`),
        'three-cookies': fn(`{ 'Set-Cookie': ['a=1', 'b=2'], 'SET-COOKIE': 'c=3; Path=/' }`),
        'list-merge': fn(
          `{ 'Cache-Control': 'no-cache', 'cache-control': 'no-store', Vary: ['Accept', 'Origin'] }`,
        ),
        'type-twice': fn(`{ 'Content-Type': 'text/html', 'content-type': 'text/plain' }`),
        'type-same': fn(`{ 'Content-Type': 'text/html', 'content-type': 'text/html' }`),
      },
    });
  });
  after(() => t.close());

  const get = (name: string) =>
    new Promise<{ status: number; raw: [string, string][]; text: string }>((resolve, reject) => {
      http
        .get(`${t.url}/${name}`, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => {
            const raw: [string, string][] = [];
            for (let i = 0; i < res.rawHeaders.length; i += 2) {
              raw.push([res.rawHeaders[i].toLowerCase(), res.rawHeaders[i + 1]]);
            }
            resolve({ status: res.statusCode ?? 0, raw, text });
          });
        })
        .on('error', reject);
    });
  const lines = (raw: [string, string][], name: string) =>
    raw.filter(([n]) => n === name).map(([, v]) => v);

  const rows: { name: string; header: string; lines: string[] }[] = [
    { name: 'two-cookies', header: 'set-cookie', lines: ['a=1', 'b=2'] },
    { name: 'three-cookies', header: 'set-cookie', lines: ['a=1', 'b=2', 'c=3; Path=/'] },
    { name: 'list-merge', header: 'cache-control', lines: ['no-cache, no-store'] },
    { name: 'list-merge', header: 'vary', lines: ['Accept, Origin'] },
    { name: 'type-same', header: 'content-type', lines: ['text/html'] },
  ];
  for (const row of rows) {
    void test(`/${row.name}: ${row.lines.length} ${row.header} line(s)`, async () => {
      const res = await get(row.name);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(lines(res.raw, row.header), row.lines);
    });
  }

  void test('/type-twice: two different Content-Types → 500 INVALID_RESULT', async () => {
    const res = await get('type-twice');
    assert.equal(res.status, 500);
    const body = JSON.parse(res.text) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'INVALID_RESULT');
    assert.match(body.error.message, /"Content-Type" takes one value/);
  });
});

/**
 * One rule for header values whatever the body (docs/spec.md §2): visible ASCII only. Node writes
 * a header as latin1 or UTF-8 depending on how the answer is sent, so before this rule `é` left
 * as C3 A9, E9, EF BF BD or FD. Read as raw bytes on the wire, and a 1xx status, which left the
 * client with no final answer.
 */
describe('status and header values on the wire', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      functions: {
        hdr: `module.exports = async (event) => {
          const kind = event.query.kind;
          const headers = { [event.query.name || 'x-note']: event.query.value };
          if (kind === 'empty') return { statusCode: 204, headers };
          if (kind === 'json') return { statusCode: 200, headers, body: { a: 1 } };
          if (kind === 'base64') return { statusCode: 200, headers, body: 'aGk=', isBase64Encoded: true };
          return { statusCode: 200, headers, body: 'text' };
        };`,
        informational: `module.exports = async (event) => ({ statusCode: Number(event.query.s), body: 'x' });`,
      },
    });
  });
  after(() => t?.close());

  /** The raw answer, read over node:net until the server closes the connection. */
  async function raw(path: string, method = 'GET'): Promise<Buffer> {
    const { port } = new URL(t.url);
    const net = await import('node:net');
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks)));
      socket.write(`${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    });
  }

  for (const kind of ['text', 'json', 'base64', 'empty']) {
    for (const value of ['caf\u00e9', '\u20ac 5', 'snow \u2603']) {
      void test(`a non-ASCII header value (${JSON.stringify(value)}) with a ${kind} body: INVALID_RESULT, naming it`, async () => {
        const q = new URLSearchParams({ kind, value }).toString();
        const answer = (await raw(`/hdr?${q}`)).toString('latin1');
        assert.match(answer, /^HTTP\/1\.1 500 /, answer.slice(0, 200));
        assert.match(answer, /"code":"INVALID_RESULT"/);
        assert.match(answer, /header \\"x-note\\" contains a non-ASCII character \(U\+/);
        assert.doesNotMatch(answer, /^x-note:/im);
      });
    }
  }

  void test('Content-Disposition with a non-ASCII filename: the message points at RFC 8187', async () => {
    const q = new URLSearchParams({
      name: 'Content-Disposition',
      value: 'attachment; filename="r\u00e9sum\u00e9.pdf"',
    });
    const r = await t.request.get(`/hdr?${q.toString()}`);
    assert.equal(r.status, 500);
    assert.equal(r.body.error.code, 'INVALID_RESULT');
    assert.match(r.body.error.message, /RFC 8187's filename\*=UTF-8''/);
  });

  void test('the same value percent-encoded per RFC 8187 goes out byte for byte', async () => {
    const value = `attachment; filename="resume.pdf"; filename*=UTF-8''${encodeURIComponent('r\u00e9sum\u00e9.pdf')}`;
    for (const kind of ['text', 'json', 'base64', 'empty']) {
      const q = new URLSearchParams({ kind, name: 'Content-Disposition', value }).toString();
      const answer = await raw(`/hdr?${q}`);
      assert.ok(answer.includes(Buffer.from(`content-disposition: ${value}\r\n`, 'ascii')), kind);
    }
  });

  void test('a control character is named as one', async () => {
    const r = await t.request.get(`/hdr?${new URLSearchParams({ value: 'a\u0001b' }).toString()}`);
    assert.equal(r.status, 500);
    assert.match(r.body.error.message, /contains a control character \(0x01\)/);
  });

  for (const s of [100, 101, 103, 199]) {
    void test(`statusCode ${s}: 500 INVALID_RESULT at once, never a lone 1xx line`, async () => {
      const answer = (await raw(`/informational?s=${s}`)).toString('utf8');
      assert.match(answer, /^HTTP\/1\.1 500 /, answer.slice(0, 200));
      assert.match(answer, /"code":"INVALID_RESULT"/);
      assert.match(answer, /cannot end an exchange: use 200–599/);
    });
  }

  void test('statusCode 200 and 599 still pass', async () => {
    assert.equal((await t.request.get('/informational?s=200')).status, 200);
    assert.equal((await t.request.get('/informational?s=599')).status, 599);
  });
});
