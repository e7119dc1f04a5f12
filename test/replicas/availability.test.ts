/**
 * Three replicas on one Redis behind HAProxy, under a steady load through the balancer, while
 * parts of the cluster go away, with real processes and signals:
 *
 * - a rolling update: each replica in turn drained in HAProxy (what a Kubernetes endpoint
 *   removal and the manifests' preStop sleep do), SIGTERMed, restarted on its port: 0 failed
 *   requests, and the counts of KV calls made through it all stay exact;
 * - a replica SIGKILLed: only requests in flight on it fail, and the balancer stops sending
 *   to it;
 * - Redis stopped for 5 s: no request hangs, functions (files and API deploys) keep answering
 *   on every replica, which stays in the balancer (ready, degraded), what needs Redis fails
 *   fast with KV_UNAVAILABLE, and everything recovers when Redis is back, with its data.
 *
 * Skipped, saying so, when redis-server or haproxy is not installed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { COMMAND_TIMEOUT_MS } from '../../src/storage/redis';
import { sleep, until } from '../support/wait';
import { AUTH, CLUSTER_MISSING, call, startCluster } from './cluster';
import type { Cluster, Reply, Replica } from './cluster';
import { BACKEND } from '../support/haproxy';
import { SteadyLoad, describeSamples } from './load';
import type { Sample } from './load';

const FILES: Record<string, string> = {
  hello: "() => 'hello'\n",
  count: `module.exports = async (e, c) => {
  try {
    return { n: await c.kv.incr(e.query.key || 'n') };
  } catch (err) {
    return { statusCode: 503, body: { code: err.code, message: err.message } };
  }
};
`,
  slow: `async (e) => {
  await new Promise((r) => setTimeout(r, Number(e.query.ms || 200)));
  return 'slow';
}
`,
  work: `async (e, c) => ({ runs: await c.kv.incr('runs:' + c.requestId) })\n`,
};

/** No answer may take longer than this, Redis away or not: the KV calls' own bound, and a margin. */
const ANSWER_BOUND_MS = COMMAND_TIMEOUT_MS + 1500;

let cluster: Cluster;

before(async () => {
  if (CLUSTER_MISSING) return;
  // Append-only with an fsync per write: Redis comes back from a SIGKILL with its data, as a
  // production Redis (persistent or replicated) does.
  cluster = await startCluster({
    files: FILES,
    redisArgs: ['--appendonly', 'yes', '--appendfsync', 'always'],
  });
});

after(async () => {
  await cluster?.close();
});

const failed = (s: Sample) => s.error !== undefined || s.status !== 200;

/** Every replica is ready with Redis answering, and HAProxy has it UP. */
async function allBack(ms = 15_000): Promise<void> {
  for (const r of cluster.replicas) {
    await until(
      `${r.name} is ready`,
      async () => {
        const reply = await call(r.port, 'GET', '/_/ready').catch(() => undefined);
        const body = reply?.json as { status?: string; redis?: string } | undefined;
        return reply?.status === 200 && body?.status === 'ready' && body.redis === 'ok';
      },
      ms,
    );
    await cluster.waitStatus(r.name, 'UP', ms);
  }
}

/**
 * A rolling update of one replica, the way an orchestrator does it: out of the balancer first
 * (drain: no new requests; those in flight finish), then SIGTERM (its own drain, exit 0), start
 * again on the same port, back into the balancer once its health checks pass.
 */
async function rollOne(r: Replica): Promise<void> {
  await cluster.haproxy.setState(r.name, 'drain');
  await until(
    `${r.name} has no request in flight`,
    async () =>
      (await cluster.haproxy.stats())
        .filter((s) => s.server === r.name)
        .every((s) => s.current === 0),
    10_000,
  );
  const { code } = await r.stop('SIGTERM');
  assert.equal(code, 0, `${r.name} exits 0 after its drain`);
  await r.start();
  await cluster.haproxy.setState(r.name, 'ready');
  await cluster.waitStatus(r.name, 'UP');
}

void describe('replicas behind HAProxy under load', { skip: CLUSTER_MISSING }, () => {
  void test('a rolling update (drain, SIGTERM, restart, one replica at a time) fails no request', async () => {
    const load = new SteadyLoad({
      port: cluster.haproxy.port,
      routes: ['/hello', '/count?key=rolling', '/slow?ms=150'],
      workers: 4,
    }).start();
    const restartedAt: Record<string, number> = {};
    try {
      await sleep(500);
      for (const r of cluster.replicas) {
        await rollOne(r);
        restartedAt[r.name] = performance.now();
        await sleep(500);
      }
    } finally {
      await load.stop();
    }
    const samples = load.samples;
    const bad = samples.filter(failed);
    assert.equal(
      bad.length,
      0,
      `${bad.length} of ${samples.length} failed: ${describeSamples(bad)}`,
    );
    assert.ok(samples.length > 100, `only ${samples.length} requests were sent`);
    // Each restarted replica took traffic again.
    for (const r of cluster.replicas) {
      assert.ok(
        samples.some((s) => s.servedBy === r.name && s.started > restartedAt[r.name]),
        `${r.name} served nothing after its restart`,
      );
    }
    // Every KV call ran once: the counts are exactly 1…N, across restarts of every replica.
    const counts = samples
      .filter((s) => s.route.startsWith('/count'))
      .map((s) => (JSON.parse(s.text ?? '{}') as { n: number }).n)
      .sort((a, b) => a - b);
    assert.deepEqual(
      counts,
      counts.map((_, i) => i + 1),
    );
  });

  void test('a replica SIGKILLed under load: only requests in flight on it fail, and the balancer stops sending to it', async (t) => {
    const victim = cluster.replicas[1];
    const workers = 6;
    const load = new SteadyLoad({
      port: cluster.haproxy.port,
      routes: ['/slow?ms=300', '/hello'],
      workers,
      pauseMs: 5,
    });
    // Per replica, requests HAProxy sent it that it never answered.
    const unanswered = async () => {
      const byServer: Record<string, number> = {};
      for (const s of await cluster.haproxy.stats()) {
        byServer[s.server] = (byServer[s.server] ?? 0) + s.total - s.answered;
      }
      return byServer;
    };
    const unansweredBefore = await unanswered();
    load.start();
    let killedAt = 0;
    let downAt = 0;
    try {
      await sleep(1500);
      killedAt = performance.now();
      const { signal } = await victim.stop('SIGKILL');
      assert.equal(signal, 'SIGKILL');
      await cluster.waitStatus(victim.name, 'DOWN');
      downAt = performance.now();
      await sleep(1500);
    } finally {
      await load.stop();
      // Back for what follows, whatever happened.
      if (!victim.running()) await victim.start();
    }
    await cluster.waitStatus(victim.name, 'UP');
    const samples = load.samples;
    const bad = samples.filter(failed);
    // At most one request per load loop can have been in flight on it.
    assert.ok(bad.length <= workers, `${bad.length} failed: ${describeSamples(bad)}`);
    // Where they were lost: HAProxy counts, per replica, the requests it sent that got no answer
    // (a request lost on a kept-alive client connection gets that connection closed without an
    // answer and no log line, for the client to retry if it may: RFC 9112 §9.3.1; any other
    // gets HAProxy's 502). Only the killed replica may have any; the others answered everything.
    const unansweredAfter = await unanswered();
    const lost = Object.fromEntries(
      cluster.replicas.map((r) => [r.name, unansweredAfter[r.name] - unansweredBefore[r.name]]),
    );
    for (const r of cluster.replicas.filter((x) => x !== victim)) {
      assert.equal(lost[r.name], 0, `${r.name} left requests unanswered: ${JSON.stringify(lost)}`);
    }
    assert.ok(bad.length <= lost[victim.name], `${bad.length} failed: ${JSON.stringify(lost)}`);
    for (const s of bad) {
      assert.ok(
        s.started < killedAt && s.ended >= killedAt,
        `a failure not in flight when ${victim.name} died: ${describeSamples([s])}`,
      );
      assert.ok(
        s.status === 502 || /socket hang up|ECONNRESET/.test(s.error ?? ''),
        describeSamples([s]),
      );
    }
    const afterDown = samples.filter((s) => s.started > downAt);
    assert.ok(afterDown.length > 20, `${afterDown.length} requests after it was marked down`);
    assert.deepEqual(
      afterDown.filter((s) => s.servedBy === victim.name),
      [],
      `sent to ${victim.name} after HAProxy marked it down`,
    );
    for (const r of cluster.replicas.filter((x) => x !== victim)) {
      assert.ok(
        afterDown.some((s) => s.servedBy === r.name && !failed(s)),
        r.name,
      );
    }
    t.diagnostic(
      `SIGKILL: ${bad.length} of ${samples.length} requests failed (in flight on ${victim.name}); ` +
        `marked down ${Math.round(downAt - killedAt)} ms after the kill`,
    );
  });

  void test('Redis stopped for 5 s under load: no request hangs, functions keep answering, what needs Redis fails fast with KV_UNAVAILABLE, and all recovers', async (t) => {
    const [r1, r2] = cluster.replicas;
    // A function deployed through the API (held in Redis), warm on every replica.
    const deployed = await call(r1.port, 'PUT', '/_/functions/api-hello', {
      headers: { ...AUTH, 'Content-Type': 'application/javascript' },
      body: "() => 'hello from the API'\n",
    });
    assert.equal(deployed.status, 201, deployed.text);
    for (const r of cluster.replicas) {
      await until(
        `${r.name} serves api-hello`,
        async () => (await call(r.port, 'GET', '/api-hello')).text === 'hello from the API',
        1000,
      );
      assert.equal((await call(r.port, 'GET', '/count?key=warm')).status, 200);
    }

    const load = new SteadyLoad({
      port: cluster.haproxy.port,
      routes: ['/hello', '/api-hello', '/count?key=outage'],
      workers: 4,
      timeoutMs: ANSWER_BOUND_MS,
    }).start();
    let stoppedAt = 0;
    let backAt = 0;
    try {
      await sleep(1000);
      stoppedAt = performance.now();
      await cluster.redis.stop();
      await sleep(1500);
      const probes: {
        what: string;
        send: (r: Replica) => Promise<Reply>;
        check: (reply: Reply) => void;
      }[] = [
        {
          what: 'a function file it holds',
          send: (r) => call(r.port, 'GET', '/hello', { timeoutMs: ANSWER_BOUND_MS }),
          check: (x) => assert.deepEqual([x.status, x.text], [200, 'hello']),
        },
        {
          what: 'a function deployed through the API, which it holds',
          send: (r) => call(r.port, 'GET', '/api-hello', { timeoutMs: ANSWER_BOUND_MS }),
          check: (x) => assert.deepEqual([x.status, x.text], [200, 'hello from the API']),
        },
        {
          what: "a function's kv.incr",
          send: (r) => call(r.port, 'GET', '/count?key=outage', { timeoutMs: ANSWER_BOUND_MS }),
          check: (x) => {
            assert.equal(x.status, 503);
            assert.equal((x.json as { code: string }).code, 'KV_UNAVAILABLE');
          },
        },
        {
          what: 'the admin KV API',
          send: (r) =>
            call(r.port, 'GET', '/_/kv/count/outage', {
              headers: AUTH,
              timeoutMs: ANSWER_BOUND_MS,
            }),
          check: (x) => {
            assert.equal(x.status, 503);
            assert.equal((x.json as { error: { code: string } }).error.code, 'KV_UNAVAILABLE');
            assert.equal(x.headers['retry-after'], '1');
          },
        },
        {
          what: 'an async enqueue',
          send: (r) =>
            call(r.port, 'POST', '/work', {
              headers: { Prefer: 'respond-async' },
              timeoutMs: ANSWER_BOUND_MS,
            }),
          check: (x) => {
            assert.equal(x.status, 503);
            assert.equal((x.json as { error: { code: string } }).error.code, 'KV_UNAVAILABLE');
          },
        },
        {
          what: 'a deploy',
          send: (r) =>
            call(r.port, 'PUT', '/_/functions/during-outage', {
              headers: { ...AUTH, 'Content-Type': 'application/javascript' },
              body: "() => 'never'\n",
              timeoutMs: ANSWER_BOUND_MS,
            }),
          check: (x) => {
            assert.equal(x.status, 503);
            assert.equal((x.json as { error: { code: string } }).error.code, 'KV_UNAVAILABLE');
          },
        },
        {
          what: '/_/ready (degraded, still ready: every replica shares that Redis)',
          send: (r) => call(r.port, 'GET', '/_/ready', { timeoutMs: ANSWER_BOUND_MS }),
          check: (x) => {
            assert.equal(x.status, 200);
            const body = x.json as { status: string; redis: string; error: { code: string } };
            assert.deepEqual(
              [body.status, body.redis, body.error.code],
              ['degraded', 'unavailable', 'KV_UNAVAILABLE'],
            );
          },
        },
        {
          what: 'the balancer keeps it in',
          send: async (r) => {
            const stat = (await cluster.haproxy.stats()).find((s) => s.server === r.name);
            return { status: 0, headers: {}, text: stat?.status ?? 'absent', json: stat, ms: 0 };
          },
          check: (x) => assert.equal(x.text, 'UP'),
        },
      ];
      const failures: string[] = [];
      for (const probe of probes) {
        for (const r of cluster.replicas) {
          try {
            probe.check(await probe.send(r));
          } catch (err) {
            failures.push(`${probe.what} on ${r.name}: ${(err as Error).message}`);
          }
        }
      }
      const left = 5000 - (performance.now() - stoppedAt);
      if (left > 0) await sleep(left);
      await cluster.redis.start();
      backAt = performance.now();
      assert.deepEqual(failures, [], 'while Redis was away');
      await allBack();
      const recovered = performance.now();
      await sleep(1000);
      t.diagnostic(
        `Redis away ${Math.round(backAt - stoppedAt)} ms; every replica ready with Redis again ` +
          `${Math.round(recovered - backAt)} ms after it came back`,
      );
    } finally {
      await load.stop();
    }
    const samples = load.samples;
    // No request hung or lost its connection: each got an answer within the bound.
    const unanswered = samples.filter((s) => s.error !== undefined);
    assert.deepEqual(unanswered, [], describeSamples(unanswered));
    // Functions that need no Redis answered all along, through the balancer.
    const plain = samples.filter((s) => s.route !== '/count?key=outage');
    const plainBad = plain.filter(failed);
    assert.equal(plainBad.length, 0, describeSamples(plainBad));
    // KV calls: a count, or KV_UNAVAILABLE; only KV_UNAVAILABLE while Redis was certainly away.
    const kv = samples.filter((s) => s.route === '/count?key=outage');
    const away = kv.filter((s) => s.started > stoppedAt + 100 && s.ended < backAt);
    assert.ok(away.length > 5, `${away.length} KV calls while Redis was away`);
    for (const s of kv) {
      const body = JSON.parse(s.text ?? '{}') as { n?: number; code?: string };
      if (s.status === 200) assert.equal(typeof body.n, 'number', describeSamples([s]));
      else assert.deepEqual([s.status, body.code], [503, 'KV_UNAVAILABLE'], describeSamples([s]));
    }
    for (const s of away) assert.equal(s.status, 503, describeSamples([s]));
    assert.ok(
      kv.some((s) => s.started > backAt && s.status === 200),
      'KV calls work again once Redis is back',
    );

    // All recovers: KV (with its data: the counts go on), async, deploys, records, readiness.
    const before = await call(r2.port, 'GET', '/_/kv/count/warm', { headers: AUTH });
    assert.deepEqual([before.status, before.json], [200, cluster.replicas.length]);
    const id = `after-outage-${Date.now()}`;
    const queued = await call(r1.port, 'POST', '/work', {
      headers: { Prefer: 'respond-async', 'X-Request-Id': id },
    });
    assert.equal(queued.status, 202, queued.text);
    await until(
      'the async invocation queued after the outage succeeds',
      async () =>
        (
          (await call(r2.port, 'GET', `/_/invocations/${id}`, { headers: AUTH })).json as {
            status?: string;
          }
        ).status === 'succeeded',
      10_000,
    );
    const redeployed = await call(r2.port, 'PUT', '/_/functions/api-hello', {
      headers: { ...AUTH, 'Content-Type': 'application/javascript' },
      body: "() => 'hello again'\n",
    });
    assert.equal(redeployed.status, 200, redeployed.text);
    for (const r of cluster.replicas) {
      await until(
        `${r.name} serves the deploy made after the outage`,
        async () => (await call(r.port, 'GET', '/api-hello')).text === 'hello again',
        1000,
      );
    }
    const up = (await cluster.haproxy.stats()).filter((s) => s.backend === BACKEND);
    assert.deepEqual(
      up.map((s) => s.status),
      cluster.replicas.map(() => 'UP'),
    );
  });
});
