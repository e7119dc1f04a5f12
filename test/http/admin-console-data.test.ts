/**
 * The console's figures (src/http/admin/console-data.ts): per-function error rate and p50/p99
 * from the records, and the requests/errors series sampled from the invocation counter.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TrafficSeries, figuresOf, percentile } from '../../src/http/admin/console-data';
import { Metrics } from '../../src/observe/metrics';
import type { InvocationRecord } from '../../src/observe/records';
import type { PoolStats } from '../../src/pool/sandbox-pool';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const TOKEN = 'console-data-token-0123456789';

describe('percentile (nearest rank)', () => {
  const cases: [number[], number, number][] = [
    [[], 0.5, 0],
    [[7], 0.5, 7],
    [[7], 0.99, 7],
    [[1, 2], 0.5, 1],
    [[1, 2, 3, 4], 0.5, 2],
    [[1, 2, 3, 4], 0.99, 4],
    [Array.from({ length: 100 }, (_, i) => i + 1), 0.5, 50],
    [Array.from({ length: 100 }, (_, i) => i + 1), 0.99, 99],
    [Array.from({ length: 1000 }, (_, i) => i + 1), 0.99, 990],
  ];
  for (const [values, q, expected] of cases) {
    test(`${values.length} values, q=${q} → ${expected}`, () => {
      assert.equal(percentile(values, q), expected);
    });
  }
});

describe('figuresOf', () => {
  const record = (fn: string, total: number, outcome = 'ok', start = '2024-01-01T00:00:00.000Z') =>
    ({
      requestId: `${fn}-${total}`,
      function: fn,
      version: 'v',
      start,
      status: outcome === 'ok' ? 200 : 500,
      outcome,
      durationMs: { total },
      logs: [],
    }) as InvocationRecord;

  test('counts, errors (error outcomes only), rate, p50/p99 and the newest start, per function', () => {
    const figures = figuresOf([
      record('a', 30, 'ok', '2024-01-01T00:00:03.000Z'),
      record('b', 5, 'FUNCTION_ERROR'),
      record('a', 10, 'FUNCTION_TIMEOUT'),
      record('a', 20),
      record('a', 40),
    ]);
    assert.deepEqual(figures.a, {
      count: 4,
      errors: 1,
      errorRate: 0.25,
      p50: 20,
      p99: 40,
      last: '2024-01-01T00:00:03.000Z',
    });
    assert.deepEqual(figures.b, {
      count: 1,
      errors: 1,
      errorRate: 1,
      p50: 5,
      p99: 5,
      last: '2024-01-01T00:00:00.000Z',
    });
    assert.deepEqual(figuresOf([]), {});
  });
});

describe('TrafficSeries', () => {
  const stats: PoolStats = {
    workers: 2,
    configuredWorkers: 2,
    running: 0,
    queued: 0,
    restarts: 0,
    closing: false,
    solo: { workers: 0, running: 0, queued: 0 },
    quarantined: 0,
  };

  test('closes a bucket per period with the differences, keeps at most `keep`', async () => {
    const metrics = new Metrics(() => stats);
    const series = new TrafficSeries(metrics, 0.05, 3);
    series.start();
    try {
      for (let i = 0; i < 3; i++) metrics.observeInvocation({ fn: 'a', outcome: 'ok', totalMs: 1 });
      metrics.observeInvocation({ fn: 'a', outcome: 'FUNCTION_ERROR', totalMs: 1 });
      metrics.observeInvocation({ outcome: 'FUNCTION_NOT_FOUND', totalMs: 1 });
      // A status the function chose is not an error.
      metrics.observeInvocation({ fn: 'a', outcome: '503', totalMs: 1 });
      let now = await series.series();
      assert.equal(now.bucketSeconds, 0.05);
      const sum = (b: { requests: number; errors: number }[]) =>
        b.reduce((s, x) => ({ requests: s.requests + x.requests, errors: s.errors + x.errors }), {
          requests: 0,
          errors: 0,
        });
      assert.deepEqual(sum(now.buckets), { requests: 6, errors: 2 });
      await new Promise((resolve) => setTimeout(resolve, 400));
      now = await series.series();
      // Many periods passed: the ring holds keep-1 closed buckets and the filling one.
      assert.equal(now.buckets.length, 3);
      const times = now.buckets.map((b) => b.t);
      assert.deepEqual(
        [...times].sort((x, y) => x - y),
        times,
      );
      metrics.observeInvocation({ fn: 'a', outcome: 'ok', totalMs: 1 });
      const last = (await series.series()).buckets.at(-1);
      assert.equal(last?.requests, 1);
    } finally {
      series.stop();
    }
  });
});

describe('GET /_/console/stats', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      env: { ADMIN_TOKEN: TOKEN },
      functions: {
        ok: "module.exports = () => 'ok';",
        fails: "module.exports = () => { throw new Error('no'); };",
        teapot: 'module.exports = () => ({ statusCode: 500, body: "chosen" });',
      },
    });
  });
  after(() => t.close());

  test('needs the token', async () => {
    assert.equal((await t.request.get('/_/console/stats')).status, 401);
  });

  test('figures per function from the records, and the traffic so far', async () => {
    for (let i = 0; i < 6; i++) assert.equal((await t.request.get('/ok')).status, 200);
    for (let i = 0; i < 2; i++) assert.equal((await t.request.get('/fails')).status, 500);
    // A status the function chose is not an error of the invocation.
    assert.equal((await t.request.get('/teapot')).status, 500);
    assert.equal((await t.request.get('/missing')).status, 404);
    const res = await t.request.get('/_/console/stats').set('Authorization', `Bearer ${TOKEN}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    const { functions, records, traffic } = res.body;
    assert.deepEqual(Object.keys(functions), ['fails', 'ok', 'teapot']);
    assert.equal(functions.ok.count, 6);
    assert.equal(functions.ok.errors, 0);
    assert.equal(functions.fails.count, 2);
    assert.equal(functions.fails.errorRate, 1);
    assert.equal(functions.teapot.errors, 0);
    for (const f of Object.values(functions) as { p50: number; p99: number }[]) {
      assert.ok(f.p50 > 0 && f.p50 <= f.p99, JSON.stringify(f));
    }
    assert.equal(records.count, 9);
    assert.equal(typeof records.since, 'string');
    assert.equal(traffic.bucketSeconds, 10);
    const total = traffic.buckets.reduce(
      (s: { r: number; e: number }, b: { requests: number; errors: number }) => ({
        r: s.r + b.requests,
        e: s.e + b.errors,
      }),
      { r: 0, e: 0 },
    );
    // The 404 of a missing function counts as a request and an error (it is in the counter).
    assert.deepEqual(total, { r: 10, e: 3 });
    assert.equal(typeof res.body.asyncDepth, 'number');
  });
});
