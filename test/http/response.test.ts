/**
 * toResponse(): the tagged outcome of a worker (src/wire.ts) → status, headers, body, row by row
 * of the result table in SPEC §2.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FunctionCompileError,
  FunctionError,
  FunctionTimeoutError,
  InvalidResultError,
} from '../../src/errors';
import { JSON_TYPE, TEXT, toResponse } from '../../src/http/response';

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

void test('R header values: numbers and booleans become strings, arrays stay lists', () => {
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
