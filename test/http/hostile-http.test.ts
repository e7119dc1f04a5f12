/**
 * Hostile HTTP: oversized and lying bodies, huge headers, unknown methods, request
 * smuggling shapes, slow clients, path tricks and a flood of unknown names, spoken as raw bytes
 * over node:net where supertest would fix the request up. Every error answers the JSON shape of
 * docs/spec.md §3, and a control function answers 200 afterwards.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const HELLO = "(event, context) => {\n  return { message: 'it works!', status: 'ok' };\n};\n";
const MAX_BODY = 1024;

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** ms from connect to the complete response (or to the close). */
  ms: number;
  /** Whether the server closed the connection before or right after the response. */
  closed: boolean;
}

let t: TestServer;
let port: number;

/**
 * Writes `parts` to a new connection (with `gapMs` between them) and resolves with the first
 * response once it is complete (by Content-Length) or the server closes. Rejects after `ms`.
 */
function raw(parts: (string | Buffer)[], options: { ms?: number; gapMs?: number } = {}) {
  const { ms = 5000, gapMs = 0 } = options;
  return new Promise<RawResponse>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const started = performance.now();
    let data = Buffer.alloc(0);
    let settled = false;
    const finish = (closed: boolean) => {
      const text = data.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0 && !closed) return;
      const head = end < 0 ? text : text.slice(0, end);
      const headers: Record<string, string> = {};
      for (const line of head.split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body =
        end < 0 ? '' : data.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
      const length = Number(headers['content-length'] ?? NaN);
      if (!closed && !(body.length >= length)) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0),
        headers,
        body: body.toString('utf8'),
        ms: performance.now() - started,
        closed: closed || /close/i.test(headers.connection ?? ''),
      });
    };
    const timer = setTimeout(() => {
      settled = true;
      socket.destroy();
      reject(
        new Error(`no complete response within ${ms} ms; got ${JSON.stringify(String(data))}`),
      );
    }, ms);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (!settled) finish(false);
    });
    socket.on('close', () => !settled && finish(true));
    socket.on('error', () => undefined);
    socket.on('connect', async () => {
      for (const part of parts) {
        if (settled || socket.destroyed) return;
        socket.write(part);
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
  });
}

function assertJsonError(res: RawResponse, status: number, code: string): void {
  assert.equal(res.status, status, JSON.stringify(res));
  assert.match(res.headers['content-type'] ?? '', /^application\/json/);
  const body = JSON.parse(res.body) as {
    error: { code: string; message: string };
    requestId: string;
  };
  assert.equal(body.error.code, code, res.body);
  assert.equal(typeof body.error.message, 'string');
  assert.equal(typeof body.requestId, 'string');
  assert.doesNotMatch(res.body, /\n\s+at |node_modules|\/work\//, 'a stack or host path');
}

async function assertHelloOk(): Promise<void> {
  const res = await t.request.get('/hello');
  assert.equal(res.status, 200);
  assert.equal(res.text, '{"message":"it works!","status":"ok"}');
}

const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;

before(async () => {
  t = await startServer({
    functions: {
      hello: HELLO,
      echo: '(event) => ({ body: event.body === undefined ? null : event.body })',
    },
    env: { MAX_BODY: `${MAX_BODY}b` },
  });
  port = Number(new URL(t.url).port);
});
after(() => t.close());

describe('bodies', () => {
  for (const type of ['application/json', 'text/plain', 'application/octet-stream', undefined]) {
    test(`a declared 100 MB body (${type ?? 'no type'}) → 413 before the body is sent`, async () => {
      const head =
        'POST /echo HTTP/1.1\r\nHost: x\r\n' +
        (type ? `Content-Type: ${type}\r\n` : '') +
        'Content-Length: 104857600\r\n\r\n';
      // A few bytes of the 100 MB, then silence: the answer must not wait for the rest.
      const res = await raw([head, '{"a":'], { ms: 3000 });
      assertJsonError(res, 413, 'PAYLOAD_TOO_LARGE');
      assert.ok(res.ms < 2000, `answered after ${res.ms} ms`);
      await assertHelloOk();
    });
  }

  test('after a 413 the server stops reading the rest of the declared body', async () => {
    // Otherwise Node drains (reads and discards) the whole declared body on a keep-alive
    // connection: MAX_BODY would bound what is parsed but not what is read.
    const socket = net.connect(port, '127.0.0.1');
    let closed = false;
    let response = '';
    socket.on('close', () => (closed = true));
    socket.on('error', () => (closed = true));
    socket.on('data', (chunk: Buffer) => (response += chunk.toString('latin1')));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        'Content-Length: 104857600\r\n\r\n{"a":',
    );
    const until = performance.now() + 2000;
    while (!response.includes('\r\n\r\n') && performance.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.match(response, /^HTTP\/1\.1 413 /);
    const megabyte = Buffer.alloc(1024 * 1024, 0x20);
    let sentMb = 0;
    while (!closed && sentMb < 50 && performance.now() < until + 2000) {
      if (!socket.write(megabyte)) {
        await Promise.race([
          new Promise((resolve) => socket.once('drain', resolve)),
          new Promise((resolve) => setTimeout(resolve, 200)),
        ]);
      }
      sentMb++;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    const stillOpen = !closed;
    socket.destroy();
    assert.ok(
      !stillOpen,
      `the connection stayed open after its 413 while the client wrote ${sentMb} MB more`,
    );
    await assertHelloOk();
  });

  for (const type of ['application/json', 'text/plain', 'application/octet-stream']) {
    test(`a chunked body over MAX_BODY (${type}) → 413`, async () => {
      const part = 'x'.repeat(600);
      const res = await raw([
        `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nTransfer-Encoding: chunked\r\n\r\n`,
        chunk(type === 'application/json' ? `"${part}` : part),
        chunk(part),
        chunk(part),
      ]);
      assertJsonError(res, 413, 'PAYLOAD_TOO_LARGE');
      await assertHelloOk();
    });
  }

  test('a chunked body under MAX_BODY is accepted (the 413s are about size)', async () => {
    const res = await raw([
      'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n',
      chunk('abc'),
      chunk('def'),
      '0\r\n\r\n',
    ]);
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(JSON.parse(res.body), { body: 'abcdef' });
  });

  test('a body whose Content-Type lies (application/json, not JSON) → 400 INVALID_BODY', async () => {
    const res = await t.request
      .post('/echo')
      .set('Content-Type', 'application/json')
      .send('hello world');
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body.error.code, 'INVALID_BODY');
    await assertHelloOk();
  });

  for (const body of ['{"a": 1,', '{', '[1, 2', '{"a": undefined}', "{'a': 1}"]) {
    test(`malformed JSON ${JSON.stringify(body)} → 400 INVALID_BODY`, async () => {
      const res = await raw([
        `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      ]);
      assertJsonError(res, 400, 'INVALID_BODY');
      await assertHelloOk();
    });
  }
});

describe('compressed bodies', () => {
  for (const encoding of ['gzip', 'deflate', 'br']) {
    test(`a declared 100 MB ${encoding} body → 413 before the body is sent`, async () => {
      const head =
        'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        `Content-Encoding: ${encoding}\r\nContent-Length: 104857600\r\n\r\n`;
      const res = await raw([head, Buffer.from([0x1f, 0x8b, 0x08])], { ms: 3000 });
      assertJsonError(res, 413, 'PAYLOAD_TOO_LARGE');
      assert.ok(res.closed, 'the connection should close after a 413');
      await assertHelloOk();
    });
  }

  // Each under MAX_BODY as sent, 512 KiB once inflated.
  const zeros = Buffer.alloc(512 * 1024);
  const bombs: [string, Buffer][] = [
    ['gzip', zlib.gzipSync(zeros, { level: 9 })],
    ['deflate', zlib.deflateSync(zeros, { level: 9 })],
    ['br', zlib.brotliCompressSync(zeros)],
  ];
  for (const [encoding, bomb] of bombs) {
    test(`a ${encoding} bomb (${bomb.length} bytes → 512 KiB, chunked) → 413`, async () => {
      const res = await raw([
        `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Encoding: ${encoding}\r\nTransfer-Encoding: chunked\r\n\r\n`,
        Buffer.from(`${bomb.length.toString(16)}\r\n`),
        bomb,
        '\r\n0\r\n\r\n',
      ]);
      assert.ok(bomb.length < MAX_BODY);
      assertJsonError(res, 413, 'PAYLOAD_TOO_LARGE');
      await assertHelloOk();
    });
  }

  for (const encoding of ['gzip', 'deflate', 'br']) {
    test(`a plain body labelled ${encoding} → 400 INVALID_BODY, never a 500`, async () => {
      const body = '{"a":1}';
      const res = await raw([
        `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: ${encoding}\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      ]);
      assertJsonError(res, 400, 'INVALID_BODY');
      await assertHelloOk();
    });
  }
});

describe('malformed requests answer JSON too', () => {
  const cases: { name: string; request: string; status: number; code: string }[] = [
    {
      name: 'headers over 16 KiB',
      request: `GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      status: 431,
      code: 'HEADERS_TOO_LARGE',
    },
    {
      name: 'many small headers over 16 KiB',
      request: `GET /hello HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 1000 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}\r\n`).join('')}\r\n`,
      status: 431,
      code: 'HEADERS_TOO_LARGE',
    },
    {
      name: 'an unknown method',
      request: 'FOO / HTTP/1.1\r\nHost: x\r\n\r\n',
      status: 400,
      code: 'BAD_REQUEST',
    },
    {
      name: 'Content-Length and Transfer-Encoding together (smuggling)',
      request:
        'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      status: 400,
      code: 'BAD_REQUEST',
    },
    {
      name: 'two different Content-Lengths',
      request: 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
      status: 400,
      code: 'BAD_REQUEST',
    },
    {
      name: 'a bare CR inside a header value',
      request: 'GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n',
      status: 400,
      code: 'BAD_REQUEST',
    },
    {
      name: 'a space in the request target',
      request: 'GET /hel lo HTTP/1.1\r\nHost: x\r\n\r\n',
      status: 400,
      code: 'BAD_REQUEST',
    },
    {
      name: 'a broken chunk size',
      request:
        'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
      status: 400,
      code: 'BAD_REQUEST',
    },
  ];
  for (const c of cases) {
    test(`${c.name} → ${c.status} ${c.code}`, async () => {
      const res = await raw([c.request]);
      assertJsonError(res, c.status, c.code);
      assert.ok(res.closed, 'the connection should be closed after a malformed request');
      await assertHelloOk();
    });
  }
});

describe('function names with URL tricks → 400 INVALID_FUNCTION_NAME', () => {
  const targets = [
    '/..%2f..%2fetc%2fpasswd',
    '/%2e%2e/hello',
    '/../../etc/passwd',
    '/..',
    '/hello.js',
    '/hello%2ejs',
    '/a\\b',
    '/a%5cb',
    '/a%00b',
    '//hello',
    '/.hidden',
    '/-x',
    '/_x',
    '/%68ello',
    '/hello%2f',
    '/h%C3%A9llo',
    `/${'a'.repeat(65)}`,
  ];
  for (const target of targets) {
    test(target.length > 40 ? `${target.slice(0, 40)}…` : target, async () => {
      const res = await raw([`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]);
      assertJsonError(res, 400, 'INVALID_FUNCTION_NAME');
    });
  }

  // Past a valid first segment, the rest of the path is a sub-path (docs/spec.md §2): data for the
  // function that the longest valid prefix names, never a file.
  const subpaths: [string, number, string][] = [
    ['/a/../hello', 404, 'FUNCTION_NOT_FOUND'],
    ['/hello/..', 200, ''],
    ['/hello/../../etc/passwd', 200, ''],
    ['/hello/%2e%2e/%2e%2e/etc/passwd', 200, ''],
    ['/a//b', 404, 'FUNCTION_NOT_FOUND'],
    ['/a/b/c/d/e/f/g/h/i', 404, 'FUNCTION_NOT_FOUND'],
  ];
  for (const [target, status, code] of subpaths) {
    test(`${target} is a sub-path → ${status}`, async () => {
      const res = await raw([`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]);
      if (status === 200) {
        assert.equal(res.status, 200);
        assert.equal(res.body, '{"message":"it works!","status":"ok"}');
      } else {
        assertJsonError(res, status, code);
      }
    });
  }

  test('the limits themselves are valid names (64 characters, 8 segments) → 404', async () => {
    for (const target of [`/${'a'.repeat(64)}`, '/a/b/c/d/e/f/g/h']) {
      const res = await raw([`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]);
      assertJsonError(res, 404, 'FUNCTION_NOT_FOUND');
    }
    await assertHelloOk();
  });
});

test('3000 distinct unknown names → all 404, one metrics label, bounded memory', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const prefix = `nosuch${Date.now().toString(36)}`;
  const get = (path: string) =>
    new Promise<{ status: number; code: string }>((resolve, reject) => {
      http
        .get(`${t.url}${path}`, { agent }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            const body = JSON.parse(text) as { error: { code: string } };
            resolve({ status: res.statusCode ?? 0, code: body.error.code });
          });
        })
        .on('error', reject);
    });
  try {
    // Warm up, so first-use allocations do not count as growth.
    for (let i = 0; i < 200; i++) await get(`/warm${i}`);
    const rssBefore = process.memoryUsage().rss;
    const statuses = new Map<string, number>();
    for (let batch = 0; batch < 3000; batch += 50) {
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => get(`/${prefix}-${batch + i}`)),
      );
      for (const r of results) {
        const key = `${r.status} ${r.code}`;
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
      }
    }
    assert.deepEqual([...statuses], [['404 FUNCTION_NOT_FOUND', 3000]]);
    const growthMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
    assert.ok(growthMb < 50, `RSS grew by ${growthMb.toFixed(1)} MB`);

    const metrics = await t.request.get('/_/metrics');
    assert.equal(metrics.status, 200);
    assert.ok(!metrics.text.includes(prefix), 'an unknown name became a metrics label');
    assert.ok(!metrics.text.includes('warm1'), 'an unknown name became a metrics label');
    const unknown =
      /faas_invocations_total\{function="_unknown",outcome="FUNCTION_NOT_FOUND"\} (\d+)/.exec(
        metrics.text,
      );
    assert.ok(unknown, 'no _unknown series');
    assert.ok(Number(unknown[1]) >= 3200, unknown[0]);
    const labels = new Set(
      [...metrics.text.matchAll(/^faas_\w+\{[^}]*function="([^"]*)"/gm)].map((m) => m[1]),
    );
    assert.ok(labels.size <= 3, `function labels: ${[...labels].join(', ')}`);
  } finally {
    agent.destroy();
  }
  await assertHelloOk();
});

test('a slow client that trickles its headers is cut off within 15 s (headersTimeout 10 s)', async () => {
  // One header byte a second: never idle long enough for a socket timeout, never done.
  const trickle = ['GET /hello HTTP/1.1\r\nHost: x\r\n', ...'X-Slow: abcdefghijklmnopqrstuvwxyz'];
  let res: RawResponse;
  try {
    res = await raw(trickle, { ms: 15_000, gapMs: 1000 });
  } catch (err) {
    assert.fail(`the slow client was not cut off: ${(err as Error).message}`);
  }
  assert.ok(res.closed, 'the connection stayed open');
  assertJsonError(res, 408, 'REQUEST_TIMEOUT');
  await assertHelloOk();
});
