/**
 * The HTTP contract (docs/spec.md §2–§6) against the real server: real worker processes, real files.
 * One server for the contract, and one with MAX_BODY and CORS_ORIGIN set, each started once.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Response } from 'supertest';
import { startServer } from '../support/server';
import { isAlive } from '../support/system';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

const TIMEOUT_MS = 1000; // the harness's FUNCTION_TIMEOUT_MS
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HOST_STACK = /\bat .*\(?(?:node:|\/)[^)]*:\d+:\d+/;

const HELLO = "(event, context) => {\n  return { message: 'it works!', status: 'ok' };\n};\n";

// Echoes what the function received; `body` is reported separately so that undefined shows.
const ECHO = `(event, context) => ({
  event,
  hasBody: 'body' in event,
  bodyType: typeof event.body,
  context: {
    requestId: context.requestId,
    functionName: context.functionName,
    version: context.version,
    deadline: context.deadline,
    timeoutMs: context.timeoutMs,
    remaining: context.getRemainingTimeInMillis(),
    remainingType: typeof context.getRemainingTimeInMillis(),
    now: Date.now(),
  },
});
`;

/** Tries one way out of the sandbox and reports what it found (never throws). */
const escapeVia = (expression: string) => `(event, context) => {
  try {
    const p = ${expression};
    return { reached: typeof p, pid: p && typeof p.pid === 'number' ? p.pid : null };
  } catch (err) {
    return { reached: 'threw', message: String(err && err.message) };
  }
};
`;

const FUNCTIONS: Record<string, string> = {
  hello: HELLO,
  index: "() => 'the index';\n",
  'a/b': "() => 'nested a/b';\n",
  echo: ECHO,
  'deep/er/echo': ECHO,
  cjs: "module.exports = async (event) => ({ form: 'commonjs', method: event.method });\n",
  handler: "exports.handler = () => 'exports.handler';\n",
  // docs/spec.md §2 result table
  'r-undefined': '() => undefined;\n',
  'r-string': "() => 'plain text';\n",
  'r-object': '() => ({ a: 1, b: [true, null] });\n',
  'r-array': "() => [1, 'two'];\n",
  'r-number': '() => 42;\n',
  'r-boolean': '() => false;\n',
  'r-null': '() => null;\n',
  'r-async': 'async () => ({ resolved: true });\n',
  'r-shape-string':
    "() => ({ statusCode: 201, headers: { 'X-Custom': 'yes' }, body: 'created' });\n",
  'r-shape-object': '() => ({ statusCode: 202, body: { ok: true, n: 1 } });\n',
  'r-shape-base64':
    "() => ({ statusCode: 200, headers: { 'Content-Type': 'image/png' }, body: 'AAEC/w==', isBase64Encoded: true });\n",
  'r-shape-nobody': "() => ({ statusCode: 302, headers: { Location: '/hello' } });\n",
  'r-shape-extra': "() => ({ statusCode: 201, body: 'x', extra: 1 });\n",
  'r-function': '() => () => 1;\n',
  'r-symbol': "() => Symbol('s');\n",
  'r-bigint': '() => 10n;\n',
  'r-nested-bigint': '() => ({ n: 10n });\n',
  'r-circular': '() => { const o = {}; o.self = o; return o; };\n',
  'r-async-bigint': 'async () => 10n;\n',
  'r-header-crlf':
    "() => ({ statusCode: 200, headers: { 'X-Bad': 'a\\r\\nSet-Cookie: x=1' }, body: 'x' });\n",
  'r-header-name': "() => ({ statusCode: 200, headers: { 'Bad Name': 'v' }, body: 'x' });\n",
  // docs/spec.md §3 errors
  'e-type': '(event) => { const o = null; return o.x; };\n',
  'e-range': "() => { throw new RangeError('out of range'); };\n",
  'e-string': "() => { throw 'x'; };\n",
  'e-null': '() => { throw null; };\n',
  'e-undefined': '() => { throw undefined; };\n',
  'e-reject': "async () => { throw new TypeError('async nope'); };\n",
  'e-reject-string': "() => Promise.reject('rejected text');\n",
  'e-reject-later':
    "() => new Promise((_, reject) => setTimeout(() => reject(new Error('later')), 10));\n",
  syntax: '(event) => {\n  const x = 1;\n  return x +;\n};\n',
  'no-function': '42;\n',
  'no-function-exports': 'module.exports = { notAFunction: true };\n',
  'load-throws': "throw new Error('at load time');\n",
  't-loop': '() => { while (1) {} };\n',
  't-microtasks': '() => { const loop = () => Promise.resolve().then(loop); loop(); };\n',
  't-never': '() => new Promise(() => {});\n',
  't-load-loop': 'while (1) {}\n',
  // sandbox
  's-globals':
    '() => ({ require: typeof require, process: typeof process, Buffer: typeof Buffer, fs: typeof fs, globalProcess: typeof globalThis.process });\n',
  's-this': escapeVia('this.constructor.constructor("return process")()'),
  's-event': escapeVia('event.constructor.constructor("return process")()'),
  's-context': escapeVia('context.getRemainingTimeInMillis.constructor("return process")()'),
  's-console': escapeVia('console.log.constructor("return process")()'),
  's-timer': escapeVia('setTimeout.constructor("return process")()'),
  's-async': escapeVia('(async () => {}).constructor("return process")'),
  's-uncaught': `(event, context) => {
    const p = this.constructor.constructor("return process")();
    return { pid: p.pid };
  };
`,
  logger: "(event, context) => { console.log('hello from fn', 42); return 'logged'; };\n",
};

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** A request sent byte for byte as given (no URL normalisation, unlike supertest). */
function raw(
  url: string,
  requestPath: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string[] } = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        hostname,
        port,
        path: requestPath,
        method: options.method ?? 'GET',
        headers: options.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            text: body.toString(),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (Array.isArray(options.body)) {
      // Chunked: no Content-Length.
      for (const chunk of options.body) req.write(chunk);
      req.end();
    } else {
      req.end(options.body);
    }
  });
}

interface ErrorJson {
  error: { code: string; message: string; type?: string; line?: number; column?: number };
  requestId: string;
}

/** Asserts the docs/spec.md §3 error shape and returns the parsed body. */
function assertError(res: Response | RawResponse, status: number, code: string): ErrorJson {
  const text = res.text;
  assert.equal(res.status, status, text);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = JSON.parse(text) as ErrorJson;
  assert.equal(body.error.code, code, text);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  assert.equal(body.requestId, res.headers['x-request-id']);
  assert.ok(body.requestId);
  assert.equal(HOST_STACK.test(text), false, `host stack in ${text}`);
  assert.equal('stack' in body.error, false);
  return body;
}

void describe('HTTP contract', () => {
  let t: TestServer;
  let outside: string;
  let pids: number[] = [];

  before(async () => {
    t = await startServer({ functions: FUNCTIONS });
    pids = t.server.pool.pids();
    outside = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-outside-'));
    await fs.writeFile(path.join(outside, 'secret.js'), "() => 'SECRET-OUTSIDE';\n");
    await fs.symlink(path.join(outside, 'secret.js'), path.join(t.dir, 'escape.js'));
    await fs.symlink(outside, path.join(t.dir, 'escapedir'));
    // Files the path attacks below would reach if a name were decoded or normalised.
    await fs.writeFile(path.join(t.dir, '.env.js'), "() => 'DOTFILE';\n");
    await fs.writeFile(path.join(t.dir, 'a\\b.js'), "() => 'BACKSLASH';\n");
    await fs.writeFile(path.join(t.dir, 'x.js'), "() => 'X';\n");
  });
  after(async () => {
    const all = [...new Set([...pids, ...t.server.pool.pids()])];
    await t.close();
    await fs.rm(outside, { recursive: true, force: true });
    assert.ok(pids.length >= 2, 'the pool had workers');
    for (const pid of all) assert.equal(isAlive(pid), false, `worker ${pid} outlived close()`);
  });

  /** GET /echo-like function and return the parsed echo. */
  async function echo(req: ReturnType<TestServer['request']['get']>) {
    const res = await req;
    assert.equal(res.status, 200, res.text);
    return { res, echo: res.body as { event: Record<string, unknown> } & Record<string, unknown> };
  }

  void describe('routing', () => {
    void test("hello answers the seed's exact body", async () => {
      const res = await t.request.get('/hello');
      assert.equal(res.status, 200);
      assert.equal(res.text, '{"message":"it works!","status":"ok"}');
      assert.match(res.headers['content-type'], /^application\/json/);
    });

    const routes: { path: string; body: string }[] = [
      { path: '/hello/', body: '{"message":"it works!","status":"ok"}' },
      { path: '/', body: 'the index' },
      { path: '/a/b', body: 'nested a/b' },
      { path: '/a/b/', body: 'nested a/b' },
      { path: '/hello?x=1', body: '{"message":"it works!","status":"ok"}' },
      { path: '/cjs', body: '{"form":"commonjs","method":"GET"}' },
      { path: '/handler', body: 'exports.handler' },
    ];
    for (const row of routes) {
      void test(`GET ${row.path} → ${row.body}`, async () => {
        const res = await t.request.get(row.path);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.text, row.body);
      });
    }

    void test('a missing function → 404 FUNCTION_NOT_FOUND', async () => {
      assertError(await t.request.get('/missing'), 404, 'FUNCTION_NOT_FOUND');
      assertError(await t.request.get('/a/missing'), 404, 'FUNCTION_NOT_FOUND');
      assertError(await t.request.get('/a'), 404, 'FUNCTION_NOT_FOUND');
    });
  });

  void describe('deploying by dropping files', () => {
    void test('a new file is served without a restart, within a second', async () => {
      assertError(await t.request.get('/fresh'), 404, 'FUNCTION_NOT_FOUND');
      await t.writeFunction('fresh', "() => 'fresh v1';\n");
      await eventually(async () => (await t.request.get('/fresh')).text === 'fresh v1', 1000);
    });

    void test('a new nested file is served', async () => {
      await t.writeFunction('new/deep/fn', "() => 'deep';\n");
      await eventually(async () => (await t.request.get('/new/deep/fn')).text === 'deep', 1000);
    });

    void test('replacing a file changes the body and X-Function-Version', async () => {
      await t.writeFunction('swap', "() => 'swap v1';\n");
      let first: Response | undefined;
      await eventually(async () => {
        first = await t.request.get('/swap');
        return first.text === 'swap v1';
      }, 1000);
      const v1 = first?.headers['x-function-version'];
      assert.ok(v1);
      await t.writeFunction('swap', "() => 'swap v2';\n");
      let second: Response | undefined;
      await eventually(async () => {
        second = await t.request.get('/swap');
        return second.text === 'swap v2';
      }, 1000);
      const v2 = second?.headers['x-function-version'];
      assert.ok(v2);
      assert.notEqual(v2, v1);
      // The version is a content hash: the old source brings the old version back.
      await t.writeFunction('swap', "() => 'swap v1';\n");
      await eventually(async () => {
        const res = await t.request.get('/swap');
        return res.text === 'swap v1' && res.headers['x-function-version'] === v1;
      }, 1000);
    });

    void test('deleting a file → 404 FUNCTION_NOT_FOUND within a second', async () => {
      await t.writeFunction('doomed', "() => 'alive';\n");
      await eventually(async () => (await t.request.get('/doomed')).status === 200, 1000);
      await t.removeFunction('doomed');
      await eventually(async () => (await t.request.get('/doomed')).status === 404, 1000);
      assertError(await t.request.get('/doomed'), 404, 'FUNCTION_NOT_FOUND');
    });

    void test('a broken deploy answers 500 FUNCTION_COMPILE_ERROR; fixing it serves again', async () => {
      await t.writeFunction('fixme', "() => 'ok';\n");
      await eventually(async () => (await t.request.get('/fixme')).status === 200, 1000);
      await t.writeFunction('fixme', '() => {\n  return 1 +;\n};\n');
      await eventually(async () => (await t.request.get('/fixme')).status === 500, 1000);
      assertError(await t.request.get('/fixme'), 500, 'FUNCTION_COMPILE_ERROR');
      await t.writeFunction('fixme', "() => 'fixed';\n");
      await eventually(async () => (await t.request.get('/fixme')).text === 'fixed', 1000);
    });
  });

  void describe('the event', () => {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH']) {
      void test(`${method} invokes the function with event.method ${method}`, async () => {
        const res = await t.request[method.toLowerCase() as 'get']('/echo');
        assert.equal(res.status, 200, res.text);
        assert.equal((res.body as { event: { method: string } }).event.method, method);
      });
    }

    void test('path', async () => {
      const { echo: e } = await echo(t.request.get('/echo'));
      assert.equal(e.event.path, '/echo');
      const { echo: nested } = await echo(t.request.get('/deep/er/echo'));
      assert.equal(nested.event.path, '/deep/er/echo');
    });

    void test('query: parsed, repeated keys as arrays', async () => {
      const { echo: e } = await echo(t.request.get('/echo?name=x&tag=a&tag=b&empty='));
      assert.deepEqual(e.event.query, { name: 'x', tag: ['a', 'b'], empty: '' });
      const { echo: none } = await echo(t.request.get('/echo'));
      assert.deepEqual(none.event.query, {});
    });

    void test('headers: lower-cased names', async () => {
      const { echo: e } = await echo(
        t.request.get('/echo').set('X-Custom-Header', 'Some Value').set('Accept', 'text/x-test'),
      );
      const headers = e.event.headers as Record<string, string>;
      assert.equal(headers['x-custom-header'], 'Some Value');
      assert.equal(headers.accept, 'text/x-test');
      for (const name of Object.keys(headers)) assert.equal(name, name.toLowerCase());
    });

    const bodies: {
      what: string;
      type: string;
      send: string;
      body: unknown;
      bodyType: string;
    }[] = [
      {
        what: 'a JSON object',
        type: 'application/json',
        send: '{"a":1,"b":[1,2]}',
        body: { a: 1, b: [1, 2] },
        bodyType: 'object',
      },
      {
        what: 'a JSON array',
        type: 'application/json',
        send: '[1,"x"]',
        body: [1, 'x'],
        bodyType: 'object',
      },
      {
        what: 'a bare JSON number',
        type: 'application/json',
        send: '42',
        body: 42,
        bodyType: 'number',
      },
      {
        what: 'a bare JSON string',
        type: 'application/json',
        send: '"hi"',
        body: 'hi',
        bodyType: 'string',
      },
      {
        what: 'a JSON body with a charset',
        type: 'application/json; charset=utf-8',
        send: '{"ü":"ö"}',
        body: { ü: 'ö' },
        bodyType: 'object',
      },
      {
        what: 'a form',
        type: 'application/x-www-form-urlencoded',
        send: 'a=1&b=two+words&c=%26',
        body: { a: '1', b: 'two words', c: '&' },
        bodyType: 'object',
      },
      {
        what: 'text/plain',
        type: 'text/plain',
        send: 'hello there\n{not json}',
        body: 'hello there\n{not json}',
        bodyType: 'string',
      },
    ];
    for (const row of bodies) {
      void test(`body: ${row.what}`, async () => {
        const { echo: e } = await echo(
          t.request.post('/echo').set('Content-Type', row.type).send(row.send),
        );
        assert.deepEqual(e.event.body, row.body);
        assert.equal(e.bodyType, row.bodyType);
        assert.notEqual(e.event.isBase64Encoded, true);
      });
    }

    void test('no body → event.body is absent (undefined)', async () => {
      for (const req of [
        t.request.get('/echo'),
        t.request.post('/echo'),
        t.request.delete('/echo').set('Content-Type', 'application/json'),
      ]) {
        const { echo: e } = await echo(req);
        assert.equal(e.hasBody, false);
        assert.equal(e.bodyType, 'undefined');
      }
    });

    for (const type of ['application/octet-stream', 'image/png']) {
      void test(`body: binary (${type}) → base64 string with isBase64Encoded: true`, async () => {
        const bytes = Buffer.from([0, 1, 2, 255, 254, 10, 13]);
        const res = await raw(t.url, '/echo', {
          method: 'POST',
          headers: { 'Content-Type': type, 'Content-Length': bytes.length },
          body: bytes,
        });
        assert.equal(res.status, 200, res.text);
        const e = JSON.parse(res.text) as { event: Record<string, unknown>; bodyType: string };
        assert.equal(e.event.body, bytes.toString('base64'));
        assert.equal(e.event.isBase64Encoded, true);
      });
    }

    void test('body: binary sent chunked (no Content-Length) → base64', async () => {
      const res = await raw(t.url, '/echo', {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: ['ab', 'cd'],
      });
      assert.equal(res.status, 200, res.text);
      const e = JSON.parse(res.text) as { event: Record<string, unknown> };
      assert.equal(e.event.body, Buffer.from('abcd').toString('base64'));
      assert.equal(e.event.isBase64Encoded, true);
    });
  });

  void describe('the context and X-Request-Id', () => {
    void test('requestId equals X-Request-Id (a new UUID when none is sent)', async () => {
      const { res, echo: e } = await echo(t.request.get('/echo'));
      const ctx = e.context as Record<string, unknown>;
      assert.match(res.headers['x-request-id'], UUID);
      assert.equal(ctx.requestId, res.headers['x-request-id']);
      const again = await t.request.get('/echo');
      assert.notEqual(again.headers['x-request-id'], res.headers['x-request-id']);
    });

    const sane = ['abc-123_X.y', 'a', 'x'.repeat(128), '6f1c2b9e-0b7a-4bde-9d6e-1c2b3d4e5f60'];
    for (const id of sane) {
      void test(`a sane caller id (${id.slice(0, 20)}…, ${id.length} chars) is echoed`, async () => {
        const { res, echo: e } = await echo(t.request.get('/echo').set('X-Request-Id', id));
        assert.equal(res.headers['x-request-id'], id);
        assert.equal((e.context as Record<string, unknown>).requestId, id);
      });
    }

    const insane = ['x'.repeat(129), 'a'.repeat(200), 'has space', 'semi;colon', 'a/b', 'ünï'];
    for (const id of insane) {
      void test(`an insane caller id (${JSON.stringify(id.slice(0, 12))}, ${id.length} chars) is replaced by a UUID`, async () => {
        const headers = { 'X-Request-Id': id };
        const res = await raw(t.url, '/echo', { headers });
        assert.equal(res.status, 200, res.text);
        const e = JSON.parse(res.text) as { context: { requestId: string } };
        assert.match(String(res.headers['x-request-id']), UUID);
        assert.equal(e.context.requestId, res.headers['x-request-id']);
      });
    }

    void test('an insane caller id is replaced on error responses too', async () => {
      const res = await t.request.get('/missing').set('X-Request-Id', 'a'.repeat(200));
      const body = assertError(res, 404, 'FUNCTION_NOT_FOUND');
      assert.match(body.requestId, UUID);
    });

    void test('functionName, version (= X-Function-Version), deadline, timeoutMs, remaining time', async () => {
      const sent = Date.now();
      const { res, echo: e } = await echo(t.request.get('/echo'));
      const received = Date.now();
      const ctx = e.context as Record<string, number | string>;
      assert.equal(ctx.functionName, 'echo');
      assert.ok(res.headers['x-function-version']);
      assert.equal(ctx.version, res.headers['x-function-version']);
      assert.equal(ctx.timeoutMs, TIMEOUT_MS);
      assert.equal(typeof ctx.deadline, 'number');
      assert.ok(Number(ctx.deadline) >= sent + TIMEOUT_MS - 50, 'deadline is about now + timeout');
      assert.ok(Number(ctx.deadline) <= received + TIMEOUT_MS, 'deadline is about now + timeout');
      assert.equal(ctx.remainingType, 'number');
      assert.ok(Number(ctx.remaining) > 0 && Number(ctx.remaining) <= TIMEOUT_MS);
      assert.ok(Math.abs(Number(ctx.deadline) - Number(ctx.now) - Number(ctx.remaining)) <= 20);
    });

    void test('functionName of a nested function is its full name', async () => {
      const { echo: e } = await echo(t.request.get('/deep/er/echo'));
      assert.equal((e.context as Record<string, unknown>).functionName, 'deep/er/echo');
    });

    void test('the version is the same for every call of one source and differs between sources', async () => {
      const a = await t.request.get('/echo');
      const b = await t.request.get('/echo');
      const other = await t.request.get('/hello');
      assert.equal(a.headers['x-function-version'], b.headers['x-function-version']);
      assert.notEqual(a.headers['x-function-version'], other.headers['x-function-version']);
      // deep/er/echo has the same source as echo: a content hash, not a name hash.
      const same = await t.request.get('/deep/er/echo');
      assert.equal(same.headers['x-function-version'], a.headers['x-function-version']);
    });
  });

  void describe('what a return value becomes (docs/spec.md §2)', () => {
    void test('undefined → 204, no body, no content type', async () => {
      const res = await raw(t.url, '/r-undefined');
      assert.equal(res.status, 204);
      assert.equal(res.body.length, 0);
      assert.equal(res.headers['content-type'], undefined);
    });

    const ok: { name: string; type: RegExp; text: string }[] = [
      { name: 'r-string', type: /^text\/plain; charset=utf-8$/, text: 'plain text' },
      { name: 'r-object', type: /^application\/json/, text: '{"a":1,"b":[true,null]}' },
      { name: 'r-array', type: /^application\/json/, text: '[1,"two"]' },
      { name: 'r-number', type: /^application\/json/, text: '42' },
      { name: 'r-boolean', type: /^application\/json/, text: 'false' },
      { name: 'r-null', type: /^application\/json/, text: 'null' },
      { name: 'r-async', type: /^application\/json/, text: '{"resolved":true}' },
      {
        name: 'r-shape-extra',
        type: /^application\/json/,
        text: '{"statusCode":201,"body":"x","extra":1}',
      },
    ];
    for (const row of ok) {
      void test(`${row.name} → 200 ${row.type.source} ${row.text}`, async () => {
        const res = await raw(t.url, `/${row.name}`);
        assert.equal(res.status, 200, res.text);
        assert.match(String(res.headers['content-type']), row.type);
        assert.equal(res.text, row.text);
      });
    }

    void test('{ statusCode, headers, body: string } → that status and headers, body as is', async () => {
      const res = await raw(t.url, '/r-shape-string');
      assert.equal(res.status, 201);
      assert.equal(res.headers['x-custom'], 'yes');
      assert.match(String(res.headers['content-type']), /^text\/plain/);
      assert.equal(res.text, 'created');
    });

    void test('{ statusCode, body: object } → the body as JSON', async () => {
      const res = await raw(t.url, '/r-shape-object');
      assert.equal(res.status, 202);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      assert.deepEqual(JSON.parse(res.text), { ok: true, n: 1 });
    });

    void test('{ statusCode, body, isBase64Encoded: true } → the decoded bytes', async () => {
      const res = await raw(t.url, '/r-shape-base64');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'image/png');
      assert.deepEqual([...res.body], [0, 1, 2, 255]);
    });

    void test('{ statusCode, headers } without body → that status and headers, empty body', async () => {
      const res = await raw(t.url, '/r-shape-nobody');
      assert.equal(res.status, 302);
      assert.equal(res.headers.location, '/hello');
      assert.equal(res.body.length, 0);
      assert.equal(res.headers['content-length'], '0');
      assert.equal(res.headers['content-type'], undefined);
    });

    const invalid = [
      'r-function',
      'r-symbol',
      'r-bigint',
      'r-nested-bigint',
      'r-circular',
      'r-async-bigint',
      'r-header-crlf',
      'r-header-name',
    ];
    for (const name of invalid) {
      void test(`${name} → 500 INVALID_RESULT`, async () => {
        const res = await raw(t.url, `/${name}`);
        assertError(res, 500, 'INVALID_RESULT');
        assert.equal(res.headers['set-cookie'], undefined);
        assert.equal(res.headers['x-bad'], undefined);
      });
    }
  });

  void describe('errors (docs/spec.md §3)', () => {
    void test('400 INVALID_FUNCTION_NAME', async () => {
      assertError(await t.request.get('/a.b'), 400, 'INVALID_FUNCTION_NAME');
    });

    void test('400 INVALID_BODY for malformed JSON', async () => {
      const res = await t.request
        .post('/echo')
        .set('Content-Type', 'application/json')
        .send('{bad');
      assertError(res, 400, 'INVALID_BODY');
    });

    void test('400 INVALID_BODY for a malformed JSON body to a missing function too', async () => {
      const res = await t.request
        .post('/missing')
        .set('Content-Type', 'application/json')
        .send('{"a":');
      assert.ok([400, 404].includes(res.status), String(res.status));
      assertError(res, res.status, res.status === 400 ? 'INVALID_BODY' : 'FUNCTION_NOT_FOUND');
    });

    void test('404 FUNCTION_NOT_FOUND names the function', async () => {
      const body = assertError(await t.request.get('/nope'), 404, 'FUNCTION_NOT_FOUND');
      assert.match(body.error.message, /nope/);
    });

    const thrown: { name: string; type: string; message: RegExp }[] = [
      { name: 'e-type', type: 'TypeError', message: /null/ },
      { name: 'e-range', type: 'RangeError', message: /^out of range$/ },
      { name: 'e-reject', type: 'TypeError', message: /^async nope$/ },
      { name: 'e-reject-later', type: 'Error', message: /^later$/ },
    ];
    for (const row of thrown) {
      void test(`${row.name} → 500 FUNCTION_ERROR, type ${row.type}, no host stack`, async () => {
        const body = assertError(await t.request.get(`/${row.name}`), 500, 'FUNCTION_ERROR');
        assert.equal(body.error.type, row.type);
        assert.match(body.error.message, row.message);
      });
    }

    for (const name of ['e-string', 'e-null', 'e-undefined', 'e-reject-string']) {
      void test(`${name} (a non-Error throw or rejection) → 500 FUNCTION_ERROR, never a success`, async () => {
        assertError(await t.request.get(`/${name}`), 500, 'FUNCTION_ERROR');
      });
    }

    void test("a thrown string's text is in the message", async () => {
      const body = assertError(await t.request.get('/e-reject-string'), 500, 'FUNCTION_ERROR');
      assert.match(body.error.message, /rejected text/);
    });

    void test('the function stack goes to the log, not the body', async () => {
      const res = await t.request.get('/e-range').set('X-Request-Id', 'where-is-the-trace');
      assert.equal(res.status, 500);
      assert.equal(res.text.includes('e-range.js:'), false, res.text);
      assert.equal(res.text.includes('stack'), false, res.text);
      await eventually(async () =>
        t.logs.some(
          (line) =>
            line.reqId === 'where-is-the-trace' && JSON.stringify(line).includes('e-range.js:'),
        ),
      );
    });

    void test('a syntax error → 500 FUNCTION_COMPILE_ERROR with its line', async () => {
      const body = assertError(await t.request.get('/syntax'), 500, 'FUNCTION_COMPILE_ERROR');
      assert.equal(body.error.line, 3);
      assert.match(body.error.message, /SyntaxError/);
    });

    for (const name of ['no-function', 'no-function-exports']) {
      void test(`${name}: a file that yields no function → 500 FUNCTION_COMPILE_ERROR`, async () => {
        const body = assertError(await t.request.get(`/${name}`), 500, 'FUNCTION_COMPILE_ERROR');
        assert.match(body.error.message, /function/);
      });
    }

    void test('a file that throws while loading → 500 FUNCTION_COMPILE_ERROR or FUNCTION_ERROR', async () => {
      const res = await t.request.get('/load-throws');
      assert.equal(res.status, 500, res.text);
      const code = (res.body as ErrorJson).error.code;
      assert.ok(['FUNCTION_COMPILE_ERROR', 'FUNCTION_ERROR'].includes(code), code);
      assertError(res, 500, code);
      assert.match((res.body as ErrorJson).error.message, /at load time/);
    });

    // t-microtasks last: when it is not stopped, its worker stays wedged (see the test after).
    void test('t-load-loop (a top level that never finishes) → 500 FUNCTION_COMPILE_ERROR, kept: the next call does not run it again', async () => {
      // Its load is stopped by the watchdog at the timeout: it never loads (docs/spec.md §2
      // MAX_STARTUP_MS), and the version keeps that compile error.
      const first = await t.request.get('/t-load-loop');
      assertError(first, 500, 'FUNCTION_COMPILE_ERROR');
      assert.match(
        first.body.error.message,
        /top-level code did not finish within \d+ ms when it loaded; at most \d+ ms \(MAX_STARTUP_MS\)/,
      );
      const started = Date.now();
      const again = await t.request.get('/t-load-loop');
      assertError(again, 500, 'FUNCTION_COMPILE_ERROR');
      assert.ok(Date.now() - started < TIMEOUT_MS, 'the second call ran the loop again');
      const healthy = await t.request.get('/hello');
      assert.equal(healthy.status, 200, healthy.text);
    });

    const timeouts = ['t-loop', 't-never', 't-microtasks'];
    for (const name of timeouts) {
      void test(`${name} → 504 FUNCTION_TIMEOUT within timeout + 0.5 s; a healthy function answers right after`, async () => {
        // Loaded first (a new version is loaded once on a worker before its first call, with a
        // timeout of its own): the time below is the invocation's.
        await t.server.store.get(name).catch(() => undefined);
        const started = Date.now();
        const res = await t.request.get(`/${name}`);
        const elapsed = Date.now() - started;
        assertError(res, 504, 'FUNCTION_TIMEOUT');
        assert.ok(elapsed >= TIMEOUT_MS - 50, `answered after ${elapsed} ms, before the timeout`);
        assert.ok(elapsed <= TIMEOUT_MS + 500, `answered after ${elapsed} ms`);
        const healthy = await t.request.get('/hello');
        assert.equal(healthy.status, 200, healthy.text);
        assert.equal(healthy.text, '{"message":"it works!","status":"ok"}');
      });
    }

    void test('after the timeouts, every worker serves healthy calls at once (none is wedged)', async () => {
      // Sequential calls spread over both workers (least loaded); each must be quick.
      for (let i = 0; i < 6; i++) {
        const started = Date.now();
        const res = await t.request.get('/hello').timeout(5000);
        const elapsed = Date.now() - started;
        assert.equal(res.status, 200, res.text);
        assert.ok(elapsed < 500, `call ${i} took ${elapsed} ms`);
      }
      await eventually(async () => t.server.pool.stats().workers === 2, 3000);
    });
  });

  void describe('path attacks → 400 INVALID_FUNCTION_NAME, no file read', () => {
    const attacks = (dirName: string) => [
      '/../package',
      `/../${dirName}/hello`,
      `/%2e%2e/${dirName}/hello`,
      '/%2e%2e/x',
      '/%2E%2E/x',
      '/.%2e/x',
      '/a%2fb',
      '/a%2Fb',
      '/a\\b',
      '/.env',
      '/%2eenv',
      '/%00',
      '/hello%00',
      '/hello.js',
      `/${'x'.repeat(65)}`,
      '//x',
      '/./x',
    ];
    void test('every attack is rejected', async () => {
      for (const attack of attacks(path.basename(t.dir))) {
        const res = await raw(t.url, attack);
        assertError(res, 400, 'INVALID_FUNCTION_NAME');
        for (const leak of ['it works', 'BACKSLASH', 'DOTFILE', 'nested a/b', '"X"']) {
          assert.equal(res.text.includes(leak), false, `${attack} leaked ${leak}`);
        }
      }
    });

    void test('past a valid first segment the rest is a sub-path: the prefix function or 404, no file', async () => {
      const dirName = path.basename(t.dir);
      for (const attack of [
        `/${Array(9).fill('q').join('/')}`,
        '/a//b',
        '/q/..',
        `/q/../../${dirName}/hello`,
        '/q/%2e%2e/hello',
      ]) {
        const res = await raw(t.url, attack);
        assertError(res, 404, 'FUNCTION_NOT_FOUND');
        for (const leak of ['it works', 'BACKSLASH', 'DOTFILE', 'nested a/b', '"X"']) {
          assert.equal(res.text.includes(leak), false, `${attack} leaked ${leak}`);
        }
      }
    });

    void test('the longest valid name (64 chars, 8 segments) is not rejected as a name', async () => {
      const res = await raw(t.url, `/${Array(8).fill('y'.repeat(64)).join('/')}`);
      assertError(res, 404, 'FUNCTION_NOT_FOUND');
    });

    void test('a symlink to a file outside the folder → 404, never the outside file', async () => {
      const res = await t.request.get('/escape');
      assertError(res, 404, 'FUNCTION_NOT_FOUND');
      assert.equal(res.text.includes('SECRET-OUTSIDE'), false);
    });

    void test('a symlinked folder leading outside → 404, never the outside file', async () => {
      const res = await t.request.get('/escapedir/secret');
      assertError(res, 404, 'FUNCTION_NOT_FOUND');
      assert.equal(res.text.includes('SECRET-OUTSIDE'), false);
    });

    void test('outside symlinks are not listed by /_/functions', async () => {
      const res = await t.request.get('/_/functions');
      assert.equal(res.status, 200);
      assert.equal(res.text.includes('escape'), false, res.text);
    });
  });

  void describe('the sandbox', () => {
    void test('require, process, Buffer, fs are undefined inside', async () => {
      const res = await t.request.get('/s-globals');
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, {
        require: 'undefined',
        process: 'undefined',
        Buffer: 'undefined',
        fs: 'undefined',
        globalProcess: 'undefined',
      });
    });

    const escapes = ['s-this', 's-event', 's-context', 's-console', 's-timer'];
    for (const name of escapes) {
      void test(`${name}: X.constructor.constructor("return process")() does not reach process`, async () => {
        const res = await t.request.get(`/${name}`);
        assert.equal(res.status, 200, res.text);
        const body = res.body as { reached: string; pid: number | null };
        assert.equal(body.pid ?? null, null, res.text);
        assert.ok(['threw', 'undefined'].includes(body.reached), res.text);
        assert.equal(/"pid":\d/.test(res.text), false);
      });
    }

    void test('s-async: an async function constructor does not reach process', async () => {
      const res = await t.request.get('/s-async');
      assert.equal(/"pid":\d/.test(res.text), false, res.text);
    });

    void test('an uncaught escape attempt → 500 FUNCTION_ERROR, no process leaks', async () => {
      const res = await t.request.get('/s-uncaught');
      const body = assertError(res, 500, 'FUNCTION_ERROR');
      assert.match(body.error.type ?? '', /Error$/);
      assert.equal(/"pid"/.test(res.text), false, res.text);
      for (const pid of t.server.pool.pids()) assert.equal(res.text.includes(String(pid)), false);
    });
  });

  void describe('CORS', () => {
    void test('Access-Control-Allow-Origin on normal and error responses', async () => {
      for (const requestPath of ['/hello', '/missing', '/a.b', '/e-type', '/_/health']) {
        const res = await t.request.get(requestPath).set('Origin', 'https://site.example');
        assert.equal(res.headers['access-control-allow-origin'], '*', requestPath);
      }
    });

    void test('preflight OPTIONS with Access-Control-Request-Method → 204', async () => {
      const res = await t.request
        .options('/echo')
        .set('Origin', 'https://site.example')
        .set('Access-Control-Request-Method', 'POST')
        .set('Access-Control-Request-Headers', 'content-type, x-request-id');
      assert.equal(res.status, 204);
      assert.equal(res.headers['access-control-allow-origin'], '*');
      assert.match(String(res.headers['access-control-allow-methods']), /POST/);
      assert.match(String(res.headers['access-control-allow-headers']), /content-type/i);
      assert.equal(res.text, '');
    });

    void test('the headers a caller acts on are readable cross-origin (exposed)', async () => {
      const res = await t.request.get('/hello').set('Origin', 'https://site.example');
      const exposed = String(res.headers['access-control-expose-headers'])
        .split(',')
        .map((name) => name.trim().toLowerCase());
      for (const name of [
        'x-request-id',
        'x-function-version',
        'server-timing',
        'location',
        'preference-applied',
        'retry-after',
        'allow',
      ]) {
        assert.ok(exposed.includes(name), `${name} in ${exposed.join(', ')}`);
      }
    });
  });

  void describe('admin routes', () => {
    void test('GET /_/health → 200 status ok', async () => {
      const res = await t.request.get('/_/health');
      assert.equal(res.status, 200);
      assert.match(res.headers['content-type'], /^application\/json/);
      assert.equal((res.body as { status: string }).status, 'ok');
      assert.ok(res.headers['x-request-id']);
    });

    void test('GET /_/functions lists name, version, bytes, modified, status', async () => {
      const res = await t.request.get('/_/functions');
      assert.equal(res.status, 200);
      const functions = (res.body as { functions: Record<string, unknown>[] }).functions;
      assert.ok(Array.isArray(functions));
      const hello = functions.find((fn) => fn.name === 'hello');
      assert.ok(hello, res.text);
      const served = await t.request.get('/hello');
      assert.equal(hello.version, served.headers['x-function-version']);
      assert.equal(hello.bytes, Buffer.byteLength(HELLO));
      assert.equal(typeof hello.modified, 'string');
      const stat = await fs.stat(path.join(t.dir, 'hello.js'));
      assert.ok(Math.abs(Date.parse(String(hello.modified)) - stat.mtimeMs) < 1000);
      assert.equal(hello.status, 'ok');
      const nested = functions.find((fn) => fn.name === 'a/b');
      assert.equal(nested?.status, 'ok');
      const broken = functions.find((fn) => fn.name === 'syntax');
      assert.equal(broken?.status, 'compile_error');
    });

    for (const requestPath of ['/_/x', '/_/no/such/route', '/_']) {
      void test(`unknown admin route ${requestPath} → 404 JSON`, async () => {
        const res = await t.request.get(requestPath);
        assertError(res, 404, (res.body as ErrorJson).error?.code);
      });
    }
  });

  void describe('logging', () => {
    void test('console.log inside a function is logged with reqId and fn', async () => {
      const res = await t.request.get('/logger').set('X-Request-Id', 'console-test-1');
      assert.equal(res.status, 200);
      assert.equal(res.text, 'logged');
      await eventually(async () =>
        t.logs.some(
          (line) =>
            line.reqId === 'console-test-1' &&
            line.fn === 'logger' &&
            JSON.stringify(line).includes('hello from fn 42'),
        ),
      );
    });

    void test('every request is logged once with its id and status', async () => {
      await t.request.get('/missing').set('X-Request-Id', 'log-once-1');
      await eventually(async () => t.logs.some((line) => line.reqId === 'log-once-1'));
      const lines = t.logs.filter(
        (line) => line.reqId === 'log-once-1' && line.status !== undefined,
      );
      assert.equal(lines.length, 1, JSON.stringify(lines));
      assert.equal(lines[0].status, 404);
    });
  });
});

void describe('MAX_BODY and CORS_ORIGIN', () => {
  let t: TestServer;
  const ORIGIN = 'https://app.example';

  before(async () => {
    t = await startServer({
      functions: { echo: ECHO, hello: HELLO },
      env: { MAX_BODY: '1kb', CORS_ORIGIN: ORIGIN },
    });
  });
  after(() => t.close());

  void test('a body under MAX_BODY is accepted', async () => {
    const res = await t.request
      .post('/echo')
      .set('Content-Type', 'text/plain')
      .send('x'.repeat(1000));
    assert.equal(res.status, 200, res.text);
    assert.equal((res.body as { event: { body: string } }).event.body.length, 1000);
  });

  const over: { what: string; type: string; body: string }[] = [
    { what: 'JSON', type: 'application/json', body: JSON.stringify({ x: 'y'.repeat(2000) }) },
    { what: 'a form', type: 'application/x-www-form-urlencoded', body: `a=${'y'.repeat(2000)}` },
    { what: 'text', type: 'text/plain', body: 'y'.repeat(2000) },
    { what: 'binary', type: 'application/octet-stream', body: 'y'.repeat(2000) },
  ];
  for (const row of over) {
    void test(`${row.what} over MAX_BODY → 413 PAYLOAD_TOO_LARGE`, async () => {
      const res = await t.request.post('/echo').set('Content-Type', row.type).send(row.body);
      assertError(res, 413, 'PAYLOAD_TOO_LARGE');
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
    });
  }

  void test('a chunked binary body over MAX_BODY → 413 PAYLOAD_TOO_LARGE', async () => {
    const res = await raw(t.url, '/echo', {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: ['y'.repeat(600), 'y'.repeat(600)],
    });
    assertError(res, 413, 'PAYLOAD_TOO_LARGE');
  });

  void test('CORS_ORIGIN is the Access-Control-Allow-Origin value', async () => {
    for (const requestPath of ['/hello', '/missing']) {
      const res = await t.request.get(requestPath).set('Origin', ORIGIN);
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
    }
    const preflight = await t.request
      .options('/hello')
      .set('Origin', ORIGIN)
      .set('Access-Control-Request-Method', 'GET');
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], ORIGIN);
  });
});
