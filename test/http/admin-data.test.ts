/**
 * The /_/kv and /_/secrets admin routes (src/http/admin/data.ts) through a real Koa app with the
 * server's own error boundary, body reader and token check, over a SQLite store in a temp folder.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import Router from '@koa/router';
import Koa from 'koa';
import supertest from 'supertest';
import { requireToken } from '../../src/http/admin/auth';
import { dataRoutes } from '../../src/http/admin/data';
import { body } from '../../src/http/body';
import { errorBoundary } from '../../src/http/error-handler';
import { createLogger } from '../../src/observe/logger';
import { createStores } from '../../src/services/kv';
import type { Stores } from '../../src/services/kv';

const TOKEN = 'test-token';
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kf-admin-data-'));
let stores: Stores;
let request: ReturnType<typeof supertest>;

before(async () => {
  stores = await createStores({ dataDir, kvMaxValue: 1024, kvMaxBytes: 64 * 1024 });
  const app = new Koa();
  app.use(errorBoundary(createLogger({ level: 'silent' })));
  app.use(body({ maxBodyBytes: 1024 * 1024, maxDeployBytes: 1024 * 1024 }));
  const router = new Router({ prefix: '/_' });
  dataRoutes(router, stores, requireToken(TOKEN));
  app.use(router.routes());
  request = supertest(app.callback());
});
after(async () => {
  await stores.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const auth = { Authorization: `Bearer ${TOKEN}` };

test('every route needs the token', async () => {
  const routes: [string, string][] = [
    ['get', '/_/kv/fn'],
    ['get', '/_/kv/fn/k'],
    ['put', '/_/kv/fn/k'],
    ['delete', '/_/kv/fn/k'],
    ['delete', '/_/kv/fn?all=true'],
    ['get', '/_/kv/fn?key=.'],
    ['get', '/_/secrets'],
    ['put', '/_/secrets/A'],
    ['delete', '/_/secrets/A'],
  ];
  for (const [method, url] of routes) {
    const res = await request[method as 'get'](url);
    assert.equal(res.status, 401, `${method} ${url}`);
    assert.equal(res.body.error.code, 'UNAUTHORIZED');
  }
});

test('kv: put, get, list, delete, clear; the key is the last segment, URL-encoded', async () => {
  const cases = [
    { fn: 'hello', key: 'plain' },
    { fn: 'hello', key: 'a/b c?&%' },
    { fn: 'a/b', key: 'k' },
    { fn: 'a/b/c', key: 'ü😀' },
  ];
  for (const { fn, key } of cases) {
    const url = `/_/kv/${fn}/${encodeURIComponent(key)}`;
    const put = await request.put(url).set(auth).send({ fn, key });
    assert.equal(put.status, 200, url);
    assert.deepEqual(put.body, { written: true });
    const got = await request.get(url).set(auth);
    assert.equal(got.status, 200);
    assert.match(got.headers['content-type'], /application\/json/);
    assert.deepEqual(got.body, { fn, key });
    assert.equal(await stores.kv.get(fn, key), JSON.stringify({ fn, key }));
  }
  // Namespace routes: a one-segment name as is, a nested one with a trailing slash.
  const hello = await request.get('/_/kv/hello').set(auth);
  assert.deepEqual(hello.body, { keys: [{ key: 'a/b c?&%' }, { key: 'plain' }] });
  const nested = await request.get('/_/kv/a/b/').set(auth);
  assert.deepEqual(nested.body, { keys: [{ key: 'k' }] });
  // `/_/kv/a/b` is key b of function a: absent.
  const keyB = await request.get('/_/kv/a/b').set(auth);
  assert.equal(keyB.status, 404);
  assert.equal(keyB.body.error.code, 'NOT_FOUND');

  const del = await request.delete(`/_/kv/hello/plain`).set(auth);
  assert.deepEqual(del.body, { deleted: true });
  const again = await request.delete(`/_/kv/hello/plain`).set(auth);
  assert.deepEqual(again.body, { deleted: false });
  // Clearing a namespace is explicit (?all=true): never what a per-key URL normalised into.
  const cleared = await request.delete('/_/kv/a/b/c/?all=true').set(auth);
  assert.deepEqual(cleared.body, { deleted: 1 });
  assert.equal(await stores.kv.get('a/b', 'k'), '{"fn":"a/b","key":"k"}');
});

test('kv: list pages, ttl and ifAbsent through the query', async () => {
  for (let i = 0; i < 5; i++) await stores.kv.put('pages', `k${i}`, String(i));
  const first = await request.get('/_/kv/pages?limit=2&prefix=k').set(auth);
  assert.deepEqual(first.body.keys, [{ key: 'k0' }, { key: 'k1' }]);
  const second = await request
    .get(`/_/kv/pages?limit=2&prefix=k&cursor=${first.body.cursor as string}`)
    .set(auth);
  assert.deepEqual(second.body.keys, [{ key: 'k2' }, { key: 'k3' }]);
  const put = await request.put('/_/kv/pages/t?ttl=60').set(auth).send([1]);
  assert.equal(put.status, 200);
  const listed = await request.get('/_/kv/pages?prefix=t').set(auth);
  assert.ok(listed.body.keys[0].expiresAt > Date.now() + 50_000);
  const absent = await request.put('/_/kv/pages/t?ifAbsent=true').set(auth).send([2]);
  assert.deepEqual(absent.body, { written: false });
});

test('kv: each bad request gives its code and status', async () => {
  const cases: { what: string; run: () => supertest.Test; status: number; code: string }[] = [
    {
      what: 'bad name',
      run: () => request.get('/_/kv/..%2F/k').set(auth),
      status: 400,
      code: 'INVALID_FUNCTION_NAME',
    },
    {
      what: 'bad escape',
      run: () => request.get('/_/kv/fn/%E0%A4%A').set(auth),
      status: 400,
      code: 'KV_INVALID_KEY',
    },
    {
      what: 'long key',
      run: () => request.get(`/_/kv/fn/${'k'.repeat(513)}`).set(auth),
      status: 400,
      code: 'KV_INVALID_KEY',
    },
    {
      what: 'no key on PUT',
      run: () => request.put('/_/kv/fn').set(auth).send({}),
      status: 400,
      code: 'KV_INVALID_KEY',
    },
    {
      what: 'text body',
      run: () => request.put('/_/kv/fn/k').set(auth).type('text').send('x'),
      status: 400,
      code: 'INVALID_BODY',
    },
    {
      what: 'no body',
      run: () => request.put('/_/kv/fn/k').set(auth),
      status: 400,
      code: 'INVALID_BODY',
    },
    {
      what: 'big value',
      run: () =>
        request
          .put('/_/kv/fn/k')
          .set(auth)
          .send({ v: 'x'.repeat(1100) }),
      status: 413,
      code: 'KV_VALUE_TOO_LARGE',
    },
    {
      what: 'ttl 0',
      run: () => request.put('/_/kv/fn/k?ttl=0').set(auth).send([1]),
      status: 400,
      code: 'KV_INVALID_ARGUMENT',
    },
    {
      what: 'ttl text',
      run: () => request.put('/_/kv/fn/k?ttl=soon').set(auth).send([1]),
      status: 400,
      code: 'KV_INVALID_ARGUMENT',
    },
    {
      what: 'ttl over 10 years',
      run: () => request.put('/_/kv/fn/k?ttl=315360001').set(auth).send([1]),
      status: 400,
      code: 'KV_INVALID_ARGUMENT',
    },
    {
      what: 'ifAbsent maybe',
      run: () => request.put('/_/kv/fn/k?ifAbsent=maybe').set(auth).send([1]),
      status: 400,
      code: 'KV_INVALID_ARGUMENT',
    },
    {
      what: 'a namespace DELETE without ?all=true',
      run: () => request.delete('/_/kv/fn').set(auth),
      status: 400,
      code: 'KV_INVALID_KEY',
    },
    {
      what: 'DELETE with both ?key and ?all',
      run: () => request.delete('/_/kv/fn?key=k&all=true').set(auth),
      status: 400,
      code: 'KV_INVALID_ARGUMENT',
    },
    {
      what: 'an empty ?key=',
      run: () => request.get('/_/kv/fn?key=').set(auth),
      status: 400,
      code: 'KV_INVALID_KEY',
    },
    {
      what: 'limit 5000',
      run: () => request.get('/_/kv/fn?limit=5000').set(auth),
      status: 400,
      code: 'KV_INVALID_ARGUMENT',
    },
    {
      what: 'bad cursor',
      run: () => request.get('/_/kv/fn?cursor=***').set(auth),
      status: 400,
      code: 'KV_INVALID_ARGUMENT',
    },
  ];
  for (const row of cases) {
    const res = await row.run();
    assert.equal(res.status, row.status, `${row.what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, row.code, row.what);
    assert.equal(typeof res.body.requestId, 'string');
  }
});

test('secrets: put (201 then 200), list without values, delete (204 then 404)', async () => {
  const value = 'sk_live_ü€ "quoted" & a=b\n';
  const created = await request.put('/_/secrets/STRIPE_KEY').set(auth).type('text').send(value);
  assert.equal(created.status, 201);
  assert.deepEqual(created.body, { name: 'STRIPE_KEY', created: true });
  // A form-typed body is stored as its bytes, not parsed.
  const replaced = await request
    .put('/_/secrets/STRIPE_KEY')
    .set(auth)
    .type('form')
    .send('a=b&c=d');
  assert.equal(replaced.status, 200);
  assert.deepEqual(await stores.secrets.values(['STRIPE_KEY']), { STRIPE_KEY: 'a=b&c=d' });
  await request.put('/_/secrets/OTHER').set(auth).type('text').send(value);
  assert.deepEqual(await stores.secrets.values(['OTHER']), { OTHER: value });
  const list = await request.get('/_/secrets').set(auth);
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.secrets.map((s: { name: string }) => s.name),
    ['OTHER', 'STRIPE_KEY'],
  );
  assert.equal(list.text.includes('a=b') || list.text.includes('sk_live'), false);
  assert.equal((await request.delete('/_/secrets/OTHER').set(auth)).status, 204);
  const gone = await request.delete('/_/secrets/OTHER').set(auth);
  assert.equal(gone.status, 404);
  assert.equal(gone.body.error.code, 'NOT_FOUND');
});

test('secrets: bad names and values give their codes', async () => {
  const cases: { what: string; run: () => supertest.Test; status: number; code: string }[] = [
    {
      what: 'dash',
      run: () => request.put('/_/secrets/A-B').set(auth).type('text').send('v'),
      status: 400,
      code: 'INVALID_SECRET',
    },
    {
      what: 'digit first',
      run: () => request.put('/_/secrets/1A').set(auth).type('text').send('v'),
      status: 400,
      code: 'INVALID_SECRET',
    },
    {
      what: 'empty',
      run: () => request.put('/_/secrets/A').set(auth),
      status: 400,
      code: 'INVALID_SECRET',
    },
    {
      what: 'not UTF-8',
      run: () =>
        request
          .put('/_/secrets/A')
          .set(auth)
          .type('application/octet-stream')
          .send(Buffer.from([0xff, 0xfe])),
      status: 400,
      code: 'INVALID_SECRET',
    },
    {
      what: 'over 64 KiB',
      run: () => request.put('/_/secrets/A').set(auth).type('text').send('x'.repeat(65537)),
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
    },
    {
      what: 'delete bad name',
      run: () => request.delete('/_/secrets/a.b').set(auth),
      status: 400,
      code: 'INVALID_SECRET',
    },
  ];
  for (const row of cases) {
    const res = await row.run();
    assert.equal(res.status, row.status, `${row.what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, row.code, row.what);
  }
  // Nothing was written: only the previous test's secret is there.
  assert.deepEqual(
    (await stores.secrets.list()).map((s) => s.name),
    ['STRIPE_KEY'],
  );
});
