/**
 * Functions deployed through the API with REDIS_URL (docs/spec.md §10): two real servers (each its own
 * FUNCTIONS_DIR and workers) on one real redis-server. A deploy or delete on one is served by the
 * other within a second; the file layer is read-only, overridden and uncovered; a lost message
 * heals by the periodic check; Redis down keeps warm functions working and fails deploys fast.
 * Records are shared too: a record written on one is read from the other.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { SharedFunctions } from '../../src/functions/shared-functions';
import { createLogger } from '../../src/observe/logger';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';

const TOKEN = 'shared-functions-token-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };
const silent = createLogger({ level: 'silent' });

/** Polls `check` every 20 ms; resolves with the ms it took, fails past `ms`. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  await eventually(check, ms);
  return Date.now() - started;
}

const answers = (t: TestServer, path: string, body: unknown) => async () => {
  const res = await t.request.get(path);
  return res.status === 200 && JSON.stringify(res.body) === JSON.stringify(body);
};

const gone = (t: TestServer, path: string) => async () =>
  (await t.request.get(path)).status === 404;

describe('shared functions across replicas (Redis)', { skip: REDIS_MISSING }, () => {
  let redis: TestRedis;
  let a: TestServer;
  let b: TestServer;
  let raw: Redis;

  before(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, ADMIN_TOKEN: TOKEN, WORKERS: '2', RECORDS_MAX: '50' };
    // Each replica has its own file layer; `layered` exists as a file on both.
    const layered = { layered: '() => ({ from: "file" });' };
    a = await startServer({ env, functions: layered });
    b = await startServer({ env, functions: layered });
    raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    raw.on('error', () => undefined);
  });

  after(async () => {
    raw.disconnect();
    await Promise.all([a.close(), b.close()]);
    await redis.close();
  });

  it('serves a deploy, a new version and a delete made on the other replica within 1 s', async () => {
    const cases = [
      { name: 'shared-one', language: 'js', source: '() => ({ v: 1 });' },
      {
        name: 'nested/shared-ts',
        language: 'ts',
        source: 'export default (): { v: number } => ({ v: 1 });',
      },
      { name: 'shared-cjs', language: 'js', source: 'module.exports = async () => ({ v: 1 });' },
    ];
    for (const { name, language, source } of cases) {
      const type = language === 'ts' ? 'application/typescript' : 'application/javascript';
      const created = await a.request
        .put(`/_/functions/${name}`)
        .set(auth)
        .set('Content-Type', type)
        .send(source);
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal((await a.request.get(`/${name}`)).body.v, 1, `${name} on the deploying replica`);
      const ms = await within(1000, answers(b, `/${name}`, { v: 1 }));
      assert.ok(ms <= 1000, `${name} served by the other replica after ${ms} ms`);

      const replaced = await b.request
        .put(`/_/functions/${name}`)
        .set(auth)
        .set('Content-Type', type)
        .send(source.replace('v: 1', 'v: 2'));
      assert.equal(replaced.status, 200);
      await within(1000, answers(a, `/${name}`, { v: 2 }));

      const info = await b.request.get(`/_/functions/${name}`).set(auth);
      assert.equal(info.body.layer, 'shared');
      assert.equal(info.body.version, replaced.body.version);

      assert.equal((await a.request.delete(`/_/functions/${name}`).set(auth)).status, 204);
      await within(1000, gone(b, `/${name}`));
      assert.equal((await a.request.get(`/${name}`)).status, 404);
      assert.equal((await b.request.delete(`/_/functions/${name}`).set(auth)).status, 404);
    }
  });

  it('an API deploy hides a file of the same name; deleting it uncovers the file', async () => {
    for (const t of [a, b])
      assert.deepEqual((await t.request.get('/layered')).body, { from: 'file' });
    const deployed = await b.request
      .put('/_/functions/layered')
      .set(auth)
      .set('Content-Type', 'application/javascript')
      .send('() => ({ from: "api" });');
    // The name was already served (from the file): a replacement, not a creation.
    assert.equal(deployed.status, 200);
    for (const t of [a, b]) await within(1000, answers(t, '/layered', { from: 'api' }));
    const listed = await a.request.get('/_/functions');
    const entry = listed.body.functions.find((f: { name: string }) => f.name === 'layered');
    assert.equal(entry.layer, 'shared');

    assert.equal((await a.request.delete('/_/functions/layered').set(auth)).status, 204);
    for (const t of [a, b]) await within(1000, answers(t, '/layered', { from: 'file' }));

    // The file layer is read-only with REDIS_URL: deleting a file-only function is refused.
    const refused = await a.request.delete('/_/functions/layered').set(auth);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'FUNCTION_READ_ONLY');
    assert.deepEqual((await a.request.get('/layered')).body, { from: 'file' });
  });

  it('a deploy that does not compile is refused and changes nothing anywhere', async () => {
    const bad = await a.request
      .put('/_/functions/broken')
      .set(auth)
      .set('Content-Type', 'application/javascript')
      .send('() => {');
    assert.equal(bad.status, 422);
    assert.equal(await raw.hexists('kf:fn:index', 'broken'), 0);
    assert.equal((await b.request.get('/broken')).status, 404);
  });

  it('sources are kept by content hash and go with the last name that uses them', async () => {
    const source = '() => ({ twin: true });';
    for (const name of ['twin-a', 'twin-b']) {
      const res = await a.request
        .put(`/_/functions/${name}`)
        .set(auth)
        .set('Content-Type', 'application/javascript')
        .send(source);
      assert.equal(res.status, 201);
    }
    const keys = async () => (await raw.keys('kf:fn:src:*')).length;
    assert.equal(await keys(), 1, 'one source for two names');
    assert.equal((await a.request.delete('/_/functions/twin-a').set(auth)).status, 204);
    assert.equal(await keys(), 1, 'still used by twin-b');
    // A replica that never read it fetches it from Redis.
    await within(1000, answers(b, '/twin-b', { twin: true }));
    assert.equal((await a.request.delete('/_/functions/twin-b').set(auth)).status, 204);
    assert.equal(await keys(), 0, 'the source went with its last name');
  });

  it('a record written on one replica is read, and listed, from the other', async () => {
    const ids: string[] = [];
    for (const [i, t] of [a, b, a].entries()) {
      const res = await t.request.get('/layered').set('X-Request-Id', `shared-rec-${i}`);
      assert.equal(res.status, 200);
      ids.push(res.headers['x-request-id']);
    }
    for (const [reader, id] of [
      [b, ids[0]],
      [a, ids[1]],
      [b, ids[2]],
    ] as const) {
      await within(1000, async () => {
        const res = await reader.request.get(`/_/invocations/${id}`).set(auth);
        return res.status === 200 && res.body.requestId === id && res.body.function === 'layered';
      });
    }
    const listed = await b.request.get('/_/invocations?fn=layered&limit=3').set(auth);
    assert.deepEqual(
      listed.body.invocations.map((r: { requestId: string }) => r.requestId),
      [...ids].reverse(),
      'newest first, from both replicas',
    );
  });

  it('the ring keeps RECORDS_MAX records for the whole cluster', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      const t = i % 2 ? a : b;
      ids.push(
        (await t.request.get('/layered').set('X-Request-Id', `ring-${i}`)).headers['x-request-id'],
      );
    }
    await within(1000, async () => {
      const res = await a.request.get('/_/invocations?limit=1000').set(auth);
      return res.body.invocations[0]?.requestId === ids[59];
    });
    const all = await a.request.get('/_/invocations?limit=1000').set(auth);
    // In the order they were written: two replicas' writes may swap neighbours.
    assert.deepEqual(
      all.body.invocations.map((r: { requestId: string }) => r.requestId).sort(),
      ids.slice(10).sort(),
    );
    assert.equal(await raw.hlen('kf:rec:ids'), 50, 'the id index is bounded too');
    // ring-0 ran on b, and is no longer in the cluster's ring; b's own ring (of 50) still has it.
    const old = await a.request.get(`/_/invocations/${ids[0]}`).set(auth);
    assert.equal(old.status, 404);
  });

  it('a change whose message was lost is picked up by the periodic check within 1 s', async () => {
    const layer = new SharedFunctions({ redisUrl: redis.url, logger: silent, checkMs: 200 });
    await layer.start();
    try {
      const seen: (string | undefined)[] = [];
      layer.subscribe((name) => seen.push(name));
      // Written as a deploy would, but with no message published.
      const entry = {
        language: 'js',
        version: 'lost-message-1',
        hash: 'f'.repeat(64),
        bytes: 1,
        modified: Date.now(),
      };
      await raw.multi().hset('kf:fn:index', 'lost', JSON.stringify(entry)).incr('kf:fn:gen').exec();
      const ms = await within(1000, async () => layer.get('lost')?.version === 'lost-message-1');
      assert.ok(ms < 1000);
      assert.deepEqual(seen, ['lost']);
      await raw.multi().hdel('kf:fn:index', 'lost').incr('kf:fn:gen').exec();
      await within(1000, async () => layer.get('lost') === undefined);
    } finally {
      await layer.close();
    }
  });

  it('with Redis down, held functions answer, deploys fail fast with 503; all recovers', async () => {
    const deploy = (t: TestServer, v: number) =>
      t.request
        .put('/_/functions/outage')
        .set(auth)
        .set('Content-Type', 'application/javascript')
        .send(`() => ({ v: ${v} });`);
    assert.equal((await deploy(a, 1)).status, 201);
    // Not a propagation figure (the first test is): a generous bound for a loaded machine.
    for (const t of [a, b]) await within(5000, answers(t, '/outage', { v: 1 }));
    await redis.stop();
    try {
      for (const t of [a, b]) {
        for (let i = 0; i < 5; i++) {
          assert.deepEqual((await t.request.get('/outage')).body, { v: 1 }, 'warm stays served');
        }
        const started = Date.now();
        const refused = await deploy(t, 2);
        assert.equal(refused.status, 503);
        assert.equal(refused.body.error.code, 'KV_UNAVAILABLE');
        assert.ok(Date.now() - started < 3000, 'fails fast');
        const removed = await t.request.delete('/_/functions/outage').set(auth);
        assert.equal(removed.status, 503);
        const ready = await t.request.get('/_/ready');
        assert.equal(ready.status, 200, 'a Redis outage does not take the replica out');
        assert.equal(ready.body.status, 'degraded');
      }
      // Past the revalidation second, the name is still served from what the replica holds.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      assert.deepEqual((await b.request.get('/outage')).body, { v: 1 });
    } finally {
      await redis.start();
    }
    // The memory-only Redis came back empty: both replicas drop the deploy (nothing in Redis),
    // and a new deploy works and is shared again.
    await within(5000, async () => (await deploy(b, 3)).status === 201);
    for (const t of [a, b]) await within(5000, answers(t, '/outage', { v: 3 }));
  });
});
