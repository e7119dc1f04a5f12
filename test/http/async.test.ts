/**
 * Async invocations end to end (docs/spec.md §9): `Prefer: respond-async` on the real server, attempts on
 * real workers, the queue on a real SQLite file, and again on a real redis-server (BullMQ),
 * callbacks to a local HTTP server on loopback (allowed by EGRESS_ALLOW), and two servers sharing
 * one Redis: each invocation runs once.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';

const TOKEN = 'a-test-admin-token-0123456789';
const AUTH = { Authorization: `Bearer ${TOKEN}` };
const ASYNC = { Prefer: 'respond-async' };

interface State {
  requestId: string;
  function: string;
  status: string;
  attempts: number;
  source: string;
  response?: {
    status: number;
    headers: Record<string, string>;
    body?: string;
    isBase64Encoded?: true;
  };
  error?: { status: number; code: string; message: string; type?: string };
  callback?: { url: string; status: string; attempts: number; lastStatus?: number };
  lastAttempt?: { attempt: number; logs: string[]; status: number; outcome: string };
}

const FUNCTIONS: Record<string, string> = {
  json: `module.exports = (e, c) => ({ got: e.body, method: e.method, q: e.query, attempt: c.attempt, id: c.requestId });\n`,
  text: `module.exports = () => 'plain text';\n`,
  shaped: `module.exports = () => ({ statusCode: 201, headers: { 'X-Made': 'yes', 'Content-Type': 'text/csv' }, body: 'a,b' });\n`,
  nothing: `module.exports = () => undefined;\n`,
  bytes: `module.exports = () => ({ statusCode: 200, headers: { 'content-type': 'application/octet-stream' }, body: 'AAEC/w==', isBase64Encoded: true });\n`,
  deliberate: `module.exports = () => ({ statusCode: 503, body: { down: true } });\n`,
  logs: `module.exports = (e, c) => { console.log('attempt ' + c.attempt); return 'ok'; };\n`,
  // Fails on its first attempt only: the attempt number is context.attempt.
  flaky: `module.exports = (e, c) => {
  if (c.attempt === 1) throw new TypeError('first attempt fails');
  return { attempt: c.attempt, id: c.requestId };
};
`,
  throws: `module.exports = (e, c) => { throw new RangeError('always ' + c.attempt); };
module.exports.config = { async: { retries: 2 } };
`,
  'throws-once': `module.exports = () => { throw new Error('no retries'); };
module.exports.config = { async: { retries: 0 } };
`,
  loops: `module.exports = () => { for (;;) {} };
module.exports.config = { timeoutMs: 100, async: { retries: 1 } };
`,
  invalid: `module.exports = () => () => 1;
module.exports.config = { async: { retries: 1 } };
`,
  broken: `module.exports = () => {;\n`,
  getonly: `module.exports = () => 'get';\nmodule.exports.config = { methods: ['GET'] };\n`,
  // Records when it ran, so that overlaps show.
  slow: `module.exports = async (e) => {
  const start = Date.now();
  await new Promise((r) => setTimeout(r, Number(e.query.ms || 150)));
  return { start, end: Date.now() };
};
`,
  hello: `module.exports = () => 'hello';\n`,
};

async function poll(t: TestServer, id: string, ms = 15_000): Promise<State> {
  let state: State | undefined;
  await eventually(async () => {
    const res = await t.request.get(`/_/invocations/${id}`).set(AUTH);
    state = res.body as State;
    return res.status === 200 && (state.status === 'succeeded' || state.status === 'failed');
  }, ms);
  return state as State;
}

/** The async state of an id, or undefined (none, or only the record of a synchronous answer). */
async function asyncState(t: TestServer, id: string): Promise<State | undefined> {
  const res = await t.request.get(`/_/invocations/${id}`).set(AUTH);
  if (res.status === 404) return undefined;
  const body = res.body as State | { status: number };
  return typeof body.status === 'number' ? undefined : (body as State);
}

async function queue(
  t: TestServer,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
) {
  const req = body === undefined ? t.request.post(path) : t.request.post(path).send(body as object);
  return req.set({ ...ASYNC, ...headers });
}

function asyncSuite(name: string, env: () => Record<string, string>, skip: string | false) {
  describe(`async invocations: ${name}`, { skip }, () => {
    let t: TestServer;
    let hook: http.Server;
    let hookPort: number;
    const received: { headers: http.IncomingHttpHeaders; body: string; method?: string }[] = [];
    /** How the callback server answers, in turn (then 200). */
    const answers: number[] = [];
    before(async () => {
      hook = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          received.push({
            headers: req.headers,
            body: Buffer.concat(chunks).toString(),
            method: req.method,
          });
          res.statusCode = answers.shift() ?? 200;
          res.end('thanks');
        });
      });
      await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
      hookPort = (hook.address() as AddressInfo).port;
      t = await startServer({
        functions: FUNCTIONS,
        env: {
          ADMIN_TOKEN: TOKEN,
          EGRESS_ALLOW: `127.0.0.1:${hookPort}`,
          ...env(),
        },
      });
    });
    after(async () => {
      await t?.close();
      await new Promise((resolve) => hook.close(resolve));
    });

    test('202 + Location + Preference-Applied + X-Request-Id, then succeeded with the exact response', async () => {
      // [path, body, expected response]
      const rows: [string, unknown, State['response']][] = [
        [
          '/json?x=1',
          { a: [1, 2] },
          undefined, // checked below: it names the request id
        ],
        [
          '/text',
          undefined,
          {
            status: 200,
            headers: { 'content-type': 'text/plain; charset=utf-8' },
            body: 'plain text',
          },
        ],
        [
          '/shaped',
          undefined,
          { status: 201, headers: { 'x-made': 'yes', 'content-type': 'text/csv' }, body: 'a,b' },
        ],
        ['/nothing', undefined, { status: 204, headers: {} }],
        [
          '/bytes',
          undefined,
          {
            status: 200,
            headers: { 'content-type': 'application/octet-stream' },
            body: 'AAEC/w==',
            isBase64Encoded: true,
          },
        ],
        // A status the function chose is a success: the response says it (Lambda's view).
        [
          '/deliberate',
          undefined,
          {
            status: 503,
            headers: { 'content-type': 'application/json; charset=utf-8' },
            body: '{"down":true}',
          },
        ],
      ];
      for (const [path, body, expected] of rows) {
        const res = await queue(t, path, {}, body);
        assert.equal(res.status, 202, path);
        const id = res.headers['x-request-id'];
        assert.ok(id, path);
        assert.equal(res.headers.location, `/_/invocations/${id}`);
        assert.equal(res.headers['preference-applied'], 'respond-async');
        assert.deepEqual(res.body, { requestId: id, status: 'queued' });
        const state = await poll(t, id);
        assert.equal(state.status, 'succeeded', path);
        assert.equal(state.attempts, 1);
        assert.equal(state.requestId, id);
        assert.equal(state.source, 'request');
        if (expected) {
          assert.deepEqual(state.response, expected, path);
        } else {
          assert.equal(state.response?.status, 200);
          assert.deepEqual(JSON.parse(state.response?.body ?? ''), {
            got: { a: [1, 2] },
            method: 'POST',
            q: { x: '1' },
            attempt: 1,
            id,
          });
        }
      }
    });

    test('a Prefer header with other preferences, in any case, is still respond-async', async () => {
      for (const prefer of ['RESPOND-ASYNC', 'wait=5, respond-async', 'respond-async; x=1']) {
        const res = await t.request.get('/hello').set('Prefer', prefer);
        assert.equal(res.status, 202, prefer);
      }
      for (const prefer of ['return=minimal', 'respond-asynchronously']) {
        const res = await t.request.get('/hello').set('Prefer', prefer);
        assert.equal(res.status, 200, prefer);
        assert.equal(res.text, 'hello');
      }
    });

    test('errors a sync call would get come at once, and nothing is queued', async () => {
      // [method, path, status, code]
      const rows: [string, string, number, string][] = [
        ['POST', '/no-such-function', 404, 'FUNCTION_NOT_FOUND'],
        ['POST', '/bad..name', 400, 'INVALID_FUNCTION_NAME'],
        ['POST', '/broken', 500, 'FUNCTION_COMPILE_ERROR'],
        ['POST', '/getonly', 405, 'METHOD_NOT_ALLOWED'],
      ];
      for (const [method, path, status, code] of rows) {
        const res = await t.request[method.toLowerCase() as 'post'](path).set(ASYNC);
        assert.equal(res.status, status, path);
        assert.equal((res.body as { error: { code: string } }).error.code, code, path);
        assert.equal(await asyncState(t, res.headers['x-request-id']), undefined, path);
      }
    });

    test('failing on attempt 1, succeeding on 2: succeeded, 2 attempts, the same request id', async () => {
      const res = await queue(t, '/flaky', { 'X-Request-Id': `flaky-${name}` });
      assert.equal(res.status, 202);
      const state = await poll(t, `flaky-${name}`);
      assert.equal(state.status, 'succeeded');
      assert.equal(state.attempts, 2);
      assert.deepEqual(JSON.parse(state.response?.body ?? ''), {
        attempt: 2,
        id: `flaky-${name}`,
      });
      assert.equal(state.error, undefined);
      // Each attempt left a record under the same id; the last one is shown.
      assert.equal(state.lastAttempt?.attempt, 2);
    });

    test('always failing: failed after 1 + retries attempts, with the error, and listed', async () => {
      // [function, attempts, code, status, type]
      const rows: [string, number, string, number, string | undefined][] = [
        ['throws', 3, 'FUNCTION_ERROR', 500, 'RangeError'],
        ['throws-once', 1, 'FUNCTION_ERROR', 500, 'Error'],
        ['loops', 2, 'FUNCTION_TIMEOUT', 504, undefined],
        ['invalid', 2, 'INVALID_RESULT', 500, undefined],
      ];
      const ids = await Promise.all(
        rows.map(async ([fn]) => {
          const res = await queue(t, `/${fn}`);
          assert.equal(res.status, 202);
          return res.body.requestId as string;
        }),
      );
      for (const [i, [fn, attempts, code, status, type]] of rows.entries()) {
        const state = await poll(t, ids[i], 30_000);
        assert.equal(state.status, 'failed', fn);
        assert.equal(state.attempts, attempts, fn);
        assert.equal(state.error?.code, code, fn);
        assert.equal(state.error?.status, status, fn);
        assert.equal(state.error?.type, type, fn);
        assert.equal(state.response, undefined);
      }
      assert.match(
        (await poll(t, ids[0])).error?.message ?? '',
        /^always 3$/,
        'the last attempt’s error',
      );
      const listed = await t.request.get('/_/invocations?status=failed&limit=1000').set(AUTH);
      assert.equal(listed.status, 200);
      const failed = (listed.body as { invocations: State[] }).invocations;
      for (const id of ids)
        assert.ok(
          failed.some((s) => s.requestId === id),
          id,
        );
      assert.ok(failed.every((s) => s.status === 'failed'));
      const one = await t.request.get('/_/invocations?status=failed&fn=loops').set(AUTH);
      assert.deepEqual(
        (one.body as { invocations: State[] }).invocations.map((s) => s.requestId),
        [ids[2]],
      );
    });

    test('GET /_/invocations/<id> needs the token; console output of the last attempt shows', async () => {
      const res = await queue(t, '/logs');
      const id = res.body.requestId as string;
      assert.equal((await t.request.get(`/_/invocations/${id}`)).status, 401);
      const state = await poll(t, id);
      assert.deepEqual(state.lastAttempt?.logs, ['info\tattempt 1']);
      assert.equal(state.lastAttempt?.outcome, 'ok');
      const succeeded = await t.request.get('/_/invocations?status=succeeded&fn=logs').set(AUTH);
      assert.deepEqual(
        (succeeded.body as { invocations: State[] }).invocations.map((s) => s.requestId),
        [id],
      );
    });

    test('X-Callback-Url: the response is POSTed with X-Request-Id and X-Function-Status', async () => {
      received.length = 0;
      const url = `http://127.0.0.1:${hookPort}/done?k=1`;
      // [path, X-Function-Status, content type, body]
      const rows: [string, string, string, (id: string) => string][] = [
        ['/shaped', '201', 'text/csv', () => 'a,b'],
        ['/text', '200', 'text/plain; charset=utf-8', () => 'plain text'],
        [
          '/throws-once',
          '500',
          'application/json; charset=utf-8',
          (id) =>
            JSON.stringify({
              error: { code: 'FUNCTION_ERROR', message: 'no retries', type: 'Error' },
              requestId: id,
            }),
        ],
      ];
      for (const [path, status, type, body] of rows) {
        received.length = 0;
        const res = await queue(t, path, { 'X-Callback-Url': url });
        assert.equal(res.status, 202);
        const id = res.body.requestId as string;
        await poll(t, id);
        await eventually(async () => received.length === 1);
        const [hit] = received;
        assert.equal(hit.method, 'POST');
        assert.equal(hit.headers['x-request-id'], id);
        assert.equal(hit.headers['x-function-status'], status);
        assert.equal(hit.headers['content-type'], type);
        assert.equal(hit.body, body(id));
        await eventually(async () => (await poll(t, id)).callback?.status === 'delivered');
        const state = await poll(t, id);
        assert.deepEqual(
          { ...state.callback, deliveredAt: undefined },
          { url, status: 'delivered', attempts: 1, lastStatus: 200, deliveredAt: undefined },
        );
      }
    });

    test('a callback answered 500 is tried again and recorded', async () => {
      received.length = 0;
      answers.push(500);
      const res = await queue(t, '/text', {
        'X-Callback-Url': `http://127.0.0.1:${hookPort}/flaky`,
      });
      const id = res.body.requestId as string;
      await eventually(async () => (await poll(t, id)).callback?.status === 'delivered', 10_000);
      const state = await poll(t, id);
      assert.equal(state.callback?.attempts, 2);
      assert.equal(received.length, 2);
      assert.deepEqual(
        received.map((r) => r.headers['x-request-id']),
        [id, id],
      );
    });

    test('X-Callback-Url is checked when the request arrives: 400, nothing queued', async () => {
      // [url, code]
      const rows: [string, string][] = [
        ['not a url', 'INVALID_CALLBACK_URL'],
        ['/relative/path', 'INVALID_CALLBACK_URL'],
        ['ftp://127.0.0.1/x', 'INVALID_CALLBACK_URL'],
        [`http://user:pw@127.0.0.1:${hookPort}/`, 'INVALID_CALLBACK_URL'],
        [`http://127.0.0.1:${hookPort + 1}/`, 'CALLBACK_REFUSED'],
        ['http://[::1]:8080/', 'CALLBACK_REFUSED'],
        ['http://169.254.169.254/latest', 'CALLBACK_REFUSED'],
        ['http://10.0.0.1/hook', 'CALLBACK_REFUSED'],
        ['http://localhost:1/', 'CALLBACK_REFUSED'],
        // The server itself.
        [`${t.url}/hello`, 'CALLBACK_REFUSED'],
      ];
      for (const [url, code] of rows) {
        const res = await queue(t, '/hello', { 'X-Callback-Url': url });
        assert.equal(res.status, 400, url);
        assert.equal((res.body as { error: { code: string } }).error.code, code, url);
        assert.equal(await asyncState(t, res.headers['x-request-id']), undefined, url);
      }
    });

    test('the same X-Request-Id again is not queued twice; for another function it is 409', async () => {
      const id = `dup-${name}-${Date.now()}`;
      const first = await queue(t, '/logs', { 'X-Request-Id': id });
      assert.equal(first.status, 202);
      await poll(t, id);
      const again = await queue(t, '/logs', { 'X-Request-Id': id });
      assert.equal(again.status, 202);
      assert.deepEqual(again.body, { requestId: id, status: 'succeeded' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const state = await poll(t, id);
      assert.equal(state.attempts, 1);
      // Another function under that id would never run: 409, nothing queued, the first untouched.
      for (const path of ['/hello', '/text']) {
        const other = await queue(t, path, { 'X-Request-Id': id });
        assert.equal(other.status, 409, other.text);
        assert.equal((other.body as { error: { code: string } }).error.code, 'REQUEST_ID_CONFLICT');
      }
      const after = await poll(t, id);
      assert.equal(after.function, 'logs');
      assert.equal(after.attempts, 1);
    });

    test('ASYNC_CONCURRENCY (1 here) bounds async runs; sync calls are answered meanwhile', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push((await queue(t, '/slow?ms=200')).body.requestId);
      // While they run one at a time, synchronous calls still find a worker.
      for (let i = 0; i < 5; i++) {
        const res = await t.request.get('/hello');
        assert.equal(res.status, 200);
      }
      const spans = [];
      for (const id of ids) {
        const state = await poll(t, id);
        spans.push(JSON.parse(state.response?.body ?? '') as { start: number; end: number });
      }
      spans.sort((a, b) => a.start - b.start);
      for (let i = 1; i < spans.length; i++) {
        assert.ok(spans[i].start >= spans[i - 1].end, `runs ${i - 1} and ${i} overlap`);
      }
    });

    test('metrics count accepted and finished async invocations', async () => {
      const text = (await t.request.get('/_/metrics')).text;
      assert.match(text, /faas_async_queued_total\{function="text"\} [1-9]/);
      assert.match(text, /faas_async_finished_total\{function="throws",status="failed"\} [1-9]/);
      assert.match(text, /faas_async_callbacks_total\{outcome="delivered"\} [1-9]/);
      assert.match(text, /faas_async_queue_depth \d+/);
    });
  });
}

asyncSuite('sqlite', () => ({ ASYNC_CONCURRENCY: '1' }), false);

let redis: TestRedis | undefined;
if (!REDIS_MISSING) {
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis?.close());
}
asyncSuite(
  'redis',
  () => ({ ASYNC_CONCURRENCY: '1', REDIS_URL: (redis as TestRedis).url }),
  REDIS_MISSING,
);

describe('async invocations: a full queue', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      functions: { slow: FUNCTIONS.slow },
      env: { ADMIN_TOKEN: TOKEN, MAX_ASYNC_QUEUE: '3', ASYNC_CONCURRENCY: '1' },
    });
  });
  after(() => t?.close());

  test('past MAX_ASYNC_QUEUE queued or running: 503 OVERLOADED with Retry-After', async () => {
    const statuses: number[] = [];
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await queue(t, '/slow?ms=400');
      statuses.push(res.status);
      if (res.status === 202) ids.push(res.body.requestId as string);
      else {
        assert.equal((res.body as { error: { code: string } }).error.code, 'OVERLOADED');
        assert.ok(Number(res.headers['retry-after']) > 0);
      }
    }
    assert.deepEqual(statuses, [202, 202, 202, 503, 503]);
    for (const id of ids) assert.equal((await poll(t, id)).status, 'succeeded');
    assert.equal((await queue(t, '/slow?ms=1')).status, 202);
  });
});

describe('async invocations: two servers sharing one Redis', { skip: REDIS_MISSING }, () => {
  const servers: TestServer[] = [];
  const counter = `module.exports = async (e, c) => ({ runs: await c.kv.incr('runs:' + c.requestId) });\n`;
  before(async () => {
    for (let i = 0; i < 2; i++) {
      servers.push(
        await startServer({
          functions: { shared: counter },
          env: { ADMIN_TOKEN: TOKEN, REDIS_URL: (redis as TestRedis).url, ASYNC_CONCURRENCY: '1' },
        }),
      );
    }
  });
  after(async () => {
    for (const s of servers) await s.close();
  });

  test('each async invocation runs once, whichever server took it; any server reads it', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await queue(servers[i % 2], '/shared');
      assert.equal(res.status, 202);
      ids.push(res.body.requestId as string);
    }
    for (const [i, id] of ids.entries()) {
      // Read from the server that did not take it.
      const state = await poll(servers[(i + 1) % 2], id);
      assert.equal(state.status, 'succeeded');
      assert.equal(state.attempts, 1);
      assert.deepEqual(JSON.parse(state.response?.body ?? ''), { runs: 1 });
    }
    // Both servers took some: the work is shared.
    const ran = await Promise.all(
      servers.map(async (s) => {
        const text = (await s.request.get('/_/metrics')).text;
        return Number(
          /faas_async_finished_total\{function="shared",status="succeeded"\} (\d+)/.exec(
            text,
          )?.[1] ?? 0,
        );
      }),
    );
    assert.equal(ran[0] + ran[1], 30);
  });
});
