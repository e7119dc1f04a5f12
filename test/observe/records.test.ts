/**
 * Invocation records: the ring itself (eviction, lookups, queries, log capping), then the records
 * the real server writes for a success, a thrown error, a timeout and a worker crash, read back
 * through GET /_/invocations.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { InvocationRecords, IsoTime } from '../../src/observe/records';
import type { InvocationRecord } from '../../src/observe/records';
import { closeAndReap, startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

const TOKEN = 'records-token-for-tests-0123456789';
const AUTH = `Bearer ${TOKEN}`;

function record(requestId: string, overrides: Partial<InvocationRecord> = {}): InvocationRecord {
  return {
    requestId,
    function: 'fn',
    version: '0123456789abcdef',
    start: new Date().toISOString(),
    status: 200,
    outcome: 'ok',
    durationMs: { total: 1 },
    logs: [],
    ...overrides,
  };
}

const ids = (records: InvocationRecord[]) => records.map((r) => r.requestId);

describe('InvocationRecords', () => {
  test('keeps the last `max` records and forgets evicted ids', () => {
    const records = new InvocationRecords(3);
    for (let i = 1; i <= 5; i++) records.add(record(`r${i}`));
    assert.deepEqual(ids(records.query()), ['r5', 'r4', 'r3']);
    assert.equal(records.get('r1'), undefined);
    assert.equal(records.get('r2'), undefined);
    assert.equal(records.get('r3')?.requestId, 'r3');
    assert.equal(records.get('r5')?.requestId, 'r5');
    // Many more laps round the ring keep exactly `max`.
    for (let i = 6; i <= 100; i++) records.add(record(`r${i}`));
    assert.deepEqual(ids(records.query()), ['r100', 'r99', 'r98']);
    assert.equal(records.get('r97'), undefined);
  });

  test('a reused request id: evicting the older record keeps the newer one findable', () => {
    const records = new InvocationRecords(2);
    records.add(record('same', { status: 500 }));
    records.add(record('same', { status: 200 }));
    records.add(record('other')); // evicts the first 'same'
    assert.equal(records.get('same')?.status, 200);
    records.add(record('third')); // evicts the second 'same'
    assert.equal(records.get('same'), undefined);
  });

  test('max 0 keeps nothing', () => {
    const records = new InvocationRecords(0);
    records.add(record('r1'));
    assert.equal(records.get('r1'), undefined);
    assert.deepEqual(records.query(), []);
  });

  test('query: by function, by exact status and class, limit, newest first', () => {
    const records = new InvocationRecords(100);
    const rows: [string, string, number][] = [
      ['a1', 'a', 200],
      ['b1', 'b', 504],
      ['a2', 'a', 500],
      ['a3', 'a', 504],
      ['b2', 'b', 200],
      ['a4', 'a', 502],
      ['a5', 'a', 404],
      ['a6', 'a', 204],
    ];
    for (const [id, fn, status] of rows) records.add(record(id, { function: fn, status }));

    assert.deepEqual(ids(records.query()), ['a6', 'a5', 'a4', 'b2', 'a3', 'a2', 'b1', 'a1']);
    assert.deepEqual(ids(records.query({ fn: 'b' })), ['b2', 'b1']);
    assert.deepEqual(ids(records.query({ fn: 'nope' })), []);
    assert.deepEqual(ids(records.query({ status: '504' })), ['a3', 'b1']);
    assert.deepEqual(ids(records.query({ status: '5xx' })), ['a4', 'a3', 'a2', 'b1']);
    assert.deepEqual(ids(records.query({ status: '5XX' })), ['a4', 'a3', 'a2', 'b1']);
    assert.deepEqual(ids(records.query({ status: '2xx' })), ['a6', 'b2', 'a1']);
    assert.deepEqual(ids(records.query({ status: '4xx' })), ['a5']);
    assert.deepEqual(ids(records.query({ fn: 'a', status: '5xx' })), ['a4', 'a3', 'a2']);
    assert.deepEqual(ids(records.query({ fn: 'a', status: '5xx', limit: 2 })), ['a4', 'a3']);
    assert.deepEqual(ids(records.query({ limit: 1 })), ['a6']);
    assert.deepEqual(ids(records.query({ status: '' })).length, 8);
  });

  test('query on a ring that has wrapped is still newest first', () => {
    const records = new InvocationRecords(4);
    for (let i = 1; i <= 6; i++) records.add(record(`r${i}`, { status: i % 2 ? 500 : 200 }));
    assert.deepEqual(ids(records.query()), ['r6', 'r5', 'r4', 'r3']);
    assert.deepEqual(ids(records.query({ status: '5xx' })), ['r5', 'r3']);
  });

  test('console output is capped at 8 KiB per record, with a flag', () => {
    const records = new InvocationRecords(10);
    const line = `info\t${'x'.repeat(995)}`; // 1000 characters
    records.add(record('big', { logs: Array.from({ length: 20 }, () => line) }));
    const big = records.get('big');
    assert.ok(big);
    const chars = big.logs.reduce((sum, l) => sum + l.length, 0);
    assert.ok(chars <= 8 * 1024, `${chars} characters kept`);
    assert.equal(big.logs.length, 8);
    assert.equal(big.logsTruncated, true);
    assert.ok(
      big.logs.every((l) => l === line),
      'kept lines are whole',
    );

    records.add(record('small', { logs: ['info\thello', 'warn\tcareful'] }));
    assert.deepEqual(records.get('small')?.logs, ['info\thello', 'warn\tcareful']);
    assert.equal(records.get('small')?.logsTruncated, undefined);
  });
});

const SOURCES: Record<string, string> = {
  ok: "(event, context) => { console.log('hello from', context.functionName, 42); console.warn('careful'); return { ok: true }; };\n",
  quiet: "() => 'quiet';\n",
  throws: "() => { throw new TypeError('boom'); };\n",
  loop: '() => { while (1) {} };\n',
  // Time enough to reach the heap limit on a loaded machine (the suite's 1 s is not).
  bomb:
    'module.exports = () => { const a = []; for (;;) a.push(new Array(1e6).fill(1)); };\n' +
    'module.exports.config = { timeoutMs: 20000 };\n',
  flaky: "(event) => { if (event.query.fail) throw new Error('asked to'); return 'fine'; };\n",
  broken: '(event) => {\n  return 1 +;\n};\n',
};

const versionOf = (source: string) =>
  createHash('sha256').update(source).digest('hex').slice(0, 16);

describe('IsoTime', () => {
  test('formats exactly as Date#toISOString, in any order of calls', () => {
    const now = Date.now();
    const times = [
      0,
      1,
      9,
      10,
      99,
      100,
      999,
      1000,
      1001,
      -1,
      -999,
      -1000,
      -1001,
      -1.5,
      -0.5,
      0.5,
      -1000.25,
      now,
      now + 0.999,
      now - 1.5,
      now + 1000,
      now,
      Date.UTC(2026, 11, 31, 23, 59, 59, 999),
      Date.UTC(2027, 0, 1, 0, 0, 0, 0),
      Date.UTC(2028, 1, 29, 12, 0, 0, 5),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
      Date.UTC(10000, 0, 1, 0, 0, 0, 42),
      8.64e15,
      -8.64e15,
      8.64e15 + 0.5,
    ];
    // Random times around now, some in the same second as the one before.
    for (let i = 0; i < 500; i++) times.push(now + Math.random() * 5000 - 2500);
    const iso = new IsoTime();
    for (const ms of times) assert.equal(iso.format(ms), new Date(ms).toISOString(), `at ${ms}`);
  });

  test('throws on an invalid time, as Date does', () => {
    const iso = new IsoTime();
    for (const ms of [NaN, Infinity, -Infinity, 8.64e15 + 1]) {
      assert.throws(() => iso.format(ms), RangeError, `at ${ms}`);
    }
  });
});

describe('records written by the server', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      functions: SOURCES,
      env: { ADMIN_TOKEN: TOKEN, WORKER_MEMORY_MB: '64' },
    });
  });
  after(async () => {
    assert.deepEqual(await closeAndReap(t), [], 'worker processes left running after close()');
  });

  /** Invokes `/path` and returns the response and its record (read through the API). */
  async function invoke(urlPath: string) {
    const res = await t.request.get(urlPath);
    const id = String(res.headers['x-request-id']);
    assert.ok(id, 'no X-Request-Id');
    const rec = await t.request.get(`/_/invocations/${id}`).set('Authorization', AUTH);
    assert.equal(rec.status, 200, `no record for ${urlPath}: ${rec.text}`);
    assert.equal(rec.body.requestId, id);
    return { res, record: rec.body as InvocationRecord };
  }

  function assertTimes(record: InvocationRecord, t0: number): void {
    assert.match(record.start, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const start = Date.parse(record.start);
    assert.ok(start >= t0 - 50 && start <= Date.now(), `start ${record.start} is off`);
    assert.equal(typeof record.durationMs.total, 'number');
    assert.ok(record.durationMs.total > 0, `total ${record.durationMs.total}`);
  }

  test('a success: 200 ok, cold on first call, durations, console output', async () => {
    const t0 = Date.now();
    const { res, record } = await invoke('/ok');
    assert.equal(res.status, 200);
    assert.equal(record.function, 'ok');
    assert.equal(record.version, versionOf(SOURCES.ok));
    assert.equal(record.version, res.headers['x-function-version']);
    assert.equal(record.status, 200);
    assert.equal(record.outcome, 'ok');
    assert.equal(record.cold, true);
    assertTimes(record, t0);
    assert.equal(typeof record.durationMs.queue, 'number');
    assert.equal(typeof record.durationMs.exec, 'number');
    assert.ok((record.durationMs.exec ?? 0) >= 0);
    assert.ok(record.durationMs.total >= (record.durationMs.exec ?? 0));
    assert.ok(
      record.logs.some((line) => /hello from ok 42/.test(line) && !/warn/.test(line)),
      JSON.stringify(record.logs),
    );
    assert.ok(
      record.logs.some((line) => /careful/.test(line) && /warn/.test(line)),
      JSON.stringify(record.logs),
    );
  });

  test('calls of a warm version are not cold', async () => {
    const records: InvocationRecord[] = [];
    for (let i = 0; i < 4; i++) records.push((await invoke('/quiet')).record);
    assert.equal(records[0].cold, true);
    // Two workers: by the third call at least one call found its version warm.
    assert.ok(
      records.some((r) => r.cold === false),
      JSON.stringify(records.map((r) => r.cold)),
    );
    assert.ok(records.every((r) => r.logs.length === 0));
  });

  test('a thrown error: 500 FUNCTION_ERROR', async () => {
    const t0 = Date.now();
    const { res, record } = await invoke('/throws');
    assert.equal(res.status, 500);
    assert.equal(record.function, 'throws');
    assert.equal(record.version, versionOf(SOURCES.throws));
    assert.equal(record.status, 500);
    assert.equal(record.outcome, 'FUNCTION_ERROR');
    assert.equal(record.cold, true);
    assertTimes(record, t0);
  });

  test('a timeout: 504 FUNCTION_TIMEOUT', async () => {
    const t0 = Date.now();
    const { res, record } = await invoke('/loop');
    assert.equal(res.status, 504);
    assert.equal(record.function, 'loop');
    assert.equal(record.version, versionOf(SOURCES.loop));
    assert.equal(record.status, 504);
    assert.equal(record.outcome, 'FUNCTION_TIMEOUT');
    assertTimes(record, t0);
    assert.ok(record.durationMs.total >= 900, `a 1000 ms timeout took ${record.durationMs.total}`);
  });

  test('a worker crash (memory bomb): 502 WORKER_CRASHED', async () => {
    const t0 = Date.now();
    const { res, record } = await invoke('/bomb');
    assert.equal(res.status, 502, res.text);
    assert.equal(record.function, 'bomb');
    assert.equal(record.version, versionOf(SOURCES.bomb));
    assert.equal(record.status, 502);
    assert.equal(record.outcome, 'WORKER_CRASHED');
    assertTimes(record, t0);
  });

  test('a file that does not compile: 500 FUNCTION_COMPILE_ERROR', async () => {
    const { res, record } = await invoke('/broken');
    assert.equal(res.status, 500);
    assert.equal(record.function, 'broken');
    assert.equal(record.version, versionOf(SOURCES.broken));
    assert.equal(record.outcome, 'FUNCTION_COMPILE_ERROR');
  });

  test('GET /_/invocations?fn=&status=5xx&limit=2 filters, newest first', async () => {
    const failed: string[] = [];
    for (const query of ['?fail=1', '', '?fail=1', '', '?fail=1', '']) {
      const res = await t.request.get(`/flaky${query}`);
      assert.equal(res.status, query ? 500 : 200);
      if (query) failed.push(String(res.headers['x-request-id']));
    }
    const res = await t.request
      .get('/_/invocations?fn=flaky&status=5xx&limit=2')
      .set('Authorization', AUTH);
    assert.equal(res.status, 200, res.text);
    const got = res.body.invocations as InvocationRecord[];
    assert.deepEqual(ids(got), [failed[2], failed[1]]);
    assert.ok(got.every((r) => r.function === 'flaky' && r.outcome === 'FUNCTION_ERROR'));

    const all = await t.request.get('/_/invocations?fn=flaky').set('Authorization', AUTH);
    assert.equal(all.body.invocations.length, 6);
    assert.ok(all.body.invocations.every((r: InvocationRecord) => r.function === 'flaky'));

    const exact = await t.request.get('/_/invocations?status=504').set('Authorization', AUTH);
    assert.ok(exact.body.invocations.length >= 1);
    assert.ok(exact.body.invocations.every((r: InvocationRecord) => r.status === 504));

    const everything = await t.request.get('/_/invocations').set('Authorization', AUTH);
    const starts = (everything.body.invocations as InvocationRecord[]).map((r) =>
      Date.parse(r.start),
    );
    assert.ok(starts.length >= 10);
    const functions = new Set(
      (everything.body.invocations as InvocationRecord[]).map((r) => r.function),
    );
    for (const fn of ['ok', 'throws', 'loop', 'bomb', 'flaky']) assert.ok(functions.has(fn), fn);
  });

  test('a bad limit is 400', async () => {
    for (const limit of ['0', '-1', 'abc', '1.5']) {
      const res = await t.request.get(`/_/invocations?limit=${limit}`).set('Authorization', AUTH);
      assert.equal(res.status, 400, `limit=${limit}: ${res.text}`);
    }
  });

  test('an unknown id is 404 NOT_FOUND', async () => {
    const res = await t.request.get('/_/invocations/no-such-request').set('Authorization', AUTH);
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'NOT_FOUND');
  });

  test('a caller-chosen request id finds its record', async () => {
    const id = `caller-chosen.${Date.now()}`;
    const res = await t.request.get('/quiet').set('X-Request-Id', id);
    assert.equal(res.headers['x-request-id'], id);
    const rec = await t.request.get(`/_/invocations/${id}`).set('Authorization', AUTH);
    assert.equal(rec.status, 200);
    assert.equal(rec.body.function, 'quiet');
  });

  test('records need the token', async () => {
    const res = await t.request.get('/ok');
    const id = String(res.headers['x-request-id']);
    for (const route of [`/_/invocations/${id}`, '/_/invocations', '/_/invocations?fn=ok']) {
      const missing = await t.request.get(route);
      assert.equal(missing.status, 401, route);
      assert.equal(missing.body.error.code, 'UNAUTHORIZED');
      assert.doesNotMatch(missing.text, /hello from/);
      const wrong = await t.request.get(route).set('Authorization', `${AUTH}-not`);
      assert.equal(wrong.status, 401, route);
    }
  });
});

describe('closing while a crashed worker is being replaced', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ functions: { quiet: "() => 'quiet';\n" } });
  });
  after(() => closeAndReap(t));

  test('close() right after a worker dies leaves no worker process behind', async () => {
    assert.equal((await t.request.get('/quiet')).status, 200);
    const [victim] = t.server.pool.pids();
    assert.ok(victim);
    process.kill(victim, 'SIGKILL'); // a worker of this test's own server
    // Close as soon as the pool has noticed, while its replacement is still starting.
    await eventually(async () => !t.server.pool.pids().includes(victim), 3000);
    const left = await closeAndReap(t);
    assert.deepEqual(left, [], 'a replacement worker outlived close()');
  });
});
