/**
 * GET /_/ready with REDIS_URL (docs/spec.md §10): a replica that cannot reach Redis stays ready (every
 * replica shares that Redis: failing them all would take the service down while warm functions
 * can still answer) and says `degraded` with KV_UNAVAILABLE, within a bound even when Redis holds
 * the connection open without answering, and `ready` again once Redis answers; a function that
 * needs Redis meanwhile gets 503 KV_UNAVAILABLE at once, while one that does not answers 200. A real redis-server on a loopback port (skipped, saying so,
 * when redis-server is not installed).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Redis from 'ioredis';
import { READY_PING_MS } from '../../src/http/admin/health';
import { COMMAND_TIMEOUT_MS } from '../../src/storage/redis';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';

interface Ready {
  status: number;
  body: { status?: string; redis?: string; error?: { code: string; message: string } };
  ms: number;
}

async function ready(t: TestServer): Promise<Ready> {
  const started = performance.now();
  const res = await t.request.get('/_/ready');
  return { status: res.status, body: res.body as Ready['body'], ms: performance.now() - started };
}

/** The pid of the redis-server behind `url` (to pause it: connected, but silent). */
async function redisPid(url: string): Promise<number> {
  const client = new Redis(url, { lazyConnect: true });
  try {
    await client.connect();
    const info = await client.info('server');
    return Number(/process_id:(\d+)/.exec(info)?.[1]);
  } finally {
    client.disconnect();
  }
}

const isReady = (r: Ready) => r.status === 200 && r.body.status === 'ready';
const isRedisDown = (r: Ready) =>
  r.status === 200 &&
  r.body.status === 'degraded' &&
  r.body.redis === 'unavailable' &&
  r.body.error?.code === 'KV_UNAVAILABLE' &&
  /Redis \(REDIS_URL\) did not answer a ping/.test(r.body.error.message);

// The probe must answer before ioredis' own command timeout would: the bound is ours.
assert.ok(READY_PING_MS < COMMAND_TIMEOUT_MS);
const BOUND_MS = COMMAND_TIMEOUT_MS;

void describe('GET /_/ready without REDIS_URL', () => {
  void test('is 200 on the embedded store: it needs nothing outside the server', async () => {
    const t = await startServer();
    try {
      for (let i = 0; i < 3; i++) assert.ok(isReady(await ready(t)));
    } finally {
      await t.close();
    }
  });
});

void describe('GET /_/ready follows Redis', { skip: REDIS_MISSING }, () => {
  let redis: TestRedis;
  let t: TestServer;
  before(async () => {
    redis = await startRedis();
    t = await startServer({
      env: { REDIS_URL: redis.url },
      functions: {
        plain: '() => ({ plain: true });',
        counter: `async (event, context) => {
          try {
            return { n: await context.kv.incr('n') };
          } catch (err) {
            return { code: err.code };
          }
        };`,
      },
    });
  });
  after(async () => {
    await t?.close();
    await redis?.close();
  });

  // Each way Redis can be away, and how it comes back.
  const outages: {
    name: string;
    down: () => Promise<() => Promise<void>>;
  }[] = [
    {
      name: 'killed (the connection drops), then started again on the same port',
      down: async () => {
        await redis.stop();
        return () => redis.start();
      },
    },
    {
      name: 'paused (SIGSTOP: the connection stays open, no answer), then resumed',
      down: async () => {
        const pid = await redisPid(redis.url);
        assert.ok(pid > 0, 'redis-server reports its pid');
        process.kill(pid, 'SIGSTOP');
        return async () => {
          process.kill(pid, 'SIGCONT');
        };
      },
    },
  ];

  for (const outage of outages) {
    void test(`degraded while Redis is ${outage.name}; ready after`, async () => {
      await eventually(async () => isReady(await ready(t)), 10_000);
      assert.equal((await t.request.get('/plain')).status, 200);
      assert.equal(typeof (await t.request.get('/counter')).body.n, 'number');
      const back = await outage.down();
      let restored = false;
      try {
        // Every answer in the outage comes within the bound, never a hang.
        await eventually(async () => {
          const r = await ready(t);
          assert.ok(r.ms < BOUND_MS, `/_/ready took ${Math.round(r.ms)} ms with Redis away`);
          return isRedisDown(r);
        }, 5_000);
        for (let i = 0; i < 3; i++) {
          const r = await ready(t);
          assert.ok(
            isRedisDown(r),
            `still degraded while Redis is away: ${JSON.stringify(r.body)}`,
          );
          assert.ok(r.ms < BOUND_MS, `/_/ready took ${Math.round(r.ms)} ms with Redis away`);
          // A function that needs nothing from Redis answers; one that does fails within a
          // bound: its KV call rejects with KV_UNAVAILABLE (a dropped connection: at once), or,
          // when Redis is silent for longer than the function's own timeout, the invocation
          // times out first.
          assert.deepEqual((await t.request.get('/plain')).body, { plain: true });
          const started = performance.now();
          const kv = await t.request.get('/counter');
          if (outage.name.startsWith('killed')) {
            assert.deepEqual(kv.body, { code: 'KV_UNAVAILABLE' });
          } else {
            assert.ok(
              kv.body.code === 'KV_UNAVAILABLE' || kv.body.error?.code === 'FUNCTION_TIMEOUT',
              JSON.stringify(kv.body),
            );
          }
          assert.ok(
            performance.now() - started < BOUND_MS + 1000,
            'a KV call fails within its bound',
          );
        }
        // Health is liveness: the process itself is fine, it must not be restarted for this.
        assert.equal((await t.request.get('/_/health')).status, 200);
        await back();
        restored = true;
        // ioredis reconnects within 2 s of its retry strategy.
        await eventually(async () => isReady(await ready(t)), 10_000);
      } finally {
        if (!restored) await back();
      }
    });
  }
});
