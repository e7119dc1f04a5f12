/**
 * `Expect`, spoken as raw bytes over node:net as a client that waits for
 * `100 Continue` does: a Content-Length over MAX_BODY gets 413 instead of `100 Continue` and the
 * body is never sent; one within it gets `100 Continue`, then the answer; a chunked upload gets
 * `100 Continue` and the streaming limit; any other expectation gets 417. Refusals carry the
 * JSON shape of docs/spec.md §3, the request id and CORS headers, are logged, and close the connection.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const MAX_BODY = 1024;
/** A deploy's own limit (MAX_DEPLOY_BODY), above MAX_BODY as in the defaults. */
const MAX_DEPLOY_BODY = MAX_BODY * 2;
const ORIGIN = 'https://app.example';

interface Exchange {
  /** Status lines of the interim (1xx) responses, in order. */
  interim: string[];
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Everything the server sent, as text. */
  received: string;
  /** Whether we sent the request body. */
  sentBody: boolean;
  /** Whether the server closed the connection after its answer. */
  closed: boolean;
}

/**
 * Sends `head` on a new connection; sends `body` (its parts) once `100 Continue` arrives, or at
 * once with `bodyAtOnce`. Resolves with the final response once it is complete and the server
 * has closed the connection (every exchange here ends with a close), or after `ms` with what
 * arrived, `closed: false`.
 */
function exchange(
  port: number,
  head: string,
  body: string[] = [],
  options: { bodyAtOnce?: boolean; ms?: number } = {},
): Promise<Exchange> {
  const { bodyAtOnce = false, ms = 5000 } = options;
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    let sentBody = false;
    let settled = false;
    const sendBody = () => {
      if (sentBody) return;
      sentBody = true;
      for (const part of body) if (!socket.destroyed) socket.write(part);
    };
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const received = data.toString('latin1');
      const interim: string[] = [];
      let rest = received;
      // Interim responses are a status line and a blank line each.
      while (/^HTTP\/1\.1 1\d\d /.test(rest) && rest.includes('\r\n\r\n')) {
        const end = rest.indexOf('\r\n\r\n');
        interim.push(rest.slice(0, rest.indexOf('\r\n')));
        rest = rest.slice(end + 4);
      }
      const end = rest.indexOf('\r\n\r\n');
      const headLines = (end < 0 ? rest : rest.slice(0, end)).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headLines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0)
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const bodyText = end < 0 ? '' : Buffer.from(rest.slice(end + 4), 'latin1').toString('utf8');
      resolve({
        interim,
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(headLines[0])?.[1] ?? 0),
        headers,
        body: bodyText,
        received,
        sentBody,
        closed,
      });
    };
    const timer = setTimeout(() => finish(false), ms);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.toString('latin1').startsWith('HTTP/1.1 100 Continue\r\n\r\n')) sendBody();
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => undefined); // a reset after the answer: the close still fires
    socket.on('connect', () => {
      socket.write(head);
      if (bodyAtOnce) sendBody();
    });
  });
}

const request = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;
const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;

function assertRefusal(
  t: TestServer,
  res: Exchange,
  status: number,
  code: string,
  requestId?: string,
): void {
  const context = JSON.stringify(res);
  assert.equal(res.status, status, context);
  assert.deepEqual(res.interim, [], context);
  assert.equal(res.received.includes('100 Continue'), false, context);
  assert.match(res.headers['content-type'] ?? '', /^application\/json; charset=utf-8$/);
  const body = JSON.parse(res.body) as {
    error: { code: string; message: string };
    requestId: string;
  };
  assert.deepEqual(Object.keys(body).sort(), ['error', 'requestId']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.equal(res.headers['x-request-id'], body.requestId);
  if (requestId !== undefined) assert.equal(body.requestId, requestId);
  else assert.match(body.requestId, /^[0-9a-f-]{36}$/);
  assert.equal(res.headers['access-control-allow-origin'], t.config.corsOrigin);
  assert.equal(res.headers.vary, t.config.corsOrigin === '*' ? undefined : 'Origin');
  assert.equal(res.headers.connection, 'close');
  assert.equal(res.closed, true, 'the server closes the connection');
  const line = t.logs.find((l) => l.reqId === body.requestId && l.msg === 'request');
  assert.ok(line, 'one log line for the request');
  assert.equal(line.status, status);
  assert.equal(line.outcome, code);
}

const servers: Record<string, TestServer> = {};
const portOf = (t: TestServer) => Number(new URL(t.url).port);

before(async () => {
  const functions = { echo: '(event) => ({ body: event.body === undefined ? null : event.body })' };
  servers['CORS_ORIGIN=*'] = await startServer({
    functions,
    env: { MAX_BODY: `${MAX_BODY}b`, MAX_DEPLOY_BODY: `${MAX_DEPLOY_BODY}b` },
  });
  servers[`CORS_ORIGIN=${ORIGIN}`] = await startServer({
    functions,
    env: { MAX_BODY: `${MAX_BODY}b`, MAX_DEPLOY_BODY: `${MAX_DEPLOY_BODY}b`, CORS_ORIGIN: ORIGIN },
  });
});
after(async () => {
  for (const t of Object.values(servers)) await t.close();
});

const over: { name: string; head: string[]; body?: string[]; bodyAtOnce?: boolean; id?: string }[] =
  [
    {
      name: 'Content-Length one byte over MAX_BODY',
      head: [
        'POST /echo HTTP/1.1',
        'Host: x',
        'Content-Type: text/plain',
        `Content-Length: ${MAX_BODY + 1}`,
        'Expect: 100-continue',
      ],
      body: ['a'.repeat(MAX_BODY + 1)],
    },
    {
      name: 'Content-Length of 2 MB, binary',
      head: [
        'PUT /echo HTTP/1.1',
        'Host: x',
        'Content-Type: application/octet-stream',
        `Content-Length: ${2 * 1024 * 1024}`,
        'Expect: 100-continue',
      ],
    },
    {
      name: 'Expect in other case, with a sane X-Request-Id',
      head: [
        'POST /echo HTTP/1.1',
        'Host: x',
        'Content-Type: application/json',
        `Content-Length: ${MAX_BODY * 4}`,
        'Expect: 100-Continue',
        'X-Request-Id: client-id.42',
      ],
      id: 'client-id.42',
    },
    {
      name: 'an admin deploy over MAX_DEPLOY_BODY without a token (the size is refused before anything else)',
      head: [
        'PUT /_/functions/big HTTP/1.1',
        'Host: x',
        'Content-Type: application/javascript',
        `Content-Length: ${MAX_DEPLOY_BODY * 4}`,
        'Expect: 100-continue',
      ],
    },
    {
      name: 'a client that sends the body without waiting',
      head: [
        'POST /echo HTTP/1.1',
        'Host: x',
        'Content-Type: text/plain',
        `Content-Length: ${MAX_BODY + 100}`,
        'Expect: 100-continue',
      ],
      body: ['b'.repeat(MAX_BODY + 100)],
      bodyAtOnce: true,
    },
  ];

const under: { name: string; head: string[]; body: string[]; echoed: unknown }[] = [
  {
    name: 'Content-Length exactly MAX_BODY',
    head: [
      'POST /echo HTTP/1.1',
      'Host: x',
      'Content-Type: text/plain',
      `Content-Length: ${MAX_BODY}`,
      'Expect: 100-continue',
      'Connection: close',
    ],
    body: ['c'.repeat(MAX_BODY)],
    echoed: { body: 'c'.repeat(MAX_BODY) },
  },
  {
    name: 'a small JSON body',
    head: [
      'POST /echo HTTP/1.1',
      'Host: x',
      'Content-Type: application/json',
      'Content-Length: 11',
      'Expect: 100-continue',
      'Connection: close',
    ],
    body: ['{"a":[1,2]}'],
    echoed: { body: { a: [1, 2] } },
  },
  {
    name: 'a chunked body within MAX_BODY (no Content-Length)',
    head: [
      'POST /echo HTTP/1.1',
      'Host: x',
      'Content-Type: text/plain',
      'Transfer-Encoding: chunked',
      'Expect: 100-continue',
      'Connection: close',
    ],
    body: [chunk('abc'), chunk('d'.repeat(600)), '0\r\n\r\n'],
    echoed: { body: `abc${'d'.repeat(600)}` },
  },
];

for (const setting of ['CORS_ORIGIN=*', `CORS_ORIGIN=${ORIGIN}`]) {
  void describe(`Expect, ${setting}`, () => {
    for (const row of over) {
      void test(`100-continue, ${row.name} → 413 instead of 100 Continue, body never read`, async () => {
        const t = servers[setting];
        const res = await exchange(portOf(t), request(row.head), row.body, {
          bodyAtOnce: row.bodyAtOnce,
        });
        assertRefusal(t, res, 413, 'PAYLOAD_TOO_LARGE', row.id);
        if (!row.bodyAtOnce) assert.equal(res.sentBody, false);
      });
    }

    for (const row of under) {
      void test(`100-continue, ${row.name} → 100 Continue, then 200`, async () => {
        const t = servers[setting];
        const res = await exchange(portOf(t), request(row.head), row.body);
        assert.deepEqual(res.interim, ['HTTP/1.1 100 Continue'], JSON.stringify(res));
        assert.equal(res.sentBody, true);
        assert.equal(res.status, 200, res.body);
        assert.deepEqual(JSON.parse(res.body), row.echoed);
        assert.ok(res.headers['x-request-id']);
        assert.equal(res.headers['access-control-allow-origin'], t.config.corsOrigin);
      });
    }

    void test('100-continue, a chunked body past MAX_BODY → 100 Continue, then 413 by the streaming limit', async () => {
      const t = servers[setting];
      const head = [
        'POST /echo HTTP/1.1',
        'Host: x',
        'Content-Type: text/plain',
        'Transfer-Encoding: chunked',
        'Expect: 100-continue',
      ];
      const body = [chunk('e'.repeat(700)), chunk('e'.repeat(700)), '0\r\n\r\n'];
      const res = await exchange(portOf(t), request(head), body);
      assert.deepEqual(res.interim, ['HTTP/1.1 100 Continue'], JSON.stringify(res));
      assert.equal(res.status, 413, res.body);
      assert.equal(JSON.parse(res.body).error.code, 'PAYLOAD_TOO_LARGE');
      assert.equal(res.headers['access-control-allow-origin'], t.config.corsOrigin);
      assert.equal(res.closed, true);
    });

    const unknown: { name: string; expect: string; body?: string[] }[] = [
      { name: 'a token', expect: 'something-else' },
      { name: 'a near miss', expect: '100-continues' },
      { name: 'with a body sent at once', expect: 'x-magic=1', body: ['hello'] },
    ];
    for (const row of unknown) {
      void test(`Expect: ${row.expect} (${row.name}) → 417 EXPECTATION_FAILED`, async () => {
        const t = servers[setting];
        const head = [
          'POST /echo HTTP/1.1',
          'Host: x',
          'Content-Type: text/plain',
          `Content-Length: ${Buffer.byteLength((row.body ?? []).join(''))}`,
          `Expect: ${row.expect}`,
        ];
        const res = await exchange(portOf(t), request(head), row.body, { bodyAtOnce: true });
        assertRefusal(t, res, 417, 'EXPECTATION_FAILED');
      });
    }

    void test('after the refusals, a plain request still answers', async () => {
      const t = servers[setting];
      const res = await exchange(
        portOf(t),
        request([
          'POST /echo HTTP/1.1',
          'Host: x',
          'Content-Type: text/plain',
          'Content-Length: 2',
          'Connection: close',
        ]),
        ['ok'],
        { bodyAtOnce: true },
      );
      assert.deepEqual(res.interim, []);
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body), { body: 'ok' });
    });
  });
}
