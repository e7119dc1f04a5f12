/**
 * Schedules that outlast their tick, and schedules that Redis forgets (docs/spec.md §9), on the
 * real server with real workers: on SQLite and on a real redis-server.
 *
 * - `config.overlap: "skip"` (the default): a 1 s schedule on a 2.5 s function never runs two
 *   copies at once and builds no backlog; the skipped ticks are counted in /_/schedules, the
 *   metric and a record. `"allow"` runs them side by side.
 * - After FLUSHALL (a Redis restarted without persistence), the ticks go on: the server puts its
 *   schedules back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Redis from 'ioredis';
import { startServer } from '../support/server';
import { eventually, sleep } from '../support/wait';
import type { TestServer } from '../support/server';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';

const TOKEN = 'overlap-test-token-0123456789';
const AUTH = { Authorization: `Bearer ${TOKEN}` };
/** Every second, runs 2.5 s; counts how often another copy of it was running at its start. */
const slow = (overlap?: string) => `module.exports = async (e, c) => {
  const active = await c.kv.incr('active');
  if (active > 1) await c.kv.incr('overlaps');
  await new Promise((r) => setTimeout(r, 2500));
  await c.kv.incr('active', -1);
  await c.kv.incr('runs');
};
module.exports.config = ${JSON.stringify({
  schedule: '* * * * * *',
  timeoutMs: 5000,
  ...(overlap ? { overlap } : {}),
})};
`;

async function kvNumber(t: TestServer, fn: string, key: string): Promise<number> {
  const res = await t.request.get(`/_/kv/${fn}?key=${key}`).set(AUTH);
  return res.status === 404 ? 0 : Number(res.text);
}

interface Listing {
  function: string;
  overlap: string;
  skipped: number;
  lastSkipped?: string;
  next?: string;
}

function overlapSuite(name: string, env: () => Record<string, string>, skip: string | false) {
  describe(`schedule overlap: ${name}`, { skip }, () => {
    let t: TestServer;
    before(async () => {
      t = await startServer({
        functions: { skipper: slow(), allower: slow('allow') },
        env: { ADMIN_TOKEN: TOKEN, WORKERS: '3', ASYNC_CONCURRENCY: '2', ...env() },
      });
    });
    after(() => t?.close());

    test('"skip": one run at a time, skipped ticks counted and recorded; "allow": side by side', async () => {
      await eventually(async () => (await kvNumber(t, 'skipper', 'runs')) >= 2, 20_000);
      await eventually(async () => (await kvNumber(t, 'allower', 'overlaps')) >= 1, 20_000);
      assert.equal(
        await kvNumber(t, 'skipper', 'overlaps'),
        0,
        'two copies of a "skip" schedule ran',
      );

      const listing = (await t.request.get('/_/schedules').set(AUTH)).body as {
        schedules: Listing[];
      };
      const skipper = listing.schedules.find((s) => s.function === 'skipper');
      const allower = listing.schedules.find((s) => s.function === 'allower');
      assert.equal(skipper?.overlap, 'skip');
      assert.ok((skipper?.skipped ?? 0) >= 1, JSON.stringify(skipper));
      assert.ok(skipper?.lastSkipped, JSON.stringify(skipper));
      assert.equal(allower?.overlap, 'allow');
      assert.equal(allower?.skipped, 0);

      const metrics = (await t.request.get('/_/metrics')).text;
      const skips = /faas_schedule_skips_total\{function="skipper"\} (\d+)/.exec(metrics);
      assert.ok(skips && Number(skips[1]) >= 1, 'faas_schedule_skips_total');

      const records = (await t.request.get('/_/invocations?fn=skipper&limit=1000').set(AUTH))
        .body as { invocations: { outcome: string; logs: string[]; status: number }[] };
      const skipped = records.invocations.find((r) => r.outcome === 'skipped');
      assert.ok(skipped, JSON.stringify(records).slice(0, 500));
      assert.equal(skipped.status, 0);
      assert.match(skipped.logs[0], /previous run tick-[0-9a-f]+ is still (running|queued)/);

      // No backlog: at most the one running and perhaps one queued retry, never a pile.
      const queued = (await t.request.get('/_/invocations?fn=skipper&status=queued').set(AUTH))
        .body as { invocations: unknown[] };
      assert.ok(queued.invocations.length <= 1, JSON.stringify(queued));
    });

    test('an unknown overlap value is a compile error naming the key', async () => {
      const res = await t.request
        .put('/_/functions/bad-overlap')
        .set(AUTH)
        .type('application/javascript')
        .send(
          "module.exports = () => 1; module.exports.config = { schedule: '0 0 * * *', overlap: 'queue' };",
        );
      assert.equal(res.status, 422, JSON.stringify(res.body));
      assert.match(res.body.error.message, /config\.overlap must be "skip" or "allow"/);
    });
  });
}

overlapSuite('sqlite', () => ({}), false);

let redis: TestRedis | undefined;
if (!REDIS_MISSING) {
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis?.close());
}
overlapSuite('redis', () => ({ REDIS_URL: (redis as TestRedis).url }), REDIS_MISSING);

describe('schedules after Redis lost its data (FLUSHALL)', { skip: REDIS_MISSING }, () => {
  let t: TestServer;
  let client: Redis;
  before(async () => {
    t = await startServer({
      functions: {
        every: `module.exports = async (e, c) => { await c.kv.incr('n'); };
module.exports.config = { schedule: '* * * * * *' };`,
      },
      env: { ADMIN_TOKEN: TOKEN, REDIS_URL: (redis as TestRedis).url },
    });
    client = new Redis((redis as TestRedis).url);
  });
  after(async () => {
    client?.disconnect();
    await t?.close();
  });

  test('the ticks go on: the server puts its schedules back', async () => {
    await eventually(async () => (await kvNumber(t, 'every', 'n')) >= 2, 15_000);
    await client.flushall();
    await sleep(1500);
    // Everything is gone, the count with it; the ticks must come back (reconcile: 10 s).
    const started = Date.now();
    await eventually(async () => (await kvNumber(t, 'every', 'n')) >= 2, 30_000);
    const back = Date.now() - started;
    assert.ok(
      t.logs.some((l) => /put back/.test(String(l.msg))),
      'the server said it put schedules back',
    );
    assert.ok(back < 30_000);
  });
});
