/**
 * GET /_/invocations/stream (docs/http-api.md "Following invocations"): on the real server, its
 * headers, one event per matching invocation, the token, and its end when the server stops; on
 * a Koa app with the same route over a real record log (small limits), the bound on open
 * streams, keep-alives and the cleanup when a client leaves; with REDIS_URL, a stream on one
 * server carries another's invocations.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import Router from '@koa/router';
import Koa from 'koa';
import { SseParser } from '../../src/cli/sse';
import type { SseEvent } from '../../src/cli/sse';
import { requireToken } from '../../src/http/admin/auth';
import { InvocationStreams, invocationStreamRoute } from '../../src/http/admin/invocation-stream';
import type { InvocationRecord } from '../../src/http/admin/api';
import { errorBoundary } from '../../src/http/error-handler';
import { createLogger } from '../../src/observe/logger';
import { InvocationRecords } from '../../src/observe/records';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';
import { until } from '../support/wait';

const TOKEN = 'stream-test-token-0123456789abcdef';
const AUTH = { authorization: `Bearer ${TOKEN}` };

const FUNCTIONS = {
  hello: "module.exports = () => { console.log('hi'); return 'hello'; };\n",
  other: "module.exports = () => 'other';\n",
  fails: "module.exports = () => { throw new Error('boom'); };\n",
};

/** An open event stream: what arrived so far, and whether it ended. */
interface Stream {
  response: Response;
  /** Everything received, comments included. */
  text(): string;
  events: SseEvent[];
  /** Resolves when the answer ends (or its reading fails: then with the error). */
  done: Promise<Error | undefined>;
  abort(): void;
}

async function openStream(base: string, query = '', headers = AUTH): Promise<Stream> {
  const controller = new AbortController();
  const response = await fetch(`${base}/_/invocations/stream${query}`, {
    headers,
    signal: controller.signal,
  });
  let text = '';
  const events: SseEvent[] = [];
  const parser = new SseParser();
  const done = (async () => {
    if (!response.body) return undefined;
    try {
      for await (const chunk of response.body.pipeThrough(new TextDecoderStream())) {
        text += chunk;
        events.push(...parser.push(chunk));
      }
      return undefined;
    } catch (err) {
      return err as Error;
    }
  })();
  return { response, text: () => text, events, done, abort: () => controller.abort() };
}

const recordsOf = (stream: Stream) =>
  stream.events
    .filter((event) => event.type === 'invocation')
    .map((event) => JSON.parse(event.data) as InvocationRecord);

/** Calls a function; returns its request id. */
async function invoke(base: string, name: string): Promise<string> {
  const response = await fetch(`${base}/${name}`);
  await response.text();
  return response.headers.get('x-request-id') as string;
}

describe('the stream on the real server', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ functions: FUNCTIONS, env: { ADMIN_TOKEN: TOKEN } });
  });
  after(() => t?.close());

  test('headers, then one event per invocation of the function asked for', async () => {
    const stream = await openStream(t.url, '?fn=hello');
    try {
      assert.equal(stream.response.status, 200);
      assert.equal(stream.response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
      assert.equal(stream.response.headers.get('cache-control'), 'no-store');
      assert.ok(stream.response.headers.get('x-request-id'));
      await until('the first comment', () => stream.text().startsWith(': connected\n\n'), 10_000);

      const first = await invoke(t.url, 'hello');
      await invoke(t.url, 'other');
      const second = await invoke(t.url, 'hello');
      await until('two records', () => recordsOf(stream).length >= 2, 10_000);
      // `other` ran between them: had it been sent, it would be the second event.
      const records = recordsOf(stream);
      assert.deepEqual(
        records.map((record) => record.requestId),
        [first, second],
      );
      assert.equal(records[0].function, 'hello');
      assert.equal(records[0].status, 200);
      assert.equal(records[0].outcome, 'ok');
      assert.deepEqual(records[0].logs, ['info\thi']);
      assert.match(stream.text(), /event: invocation\ndata: \{"requestId":/);
    } finally {
      stream.abort();
    }
  });

  test('status filters by HTTP status or class', async () => {
    const stream = await openStream(t.url, '?status=5xx');
    try {
      assert.equal(stream.response.status, 200);
      await invoke(t.url, 'hello');
      const failed = await invoke(t.url, 'fails');
      await until('the failure', () => recordsOf(stream).length >= 1, 10_000);
      await invoke(t.url, 'hello');
      const marker = await invoke(t.url, 'fails');
      await until('the second failure', () => recordsOf(stream).length >= 2, 10_000);
      assert.deepEqual(
        recordsOf(stream).map((record) => [record.requestId, record.status]),
        [
          [failed, 500],
          [marker, 500],
        ],
      );
    } finally {
      stream.abort();
    }
    const refused = await fetch(`${t.url}/_/invocations/stream?status=failed`, { headers: AUTH });
    assert.equal(refused.status, 400);
    assert.equal(
      ((await refused.json()) as { error: { code: string } }).error.code,
      'INVALID_BODY',
    );
  });

  test('refused without the token, or with a wrong one: 401 JSON', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }] as Record<string, string>[]) {
      const response = await fetch(`${t.url}/_/invocations/stream`, { headers });
      assert.equal(response.status, 401);
      assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
      const body = (await response.json()) as { error: { code: string } };
      assert.equal(body.error.code, 'UNAUTHORIZED');
    }
  });
});

describe('the stream when the server stops', () => {
  test('ends with an end event, and does not hold the stop', async () => {
    const t = await startServer({ functions: FUNCTIONS, env: { ADMIN_TOKEN: TOKEN } });
    const stream = await openStream(t.url);
    await until('the first comment', () => stream.text().includes(': connected'), 10_000);
    await t.close();
    // Ended by the server's end of the answer, not torn off with the connection.
    assert.equal(await stream.done, undefined);
    const last = stream.events[stream.events.length - 1];
    assert.equal(last.type, 'end');
    assert.deepEqual(JSON.parse(last.data), {
      code: 'SHUTTING_DOWN',
      message: 'the server is shutting down',
    });
  });
});

describe('the limits, on a Koa app with the route', () => {
  const records = new InvocationRecords(100);
  const streams = new InvocationStreams(records, { maxStreams: 2, keepAliveMs: 100 });
  let server: http.Server;
  let base: string;
  before(async () => {
    const app = new Koa();
    app.use(errorBoundary(createLogger({ level: 'silent' })));
    const router = new Router({ prefix: '/_' });
    invocationStreamRoute(router, streams, requireToken(TOKEN));
    app.use(router.routes());
    server = http.createServer(app.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    streams.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const record = (requestId: string): InvocationRecord => ({
    requestId,
    function: 'f',
    version: 'v1',
    start: new Date().toISOString(),
    status: 200,
    outcome: 'ok',
    durationMs: { total: 1 },
    logs: [],
  });

  test('keep-alives while quiet; records to every stream; a bound; cleanup; the end', async () => {
    const one = await openStream(base);
    const two = await openStream(base);
    assert.equal(one.response.status, 200);
    assert.equal(two.response.status, 200);
    await until('a keep-alive', () => one.text().includes(': keep-alive\n\n'), 10_000);

    records.add(record('r1'));
    await until(
      'r1 on both',
      () => recordsOf(one).length === 1 && recordsOf(two).length === 1,
      10_000,
    );

    const third = await fetch(`${base}/_/invocations/stream`, { headers: AUTH });
    assert.equal(third.status, 429);
    assert.equal(third.headers.get('retry-after'), '5');
    const body = (await third.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'TOO_MANY_REQUESTS');
    assert.match(body.error.message, /2 invocation streams are open/);

    // A client that leaves frees its place.
    one.abort();
    await one.done;
    await until('one stream left', () => streams.size === 1, 10_000);
    const again = await openStream(base);
    assert.equal(again.response.status, 200);
    records.add(record('r2'));
    await until('r2', () => recordsOf(again).length === 1 && recordsOf(two).length === 2, 10_000);
    assert.equal(recordsOf(one).length, 1);

    streams.close();
    assert.equal(await two.done, undefined);
    assert.equal(await again.done, undefined);
    assert.equal(two.events[two.events.length - 1].type, 'end');
    assert.equal(streams.size, 0);
    const closed = await fetch(`${base}/_/invocations/stream`, { headers: AUTH });
    assert.equal(closed.status, 503);
    assert.equal(
      ((await closed.json()) as { error: { code: string } }).error.code,
      'SHUTTING_DOWN',
    );
  });
});

describe('the stream with REDIS_URL: every replica', { skip: REDIS_MISSING }, () => {
  let redis: TestRedis;
  const servers: TestServer[] = [];
  before(async () => {
    redis = await startRedis();
    for (let i = 0; i < 2; i++) {
      servers.push(
        await startServer({
          functions: FUNCTIONS,
          env: { ADMIN_TOKEN: TOKEN, REDIS_URL: redis.url },
        }),
      );
    }
  });
  after(async () => {
    for (const s of servers) await s.close();
    await redis?.close();
  });

  test("a stream on one server carries both servers' invocations, once each", async () => {
    const [a, b] = servers;
    const stream = await openStream(a.url, '?fn=hello');
    try {
      await until('the first comment', () => stream.text().includes(': connected'), 10_000);
      // The tail starts where Redis is when it first reads: let it read once.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const onB = await invoke(b.url, 'hello');
      const onA = await invoke(a.url, 'hello');
      await invoke(b.url, 'other');
      await until('both records', () => recordsOf(stream).length >= 2, 10_000);
      // Another moment for a duplicate, were there one.
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.deepEqual(
        recordsOf(stream)
          .map((record) => record.requestId)
          .sort(),
        [onA, onB].sort(),
      );
    } finally {
      stream.abort();
    }
  });
});
