/**
 * Every KV key is reachable through the admin API by a client that parses URLs as browsers do,
 * and no per-key request ever becomes a namespace operation (docs/spec.md §6). Node's global
 * fetch (undici) parses URLs by the WHATWG standard, as the console's browser does: it turns
 * `/_/kv/fn/%2E` into `/_/kv/fn/` and `/_/kv/fn/..` into `/_/kv/`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const TOKEN = 'kv-keys-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const KEYS = ['.', '..', '...', 'a', 'b', 'c/d', '?q', '#h', '%2E', ' ', 'é'];

describe('KV keys over a WHATWG URL client', () => {
  let t: TestServer;
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${t.url}${path}`, {
      method,
      headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
  };
  const q = (key: string) => `?key=${encodeURIComponent(key)}`;

  before(async () => {
    t = await startServer({ env: { ADMIN_TOKEN: TOKEN } });
  });
  after(() => t?.close());

  test('eleven keys, "." and ".." among them: each written, read and deleted alone', async () => {
    for (const key of KEYS) {
      const put = await call('PUT', `/_/kv/fn${q(key)}`, { key });
      assert.deepEqual(put, { status: 200, body: { written: true } }, key);
    }
    const list = (await call('GET', '/_/kv/fn')).body as { keys: { key: string }[] };
    assert.deepEqual(list.keys.map((k) => k.key).sort(), [...KEYS].sort());
    for (const key of KEYS) {
      assert.deepEqual(await call('GET', `/_/kv/fn${q(key)}`), { status: 200, body: { key } });
    }

    // The console's old per-key delete of ".": the client sends /_/kv/fn/ — refused, not "all".
    const normalised = await call('DELETE', '/_/kv/fn/%2E');
    assert.equal(normalised.status, 400, JSON.stringify(normalised.body));
    assert.match(JSON.stringify(normalised.body), /KV_INVALID_KEY/);
    const dotdot = await call('DELETE', '/_/kv/fn/..');
    assert.ok(dotdot.status >= 400 && dotdot.status < 500, JSON.stringify(dotdot));
    assert.equal(
      ((await call('GET', '/_/kv/fn')).body as { keys: unknown[] }).keys.length,
      KEYS.length,
      'nothing was cleared',
    );

    // Deleting "." deletes exactly that key.
    assert.deepEqual(await call('DELETE', `/_/kv/fn${q('.')}`), {
      status: 200,
      body: { deleted: true },
    });
    assert.equal((await call('GET', `/_/kv/fn${q('.')}`)).status, 404);
    assert.deepEqual(await call('GET', `/_/kv/fn${q('..')}`), {
      status: 200,
      body: { key: '..' },
    });
    const rest = (await call('GET', '/_/kv/fn')).body as { keys: { key: string }[] };
    assert.deepEqual(rest.keys.map((k) => k.key).sort(), KEYS.filter((k) => k !== '.').sort());
    assert.deepEqual(await call('DELETE', `/_/kv/fn${q('..')}`), {
      status: 200,
      body: { deleted: true },
    });

    // A clear is explicit.
    assert.deepEqual(await call('DELETE', '/_/kv/fn?all=true'), {
      status: 200,
      body: { deleted: KEYS.length - 2 },
    });
  });

  test('?key= names the whole path as the function: nested names, no traversal', async () => {
    await call('PUT', `/_/kv/a/b${q('k')}`, 1);
    assert.deepEqual(await call('GET', `/_/kv/a/b${q('k')}`), { status: 200, body: 1 });
    assert.deepEqual(await call('GET', `/_/kv/a/b/${q('k')}`), { status: 200, body: 1 });
    assert.equal((await call('GET', `/_/kv/a${q('k')}`)).status, 404);
    // A key that looks like a path stays a key of its own function.
    await call('PUT', `/_/kv/a${q('../b/k')}`, 2);
    assert.deepEqual(await call('GET', `/_/kv/a/b${q('k')}`), { status: 200, body: 1 });
    assert.deepEqual(await call('GET', `/_/kv/a${q('../b/k')}`), { status: 200, body: 2 });
  });

  test('X-Request-Id "." or "..", which no URL could name, is replaced by a new id', async () => {
    for (const id of ['.', '..']) {
      const res = await fetch(`${t.url}/_/health`, { headers: { 'x-request-id': id } });
      assert.match(String(res.headers.get('x-request-id')), /^[0-9a-f-]{36}$/, id);
    }
    const kept = await fetch(`${t.url}/_/health`, { headers: { 'x-request-id': '...' } });
    assert.equal(kept.headers.get('x-request-id'), '...');
  });

  test('a ttl over 10 years: KV_INVALID_ARGUMENT, the message says the range', async () => {
    const res = await call('PUT', `/_/kv/fn${q('t')}&ttl=315360001`, 1);
    assert.equal(res.status, 400);
    const error = (res.body as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'KV_INVALID_ARGUMENT');
    assert.match(error.message, /from 1 to 315360000 \(10 years\)/);
  });
});
