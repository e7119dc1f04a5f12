/**
 * Warm sandboxes against real workers: module-level state lives on between calls of one version
 * on one worker, resets with a new version, never leaks between functions; FUNCTION_ISOLATION=fresh
 * gives every call a new context; WARM_CONTEXTS bounds the LRU.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

// `id` is drawn once per context: it tells which warm context (so which worker) answered.
const COUNTER = `const id = Math.random().toString(36).slice(2);
let n = 0;
module.exports = async (event) => {
  const ms = Number(event.query.ms || 0);
  if (ms) await new Promise((resolve) => setTimeout(resolve, ms));
  n++;
  return { id, n };
};
`;

const FUNCTIONS: Record<string, string> = {
  counter: COUNTER,
  setter: `async (event) => {
    if (!event.query.read) globalThis.secret = 's3cr3t';
    await new Promise((resolve) => setTimeout(resolve, 150));
    return typeof secret;
  }`,
  reader: `async () => {
    await new Promise((resolve) => setTimeout(resolve, 150));
    return typeof secret + ' ' + typeof globalThis.secret;
  }`,
  polluter: `async () => {
    Object.prototype.polluted = 1;
    Array.prototype.evil = 2;
    String.prototype.shout = function () { return 'hacked'; };
    await new Promise((resolve) => setTimeout(resolve, 150));
    return [typeof ({}).polluted, typeof [].evil, typeof ''.shout].join(' ');
  }`,
  checker: `async (event) => {
    await new Promise((resolve) => setTimeout(resolve, 150));
    return [typeof ({}).polluted, typeof [].evil, typeof ''.shout, typeof event.polluted].join(' ');
  }`,
  loop: '() => { while (1) {} }',
  hello: "() => 'hi'",
};

interface Count {
  id: string;
  n: number;
}

async function counts(t: TestServer, path: string, calls: number, concurrent: boolean) {
  const out: Count[] = [];
  if (concurrent) {
    const results = await Promise.all(Array.from({ length: calls }, () => t.request.get(path)));
    for (const r of results) {
      assert.equal(r.status, 200, r.text);
      out.push(r.body as Count);
    }
  } else {
    for (let i = 0; i < calls; i++) {
      const r = await t.request.get(path);
      assert.equal(r.status, 200, r.text);
      out.push(r.body as Count);
    }
  }
  return out;
}

function byContext(results: Count[]): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  for (const { id, n } of results) groups.set(id, [...(groups.get(id) ?? []), n]);
  return groups;
}

/** The `cold` field of the one request log line of each request id. */
function coldFlags(t: TestServer, ids: string[]): unknown[] {
  return ids.map((id) => t.logs.find((l) => l.msg === 'request' && l.reqId === id)?.cold);
}

/** Two concurrent calls, one per worker (each waits 150 ms), with the given request ids. */
async function pair(t: TestServer, path: string, ids: [string, string]) {
  return Promise.all(ids.map((id) => t.request.get(path).set('X-Request-Id', id)));
}

void describe('warm isolation (default)', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ functions: FUNCTIONS });
  });
  after(() => t.close());

  void test('module-level state persists across calls of one version on each worker', async () => {
    const sequential = await counts(t, '/counter', 10, false);
    for (const [id, ns] of byContext(sequential)) {
      assert.deepEqual(
        ns,
        ns.map((_, i) => i + 1),
        `context ${id} counted ${ns.join(',')}`,
      );
    }
    // Ten concurrent calls spread over both workers; each context keeps counting where it was.
    const concurrent = await counts(t, '/counter?ms=100', 10, true);
    const groups = byContext([...sequential, ...concurrent]);
    // One context per worker: both were used, and neither built a second one.
    assert.equal(groups.size, 2, `${groups.size} contexts for one version on 2 workers`);
    let total = 0;
    for (const [id, ns] of groups) {
      const sorted = [...ns].sort((a, b) => a - b);
      assert.deepEqual(
        sorted,
        sorted.map((_, i) => i + 1),
        `context ${id} counted ${ns.join(',')}`,
      );
      total += sorted[sorted.length - 1];
    }
    assert.equal(total, 20);
  });

  void test('a new version of the file starts from fresh state', async () => {
    const before = await counts(t, '/counter?ms=100', 4, true);
    const oldIds = new Set(before.map((c) => c.id));
    assert.ok(
      before.every((c) => c.n > 1),
      'the old version is warm',
    );

    await t.writeFunction('counter', `${COUNTER}// version 2\n`);
    const first = await t.request.get('/counter');
    assert.equal(first.status, 200);
    assert.equal(first.body.n, 1);
    assert.ok(!oldIds.has(first.body.id), 'a new context');

    const next = await counts(t, '/counter?ms=100', 6, true);
    const groups = byContext([first.body as Count, ...next]);
    let total = 0;
    for (const [id, ns] of groups) {
      assert.ok(!oldIds.has(id));
      const sorted = [...ns].sort((a, b) => a - b);
      assert.deepEqual(
        sorted,
        sorted.map((_, i) => i + 1),
      );
      total += sorted[sorted.length - 1];
    }
    assert.equal(total, 7);
  });

  void test('two functions never see each other’s globals', async () => {
    // Four concurrent calls: the setter runs on both workers.
    const set = await Promise.all(Array.from({ length: 4 }, () => t.request.get('/setter')));
    for (const r of set) assert.equal(r.text, 'string');
    const read = await Promise.all(Array.from({ length: 4 }, () => t.request.get('/reader')));
    for (const r of read) assert.equal(r.text, 'undefined undefined');
    // The setter's own context still holds it: the global was really set, on both workers.
    const again = await Promise.all([
      t.request.get('/setter?read=1'),
      t.request.get('/setter?read=1'),
    ]);
    for (const r of again) assert.equal(r.text, 'string');
  });

  void test('prototype pollution in one function is invisible to another', async () => {
    const polluted = await Promise.all(Array.from({ length: 4 }, () => t.request.get('/polluter')));
    for (const r of polluted) assert.equal(r.text, 'number number function');
    const checked = await Promise.all(Array.from({ length: 4 }, () => t.request.get('/checker')));
    for (const r of checked) assert.equal(r.text, 'undefined undefined undefined undefined');
    // The host built the events and responses in between: it is unaffected too.
    const hello = await t.request.get('/hello');
    assert.equal(hello.status, 200);
    assert.equal(hello.text, 'hi');
  });
});

void describe('FUNCTION_ISOLATION=fresh', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ functions: FUNCTIONS, env: { FUNCTION_ISOLATION: 'fresh' } });
  });
  after(() => t.close());

  void test('every call gets a new context: the counter is always 1', async () => {
    const sequential = await counts(t, '/counter', 5, false);
    const concurrent = await counts(t, '/counter?ms=100', 6, true);
    const all = [...sequential, ...concurrent];
    assert.deepEqual(
      all.map((c) => c.n),
      Array(11).fill(1),
    );
    assert.equal(new Set(all.map((c) => c.id)).size, 11, 'eleven distinct contexts');
  });

  void test('every call is cold in the request log', async () => {
    const ids: [string, string] = [`fresh-${Date.now()}-a`, `fresh-${Date.now()}-b`];
    await pair(t, '/counter?ms=150', ids);
    assert.deepEqual(coldFlags(t, ids), [true, true]);
    const more: [string, string] = [`fresh-${Date.now()}-c`, `fresh-${Date.now()}-d`];
    await pair(t, '/counter?ms=150', more);
    assert.deepEqual(coldFlags(t, more), [true, true]);
  });

  void test('a synchronous loop still answers 504, and the pool serves on', async () => {
    const started = performance.now();
    const res = await t.request.get('/loop');
    const ms = performance.now() - started;
    assert.equal(res.status, 504);
    assert.equal(res.body.error.code, 'FUNCTION_TIMEOUT');
    assert.ok(ms >= 990 && ms < 1600, `answered after ${ms} ms`);
    await eventually(async () => t.server.pool.stats().workers === 2);
    const hello = await Promise.all([t.request.get('/hello'), t.request.get('/hello')]);
    for (const r of hello) assert.equal(r.text, 'hi');
  });

  void test('globals and prototypes do not persist, even within one function', async () => {
    await Promise.all([t.request.get('/setter'), t.request.get('/setter')]);
    const again = await Promise.all([
      t.request.get('/setter?read=1'),
      t.request.get('/setter?read=1'),
    ]);
    for (const r of again) assert.equal(r.text, 'undefined');
    await Promise.all([t.request.get('/polluter'), t.request.get('/polluter')]);
    const checked = await Promise.all([t.request.get('/checker'), t.request.get('/checker')]);
    for (const r of checked) assert.equal(r.text, 'undefined undefined undefined undefined');
  });
});

void describe('WARM_CONTEXTS=1', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      functions: { a: COUNTER, b: COUNTER.replace('let n = 0;', 'let n = 100;') },
      env: { WARM_CONTEXTS: '1' },
    });
  });
  after(() => t.close());

  void test('a, a stays warm on both workers', async () => {
    const stamp = Date.now();
    const first = await pair(t, '/a?ms=150', [`lru1-${stamp}-1`, `lru1-${stamp}-2`]);
    assert.deepEqual(
      first.map((r) => r.body.n),
      [1, 1],
    );
    const ids: [string, string] = [`lru1-${stamp}-3`, `lru1-${stamp}-4`];
    const second = await pair(t, '/a?ms=150', ids);
    assert.deepEqual(
      second.map((r) => r.body.n),
      [2, 2],
    );
    assert.deepEqual(coldFlags(t, ids), [false, false]);
  });

  void test('a, b, a: b evicts a, which starts cold again', async () => {
    const stamp = Date.now();
    const warm = await pair(t, '/a?ms=150', [`lru2-${stamp}-1`, `lru2-${stamp}-2`]);
    for (const r of warm) assert.equal(r.status, 200);
    const b = await pair(t, '/b?ms=150', [`lru2-${stamp}-3`, `lru2-${stamp}-4`]);
    for (const r of b) assert.ok(r.body.n > 100);
    const ids: [string, string] = [`lru2-${stamp}-5`, `lru2-${stamp}-6`];
    const again = await pair(t, '/a?ms=150', ids);
    assert.deepEqual(
      again.map((r) => r.body.n),
      [1, 1],
    );
    const warmIds = new Set(warm.map((r) => r.body.id));
    for (const r of again) assert.ok(!warmIds.has(r.body.id), 'a new context');
    assert.deepEqual(coldFlags(t, ids), [true, true]);
  });
});
