/**
 * Abuse suite: functions that burn CPU, memory, the event loop, the console, timers
 * and the queue. Each case asserts the exact answer (status and error code) and that a control
 * function still answers 200 afterwards; the pool must stay at full strength and never re-run
 * or hang a request.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import { isAlive } from '../support/system';
import { eventually, sleep } from '../support/wait';
import type { TestServer } from '../support/server';
import type { Response } from 'supertest';

const HELLO = "(event, context) => {\n  return { message: 'it works!', status: 'ok' };\n};\n";
const TIMEOUT_MS = 1000;
function assertError(res: Response, status: number, code: string, type?: string): void {
  assert.equal(res.status, status, res.text);
  assert.match(res.headers['content-type'], /^application\/json/);
  assert.equal(res.body.error.code, code, res.text);
  assert.equal(typeof res.body.requestId, 'string');
  assert.equal(res.body.requestId, res.headers['x-request-id']);
  assert.equal(res.body.error.stack, undefined);
  if (type !== undefined) assert.equal(res.body.error.type, type, res.text);
}

async function assertHelloOk(t: TestServer): Promise<void> {
  const res = await t.request.get('/hello');
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, '{"message":"it works!","status":"ok"}');
}

/** Console lines the server logged for one request. */
function consoleLines(t: TestServer, requestId: string): Record<string, unknown>[] {
  return t.logs.filter((l) => l.msg === 'function console' && l.reqId === requestId);
}

const FUNCTIONS: Record<string, string> = {
  hello: HELLO,
  'sync-loop': '() => { while (1) {} }',
  'async-loop': 'async () => { await null; while (1) {} }',
  // Each step drops its promise. The chained form (`() => Promise.resolve().then(loop)`) also
  // grows the heap, and at 64 MB it dies of memory (502) before its timeout: a memory bomb.
  microtasks: '() => { const loop = () => { Promise.resolve().then(loop); }; loop(); }',
  'never-settles': '() => new Promise(() => {})',
  // The bombs and the flood get time to reach the heap limit (or finish) on a loaded machine: a
  // timeout would answer 504 first.
  'bomb-arrays':
    'module.exports = () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)); };\n' +
    'module.exports.config = { timeoutMs: 20000 };',
  // Each doubling is flattened (indexOf reads it), so the bytes are really allocated; a bare
  // `s = s + s` builds a rope and ends in RangeError (see 'string-rope' below).
  'bomb-string':
    "module.exports = () => { let s = 'x'.repeat(1 << 20); const keep = []; for (;;) { s = s + s; s.indexOf('y'); keep.push(s); } };\n" +
    'module.exports.config = { timeoutMs: 20000 };',
  'string-rope': "() => { let s = 'x'; for (;;) s = s + s; }",
  slow: "async () => { await new Promise((resolve) => setTimeout(resolve, 400)); return 'slow ok'; }",
  recursion: '() => { const f = () => f(); f(); }',
  'giant-result': "() => 'x'.repeat(7 * 1024 * 1024)",
  'returns-function': '() => () => 1',
  'returns-symbol': "() => Symbol('s')",
  'returns-bigint': '() => 10n',
  'returns-circular': '() => { const o = { a: 1 }; o.self = o; return o; }',
  'returns-nested-bigint': '() => ({ ok: true, n: { big: 1n } })',
  'resolves-function': 'async () => () => 1',
  'console-flood':
    "module.exports = (event, context) => { for (let i = 0; i < 100000; i++) console.log('flood line ' + i); return 'flooded'; };\n" +
    'module.exports.config = { timeoutMs: 20000 };',
  'timer-storm':
    "() => { for (let i = 0; i < 100000; i++) setTimeout(() => {}, 60000); return 'scheduled'; }",
  'late-timer':
    "(event, context) => { setTimeout(() => console.log('LATE ' + context.requestId), 50); console.log('EARLY ' + context.requestId); return 'returned'; }",
  'throw-string': "() => { throw 'x'; }",
  'throw-null': '() => { throw null; }',
  'throw-undefined': '() => { throw undefined; }',
  'throw-object': '() => { throw {}; }',
  'reject-number': '() => Promise.reject(42)',
};

describe('a server with WORKER_MEMORY_MB=64', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ functions: FUNCTIONS, env: { WORKER_MEMORY_MB: '64' } });
  });
  after(() => t.close());

  describe('runaway CPU', () => {
    for (const name of ['sync-loop', 'async-loop', 'microtasks']) {
      test(`${name} → 504 FUNCTION_TIMEOUT`, async () => {
        const started = performance.now();
        const res = await t.request.get(`/${name}`);
        const ms = performance.now() - started;
        assertError(res, 504, 'FUNCTION_TIMEOUT');
        assert.match(res.body.error.message, new RegExp(`'${name}' exceeded its ${TIMEOUT_MS} ms`));
        assert.ok(ms >= TIMEOUT_MS - 50 && ms < TIMEOUT_MS + 1500, `answered after ${ms} ms`);
        await assertHelloOk(t);
        await eventually(async () => t.server.pool.stats().workers === 2);
      });
    }

    test('a never-settling promise → 504 without killing its worker', async () => {
      // Let replacements from earlier kills settle first.
      await eventually(async () => t.server.pool.stats().workers === 2);
      const pids = t.server.pool.pids().sort();
      const res = await t.request.get('/never-settles');
      assertError(res, 504, 'FUNCTION_TIMEOUT');
      await sleep(300);
      assert.deepEqual(t.server.pool.pids().sort(), pids);
      for (const pid of pids) assert.ok(isAlive(pid));
      await assertHelloOk(t);
    });

    test('deep recursion → 500 FUNCTION_ERROR RangeError', async () => {
      const res = await t.request.get('/recursion');
      assertError(res, 500, 'FUNCTION_ERROR', 'RangeError');
      assert.match(res.body.error.message, /Maximum call stack size exceeded/);
      await assertHelloOk(t);
    });
  });

  describe('memory bombs', () => {
    for (const name of ['bomb-arrays', 'bomb-string']) {
      test(`${name} → 502 WORKER_CRASHED for that request only; the pool refills`, async () => {
        await eventually(async () => t.server.pool.stats().workers === 2);
        const restarts = t.server.pool.stats().restarts;
        const bomb = t.request.get(`/${name}`).then((res) => res);
        // Sent once the bomb is on its worker, so the least-loaded choice puts it on the other.
        await sleep(50);
        const healthy = await t.request.get('/slow');
        const res = await bomb;
        assertError(res, 502, 'WORKER_CRASHED');
        assert.equal(healthy.status, 200, healthy.text);
        assert.equal(healthy.text, 'slow ok');
        await eventually(async () => t.server.pool.stats().workers === 2, 5000);
        assert.equal(t.server.pool.stats().restarts, restarts + 1);
        const exit = t.logs.filter((l) => l.msg === 'worker exited').at(-1);
        assert.equal(exit?.reason, 'memory');
        await assertHelloOk(t);
      });
    }

    test('string doubling without flattening hits the string length limit → 500 RangeError', async () => {
      // Safe, and different from a crash: V8's ropes make `s = s + s` cheap, so the maximum
      // string length is reached long before the heap limit.
      const restarts = t.server.pool.stats().restarts;
      const res = await t.request.get('/string-rope');
      assertError(res, 500, 'FUNCTION_ERROR', 'RangeError');
      assert.match(res.body.error.message, /Invalid string length/);
      assert.equal(t.server.pool.stats().restarts, restarts);
      await assertHelloOk(t);
    });
  });

  describe('results that cannot be sent', () => {
    test('a 7 MB result → 500 INVALID_RESULT (MAX_RESULT_BYTES 6mb)', async () => {
      const res = await t.request.get('/giant-result');
      assertError(res, 500, 'INVALID_RESULT');
      assert.match(res.body.error.message, /7340032 bytes; at most 6291456/);
      await assertHelloOk(t);
    });

    for (const name of [
      'returns-function',
      'returns-symbol',
      'returns-bigint',
      'returns-circular',
      'returns-nested-bigint',
      'resolves-function',
    ]) {
      test(`${name} → 500 INVALID_RESULT`, async () => {
        const res = await t.request.get(`/${name}`);
        assertError(res, 500, 'INVALID_RESULT');
        await assertHelloOk(t);
      });
    }
  });

  describe('non-Error throws are failures', () => {
    for (const [name, shown] of [
      ['throw-string', 'x'],
      ['throw-null', 'null'],
      ['throw-undefined', 'undefined'],
      ['throw-object', '{}'],
      ['reject-number', '42'],
    ]) {
      test(`${name} → 500 FUNCTION_ERROR`, async () => {
        const res = await t.request.get(`/${name}`);
        assertError(res, 500, 'FUNCTION_ERROR', 'Error');
        assert.equal(res.body.error.message, `the function threw a non-Error value: ${shown}`);
        await assertHelloOk(t);
      });
    }
  });

  describe('console and timers', () => {
    test('a console flood answers 200 and its log is truncated with one notice', async () => {
      const res = await t.request.get('/console-flood');
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, 'flooded');
      const lines = consoleLines(t, res.headers['x-request-id']);
      const notices = lines.filter((l) => /truncated/.test(String(l.console)));
      assert.equal(notices.length, 1);
      assert.equal(lines.at(-1), notices[0]);
      assert.ok(lines.length > 100 && lines.length < 100000, `${lines.length} lines kept`);
      const bytes = lines.reduce((sum, l) => sum + String(l.console).length, 0);
      assert.ok(bytes <= 64 * 1024 + 100, `${bytes} bytes of console kept`);
      await assertHelloOk(t);
    });

    test('a timer storm → 500 FUNCTION_ERROR RangeError, then the next call is fine', async () => {
      const restarts = t.server.pool.stats().restarts;
      const res = await t.request.get('/timer-storm');
      assertError(res, 500, 'FUNCTION_ERROR', 'RangeError');
      assert.match(res.body.error.message, /too many pending timers/);
      assert.equal(t.server.pool.stats().restarts, restarts);
      await assertHelloOk(t);
      // The same function again: its timers were cleared with its first invocation.
      assertError(await t.request.get('/timer-storm'), 500, 'FUNCTION_ERROR', 'RangeError');
    });

    test('a timer left behind never runs after the invocation ended', async () => {
      const res = await t.request.get('/late-timer');
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, 'returned');
      const id = res.headers['x-request-id'];
      await sleep(300);
      const lines = t.logs.filter((l) => String(l.console).includes(id)).map((l) => l.console);
      // The EARLY line proves the search would find the LATE one.
      assert.deepEqual(lines, [`EARLY ${id}`]);
      await assertHelloOk(t);
    });
  });
});

describe('a server with MAX_QUEUE=2 and MAX_RESULT_BYTES=1kb', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      functions: {
        hello: HELLO,
        wait: "async () => { await new Promise((resolve) => setTimeout(resolve, 500)); return 'waited'; }",
        '2kb': "() => 'y'.repeat(2048)",
        '1kb': "() => 'y'.repeat(1000)",
      },
      env: { MAX_QUEUE: '2', MAX_RESULT_BYTES: '1kb' },
    });
  });
  after(() => t.close());

  test('a 2 kB result → 500 INVALID_RESULT; 1000 bytes pass', async () => {
    const res = await t.request.get('/2kb');
    assertError(res, 500, 'INVALID_RESULT');
    assert.match(res.body.error.message, /2048 bytes; at most 1024/);
    const ok = await t.request.get('/1kb');
    assert.equal(ok.status, 200);
    assert.equal(ok.text.length, 1000);
    await assertHelloOk(t);
  });

  // One function floods a 2-place queue: past its fair share (half the queue) it gets 429, past a
  // full queue anyone gets 503; both come with Retry-After.
  test('100 concurrent requests: some 503 OVERLOADED or 429 (fair share) with Retry-After, the rest 200, none hang', async () => {
    const started = performance.now();
    const responses = await Promise.all(
      Array.from({ length: 100 }, () => t.request.get('/wait').timeout(10_000)),
    );
    const ms = performance.now() - started;
    const ok = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 503 || r.status === 429);
    assert.equal(ok.length + refused.length, 100, responses.map((r) => r.status).join(','));
    assert.ok(ok.length > 0, 'none succeeded');
    assert.ok(refused.length > 0, 'none was refused');
    for (const r of ok) assert.equal(r.text, 'waited');
    for (const r of refused) {
      if (r.status === 503) assertError(r, 503, 'OVERLOADED');
      else assertError(r, 429, 'TOO_MANY_REQUESTS');
      assert.equal(r.headers['retry-after'], '1');
    }
    assert.ok(ms < 5000, `took ${ms} ms`);
    assert.equal(t.server.pool.stats().queued, 0);
    await eventually(async () => t.server.pool.stats().running === 0);
    await assertHelloOk(t);
  });
});
