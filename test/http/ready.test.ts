/**
 * GET /_/ready with REDIS_URL (SPEC §10): a replica that cannot reach Redis answers 503
 * KV_UNAVAILABLE, within a bound even when Redis holds the connection open without answering,
 * and 200 again once Redis answers. A real redis-server on a loopback port (skipped, saying so,
 * when redis-server is not installed).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Redis from 'ioredis';
import { READY_PING_MS } from '../../src/http/admin';
import { COMMAND_TIMEOUT_MS } from '../../src/services/kv/redis-kv';
import { eventually, startServer } from '../helpers';
import type { TestServer } from '../helpers';
import { REDIS_MISSING, startRedis } from '../services/redis-server';
import type { TestRedis } from '../services/redis-server';

interface Ready {
  status: number;
  body: { status?: string; error?: { code: string; message: string } };
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
  r.status === 503 &&
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
    t = await startServer({ env: { REDIS_URL: redis.url } });
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
    void test(`503 while Redis is ${outage.name}; 200 after`, async () => {
      await eventually(async () => isReady(await ready(t)), 10_000);
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
          assert.ok(isRedisDown(r), `still 503 while Redis is away: ${JSON.stringify(r.body)}`);
          assert.ok(r.ms < BOUND_MS, `/_/ready took ${Math.round(r.ms)} ms with Redis away`);
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
