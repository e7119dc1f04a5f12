/**
 * The services in `context` end to end (docs/spec.md §8): functions on real workers calling context.kv,
 * context.secrets, context.env and fetch through the real transport (worker → pool → server),
 * a real SQLite file, a real local HTTP server on loopback, and the effect ledger in records.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';

const TOKEN = 'a-test-admin-token-0123456789';
const AUTH = { Authorization: `Bearer ${TOKEN}` };

const FUNCTIONS: Record<string, string> = {
  visits: `module.exports = async (e, c) => ({ visits: await c.kv.incr('visits') });\n`,
  kv: `module.exports = async (e, c) => {
  const q = e.query;
  try {
    if (q.op === 'put') return await c.kv.put(q.key, JSON.parse(q.value), q.ttl ? { ttl: Number(q.ttl) } : {});
    if (q.op === 'putnew') return await c.kv.put(q.key, JSON.parse(q.value), { ifAbsent: true });
    if (q.op === 'get') return { value: await c.kv.get(q.key) };
    if (q.op === 'delete') return await c.kv.delete(q.key);
    if (q.op === 'list') return await c.kv.list({ prefix: q.prefix, cursor: q.cursor, limit: q.limit ? Number(q.limit) : undefined });
    if (q.op === 'incr') return await c.kv.incr(q.key, q.by ? Number(q.by) : undefined);
  } catch (err) {
    return { error: err.name, code: err.code, message: err.message };
  }
  return 'unknown op';
};
`,
  other: `module.exports = async (e, c) => ({ value: await c.kv.get(e.query.key), list: await c.kv.list() });\n`,
  // Writes after it answered (refused), or, as a control, before.
  late: `module.exports = (e, c) => {
  if (e.query.check) return c.kv.get(e.query.check).then((value) => ({ value }));
  if (e.query.control) return c.kv.put('control', 1).then(() => 'answered');
  Promise.resolve().then(() => c.kv.put('late', 1)).catch(() => {});
  return 'answered';
};
`,
  secrets: `export const config = { secrets: ['API_KEY', 'MISSING'], env: { STAGE: 'test' } };
export default (e, c) => {
  console.log('the key is ' + c.secrets.API_KEY);
  if (e.query.throw) throw new Error('failed with ' + c.secrets.API_KEY);
  return { key: c.secrets.API_KEY, missing: 'MISSING' in c.secrets, other: 'OTHER' in c.secrets, env: c.env };
};
`,
  nosecrets: `module.exports = (e, c) => ({ secrets: c.secrets === undefined ? 'none' : Object.keys(c.secrets) });\n`,
  // Its top level reaches for the services while the file loads: refused (a load may run again).
  // (The load's promise never settles: the refusal arrives after the load ended, and is dropped.)
  'top-level': `fetch('UPSTREAM/from-top-level', { method: 'POST' }).catch(() => {});
module.exports = async (e, c) => ({ value: await c.kv.get('x') });
`,
  fetcher: `module.exports = async (e) => {
  try {
    const res = await fetch(e.query.url, { method: e.query.method || 'GET', headers: { 'x-test': 'yes' }, body: e.query.body });
    return { status: res.status, ok: res.ok, echo: await res.json(), header: res.headers.get('x-from') };
  } catch (err) {
    return { error: err.name, message: err.message };
  }
};
`,
};

void describe('services in context, end to end', () => {
  let t: TestServer;
  let upstream: http.Server;
  let upstreamUrl: string;
  /** Paths the upstream server was asked for. */
  const seen: string[] = [];
  let dataDir: string;
  before(async () => {
    upstream = http.createServer((req, res) => {
      seen.push(String(req.url));
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.setHeader('x-from', 'upstream');
        res.end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            test: req.headers['x-test'],
            body: Buffer.concat(chunks).toString(),
          }),
        );
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const { port } = upstream.address() as AddressInfo;
    upstreamUrl = `http://127.0.0.1:${port}`;
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-e2e-data-'));
    t = await startServer({
      functions: FUNCTIONS,
      env: { ADMIN_TOKEN: TOKEN, DATA_DIR: dataDir, EGRESS_ALLOW: `127.0.0.1:${port}` },
    });
  });
  after(async () => {
    await t.close();
    await new Promise((resolve) => upstream.close(resolve));
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  const kv = async (query: Record<string, string>) =>
    (await t.request.get('/kv').query(query)).body as unknown;

  void test('50 concurrent incr from invocations on both workers → exactly 1…50', async () => {
    const answers = await Promise.all(Array.from({ length: 50 }, () => t.request.get('/visits')));
    const values = answers.map((r) => (r.body as { visits: number }).visits).sort((a, b) => a - b);
    assert.deepEqual(
      values,
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
  });

  void test('a value written by one invocation is read by the next, on any worker', async () => {
    assert.equal(await kv({ op: 'put', key: 'greeting', value: '{"hi":[1,2]}' }), true);
    for (let i = 0; i < 6; i++) {
      assert.deepEqual(await kv({ op: 'get', key: 'greeting' }), { value: { hi: [1, 2] } });
    }
    assert.equal(await kv({ op: 'putnew', key: 'greeting', value: '1' }), false);
    assert.equal(await kv({ op: 'delete', key: 'greeting' }), true);
    assert.deepEqual(await kv({ op: 'get', key: 'greeting' }), { value: null });
  });

  void test('a function never sees another function’s keys', async () => {
    await kv({ op: 'put', key: 'mine', value: '"secret of kv"' });
    const res = await t.request.get('/other').query({ key: 'mine' });
    assert.equal(res.body.value, null);
    assert.deepEqual(res.body.list.keys, []);
  });

  void test('errors carry their KV code', async () => {
    const long = await kv({ op: 'get', key: 'k'.repeat(600) });
    assert.equal((long as { code: string }).code, 'KV_INVALID_KEY');
    await kv({ op: 'put', key: 'text', value: '"abc"' });
    const nan = await kv({ op: 'incr', key: 'text' });
    assert.equal((nan as { code: string }).code, 'KV_NOT_A_NUMBER');
  });

  void test('ttl: gone after it, and absent from list', async () => {
    assert.equal(await kv({ op: 'put', key: 'ttl:a', value: '1', ttl: '1' }), true);
    const listed = (await kv({ op: 'list', prefix: 'ttl:' })) as { keys: { key: string }[] };
    assert.deepEqual(
      listed.keys.map((k) => k.key),
      ['ttl:a'],
    );
    await new Promise((resolve) => setTimeout(resolve, 2100));
    assert.deepEqual(await kv({ op: 'get', key: 'ttl:a' }), { value: null });
    assert.deepEqual((await kv({ op: 'list', prefix: 'ttl:' })) as unknown, { keys: [] });
  });

  void test('a call after its invocation answered is refused: nothing is written', async () => {
    assert.equal((await t.request.get('/late')).text, 'answered');
    assert.equal((await t.request.get('/late').query({ control: '1' })).text, 'answered');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual((await t.request.get('/late').query({ check: 'late' })).body, { value: null });
    assert.deepEqual((await t.request.get('/late').query({ check: 'control' })).body, { value: 1 });
  });

  void test('the effect ledger: writes and non-GET fetches mark the record, reads do not', async () => {
    const ids = {
      read: 'ledger-read',
      write: 'ledger-write',
      get: 'ledger-get',
      post: 'ledger-post',
    };
    await t.request.get('/kv').query({ op: 'get', key: 'x' }).set('X-Request-Id', ids.read);
    await t.request
      .get('/kv')
      .query({ op: 'put', key: 'x', value: '1' })
      .set('X-Request-Id', ids.write);
    await t.request.get('/fetcher').query({ url: upstreamUrl }).set('X-Request-Id', ids.get);
    await t.request
      .get('/fetcher')
      .query({ url: upstreamUrl, method: 'POST', body: 'b' })
      .set('X-Request-Id', ids.post);
    const effects: Record<string, unknown> = {};
    for (const [what, id] of Object.entries(ids)) {
      effects[what] = (await t.request.get(`/_/invocations/${id}`).set(AUTH)).body.effects;
    }
    assert.deepEqual(effects, { read: false, write: true, get: false, post: true });
  });

  void test('a file’s top level gets no service while it loads: nothing is sent', async () => {
    const source = FUNCTIONS['top-level'].replace('UPSTREAM', upstreamUrl);
    await t.writeFunction('top-level', source);
    seen.length = 0;
    let res = await t.request.get('/top-level');
    for (let i = 0; i < 40 && res.status === 404; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      res = await t.request.get('/top-level');
    }
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { value: null });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(seen, [], 'the upstream server got no request from a load');
    // The same fetch from inside the function is served (the control).
    await t.request.get('/fetcher').query({ url: `${upstreamUrl}/from-function` });
    assert.deepEqual(seen, ['/from-function']);
  });

  void test('fetch to an allowed local server: status, headers, JSON, POST body', async () => {
    const get = await t.request.get('/fetcher').query({ url: `${upstreamUrl}/path?q=1` });
    assert.deepEqual(get.body, {
      status: 200,
      ok: true,
      echo: { method: 'GET', url: '/path?q=1', test: 'yes', body: '' },
      header: 'upstream',
    });
    const post = await t.request
      .get('/fetcher')
      .query({ url: upstreamUrl, method: 'POST', body: 'payload é' });
    assert.equal(post.body.echo.method, 'POST');
    assert.equal(post.body.echo.body, 'payload é');
  });

  void test('fetch to loopback not in EGRESS_ALLOW, or to the server itself, is a TypeError', async () => {
    const serverPort = new URL(t.url).port;
    for (const url of [
      `http://127.0.0.1:${serverPort}/visits`,
      `http://localhost:${serverPort}/visits`,
      'http://127.0.0.2:9/',
      'http://[::1]:9/',
    ]) {
      const res = await t.request.get('/fetcher').query({ url });
      assert.equal(res.body.error, 'TypeError', url);
      assert.match(res.body.message, /fetch failed/, url);
    }
  });

  void test('secrets: declared ones reach context.secrets, never a log line, a record or an answer', async () => {
    const value = 'sk_live_0123456789abcdef';
    assert.equal((await t.request.put('/_/secrets/API_KEY').set(AUTH).send(value)).status, 201);
    await t.request.put('/_/secrets/OTHER').set(AUTH).send('other-value');
    const res = await t.request.get('/secrets').set('X-Request-Id', 'secret-call');
    assert.deepEqual(res.body, {
      key: value,
      missing: false,
      other: false,
      env: { STAGE: 'test' },
    });
    const record = (await t.request.get('/_/invocations/secret-call').set(AUTH)).body;
    assert.ok(JSON.stringify(record).includes('[secret]'), JSON.stringify(record));
    assert.equal(JSON.stringify(record).includes(value), false);
    assert.equal(JSON.stringify(t.logs).includes(value), false, 'no log line holds the value');
    const thrown = await t.request.get('/secrets').query({ throw: '1' });
    assert.equal(thrown.status, 500);
    assert.equal(thrown.text.includes(value), false);
    assert.match(thrown.body.error.message, /\[secret\]/);
    const list = await t.request.get('/_/secrets').set(AUTH);
    assert.equal(JSON.stringify(list.body).includes(value), false);
    assert.deepEqual((list.body.secrets as { name: string }[]).map((s) => s.name).sort(), [
      'API_KEY',
      'OTHER',
    ]);
    // A function that declares none gets an empty, frozen context.secrets.
    assert.deepEqual((await t.request.get('/nosecrets')).body, { secrets: [] });
  });

  void test('the data survives a restart of the server (SQLite in DATA_DIR)', async () => {
    const before = (await t.request.get('/visits')).body.visits as number;
    const second = await startServer({ functions: FUNCTIONS, env: { DATA_DIR: dataDir } });
    try {
      assert.equal((await second.request.get('/visits')).body.visits, before + 1);
    } finally {
      await second.close();
    }
  });
});

void describe('services in context on Redis (REDIS_URL), end to end', () => {
  let redis: TestRedis | undefined;
  let t: TestServer | undefined;
  before(async () => {
    if (REDIS_MISSING) return;
    redis = await startRedis();
    t = await startServer({ functions: FUNCTIONS, env: { REDIS_URL: redis.url } });
  });
  after(async () => {
    await t?.close();
    await redis?.close();
  });

  void test(
    '50 concurrent incr on both workers → exactly 1…50; /_/health names the backend; metrics count the calls',
    { skip: REDIS_MISSING },
    async () => {
      const server = t as TestServer;
      const answers = await Promise.all(
        Array.from({ length: 50 }, () => server.request.get('/visits')),
      );
      const values = answers
        .map((r) => (r.body as { visits: number }).visits)
        .sort((a, b) => a - b);
      assert.deepEqual(
        values,
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      assert.equal((await server.request.get('/_/health')).body.kv, 'redis');
      const metrics = (await server.request.get('/_/metrics')).text;
      assert.match(
        metrics,
        /faas_service_calls_total\{op="kv\.incr",backend="redis",outcome="ok"\} 50/,
      );
    },
  );
});
