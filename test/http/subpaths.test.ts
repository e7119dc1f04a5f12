/**
 * Sub-paths (docs/spec.md §2): the longest prefix of the path that names an existing function gets the
 * request, `event.subpath` holds the rest, and finding it costs no file system call per request.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

const ECHO = `module.exports = (e, c) => ({ fn: c.functionName, path: e.path, subpath: e.subpath });\n`;

void describe('sub-paths', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      functions: { echo: ECHO, a: ECHO, 'a/b': ECHO, 'a/b/c/d': ECHO, index: ECHO },
    });
  });
  after(() => t.close());

  const cases: { path: string; fn: string; subpath: string }[] = [
    { path: '/echo', fn: 'echo', subpath: '' },
    { path: '/echo/', fn: 'echo', subpath: '' },
    { path: '/echo/users/42', fn: 'echo', subpath: '/users/42' },
    { path: '/echo/users/42/', fn: 'echo', subpath: '/users/42/' },
    { path: '/echo/file.tar.gz', fn: 'echo', subpath: '/file.tar.gz' },
    { path: '/echo/../x', fn: 'echo', subpath: '/../x' },
    { path: '/echo/%2e%2e/x', fn: 'echo', subpath: '/%2e%2e/x' },
    { path: '/echo/a%20b/%F0%9F%98%80', fn: 'echo', subpath: '/a%20b/%F0%9F%98%80' },
    { path: '/echo//double', fn: 'echo', subpath: '//double' },
    { path: '/a', fn: 'a', subpath: '' },
    { path: '/a/x', fn: 'a', subpath: '/x' },
    { path: '/a/b', fn: 'a/b', subpath: '' },
    { path: '/a/b/x/y', fn: 'a/b', subpath: '/x/y' },
    { path: '/a/b/c', fn: 'a/b', subpath: '/c' },
    { path: '/a/b/c/d', fn: 'a/b/c/d', subpath: '' },
    { path: '/a/b/c/d/e/f/g/h/i/j', fn: 'a/b/c/d', subpath: '/e/f/g/h/i/j' },
    { path: '/', fn: 'index', subpath: '' },
  ];
  for (const row of cases) {
    void test(`${row.path} → ${row.fn} with subpath ${JSON.stringify(row.subpath)}`, async () => {
      const res = await t.request.get(row.path);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, { fn: row.fn, path: row.path, subpath: row.subpath });
    });
  }

  void test('no prefix names a function → 404 naming what was tried; a bad first segment → 400', async () => {
    const res = await t.request.get('/nope/users/42');
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'FUNCTION_NOT_FOUND');
    assert.match(res.body.error.message, /'nope\/users\/42', 'nope\/users', 'nope'/);
    const single = await t.request.get('/nope');
    assert.equal(single.body.error.message, "function 'nope' not found");
    for (const bad of ['/..%2f/x', '/.env/x', '/a.js/x']) {
      const r = await t.request.get(bad);
      assert.equal(r.status, 400, bad);
      assert.equal(r.body.error.code, 'INVALID_FUNCTION_NAME');
    }
  });

  void test('a deeper function, once it exists, takes the paths under it', async () => {
    assert.deepEqual((await t.request.get('/echo/users/42')).body.fn, 'echo');
    await t.writeFunction('echo/users', ECHO);
    await eventually(async () => (await t.request.get('/echo/users/42')).body.fn === 'echo/users');
    const res = await t.request.get('/echo/users/42');
    assert.deepEqual(res.body, { fn: 'echo/users', path: '/echo/users/42', subpath: '/42' });
    await t.removeFunction('echo/users');
    await eventually(async () => (await t.request.get('/echo/users/42')).body.fn === 'echo');
  });

  void test('resolving sub-paths makes no file system call per request', async () => {
    const store = t.server.store;
    // Warm: the first request may look up names once.
    await t.request.get(`/echo/${randomUUID()}`);
    await t.request.get(`/a/b/${randomUUID()}`);
    const before = store.lookups;
    for (let i = 0; i < 50; i++) {
      // Every path is new: neither the miss cache nor the version cache has seen it.
      assert.equal((await t.request.get(`/echo/${randomUUID()}/x`)).status, 200);
      assert.equal((await t.request.get(`/a/${randomUUID()}`)).status, 200);
    }
    assert.equal(store.lookups, before, 'no folder echo/ or a/<uuid>/ exists: nothing to look up');
    // Under a folder that exists (a/b/c/), a new name is looked up once, then remembered.
    await t.request.get('/a/b/c/zzz');
    const once = store.lookups;
    for (let i = 0; i < 20; i++) await t.request.get('/a/b/c/zzz');
    assert.equal(store.lookups, once);
  });
});
