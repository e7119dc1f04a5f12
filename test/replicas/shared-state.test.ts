/**
 * Three replicas on one Redis behave as one (docs/spec.md §10), with real processes: a real
 * redis-server, three `node dist/src/main.js` (each with its own FUNCTIONS_DIR and DATA_DIR, as
 * separate pods have) and HAProxy in front. A deploy or delete on any replica is served by all
 * within 1 s, an API deploy overrides a file of the same name and deleting it uncovers the
 * file; KV counts exactly across replicas; a record is found from any replica; each async
 * invocation and each schedule tick runs once in total. Skipped, saying so, when redis-server or
 * haproxy is not installed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Redis from 'ioredis';
import { sleep, until } from '../support/wait';
import { AUTH, CLUSTER_MISSING, call, startCluster } from './cluster';
import type { Cluster, Reply, Replica } from './cluster';

/** docs/spec.md §10: a deploy or delete on any replica is served by every replica within a second. */
const PROPAGATION_MS = 1000;

const FILES: Record<string, string> = {
  hello: "() => 'hello'\n",
  // The read-only layer: baked into every replica's FUNCTIONS_DIR.
  layered: "() => 'from the file'\n",
  count: `module.exports = async (e, c) => {
  try {
    return { n: await c.kv.incr(e.query.key || 'n') };
  } catch (err) {
    return { statusCode: 503, body: { code: err.code, message: err.message } };
  }
};
`,
  echo: `(e, c) => {
  console.log('tag ' + e.query.tag);
  return { tag: e.query.tag };
};
`,
  work: `module.exports = async (e, c) => {
  await new Promise((r) => setTimeout(r, 50));
  return { runs: await c.kv.incr('runs:' + c.requestId), attempt: c.attempt };
};
`,
};

/** A scheduled function: counts each tick by its own time, so a tick run twice shows. */
const TICKER = `module.exports = async (e, c) => {
  await c.kv.incr('fires:' + e.scheduledTime);
};
module.exports.config = { schedule: '* * * * * *' };
`;

let cluster: Cluster;

before(async () => {
  if (CLUSTER_MISSING) return;
  cluster = await startCluster({ files: FILES });
});

after(async () => {
  await cluster?.close();
});

const js = { ...AUTH, 'Content-Type': 'application/javascript' };

function deploy(r: Replica, name: string, source: string): Promise<Reply> {
  return call(r.port, 'PUT', `/_/functions/${name}`, { headers: js, body: source });
}

function remove(r: Replica, name: string): Promise<Reply> {
  return call(r.port, 'DELETE', `/_/functions/${name}`, { headers: AUTH });
}

/** The value of `key` in `fn`'s KV namespace, read on replica `r` (null when absent). */
async function kvValue(r: Replica, fn: string, key: string): Promise<unknown> {
  const reply = await call(r.port, 'GET', `/_/kv/${fn}/${encodeURIComponent(key)}`, {
    headers: AUTH,
  });
  if (reply.status === 404) return null;
  assert.equal(reply.status, 200, reply.text);
  return reply.json;
}

async function kvKeys(r: Replica, fn: string, prefix: string): Promise<string[]> {
  const reply = await call(
    r.port,
    'GET',
    `/_/kv/${fn}?prefix=${encodeURIComponent(prefix)}&limit=1000`,
    { headers: AUTH },
  );
  assert.equal(reply.status, 200, reply.text);
  return (reply.json as { keys: { key: string }[] }).keys.map((k) => k.key);
}

/**
 * How long (ms from now) until each replica answers GET /<name> as `wanted` says; polled every
 * 20 ms on each replica at once, up to `ms` (Infinity for one that never did).
 */
async function timeUntilServed(
  name: string,
  wanted: (reply: Reply) => boolean,
  ms = 3000,
): Promise<Record<string, number>> {
  const started = performance.now();
  const times: Record<string, number> = {};
  const last: Record<string, string> = {};
  await Promise.all(
    cluster.replicas.map(async (r) => {
      times[r.name] = Infinity;
      while (performance.now() - started < ms) {
        const reply = await call(r.port, 'GET', `/${name}`, { timeoutMs: 2000 });
        last[r.name] = `${reply.status} ${reply.text.slice(0, 80)}`;
        if (wanted(reply)) {
          times[r.name] = Math.round(performance.now() - started);
          return;
        }
        await sleep(20);
      }
    }),
  );
  for (const r of cluster.replicas) {
    assert.ok(
      times[r.name] <= PROPAGATION_MS,
      `${r.name} served it after ${times[r.name]} ms (last answer: ${last[r.name]}); all: ` +
        JSON.stringify(times, (_, v: unknown) => (v === Infinity ? 'never' : v)),
    );
  }
  return times;
}

/** Cuts every replica's pub/sub connection (Redis drops the subscribers; they reconnect). */
async function killSubscribers(): Promise<void> {
  const client = new Redis(cluster.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    await client.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
  } finally {
    client.disconnect();
  }
}

void describe('three replicas on one Redis behind HAProxy', { skip: CLUSTER_MISSING }, () => {
  void test('a deploy or delete on any replica is served by every replica within 1 s; an API deploy covers a file of the same name and its delete uncovers it', async (t) => {
    const [r1, r2, r3] = cluster.replicas;
    const fileOf = (r: Replica) => path.join(r.functionsDir, 'layered.js');
    // Every replica holds the file version warm: the override must reach cached entries too.
    await timeUntilServed('layered', (x) => x.status === 200 && x.text === 'from the file');

    const steps: {
      what: string;
      act: () => Promise<Reply>;
      status: number;
      /** What every replica then answers at GET /<name>. */
      serves: { name: string; status: number; text?: string };
      /** Before the act: something that may lose the pub/sub message. */
      before?: () => Promise<void>;
    }[] = [
      {
        what: 'a new function deployed on r1',
        act: () => deploy(r1, 'fresh', "() => 'v1'\n"),
        status: 201,
        serves: { name: 'fresh', status: 200, text: 'v1' },
      },
      {
        what: 'a new version of it deployed on r2',
        act: () => deploy(r2, 'fresh', "() => 'v2'\n"),
        status: 200,
        serves: { name: 'fresh', status: 200, text: 'v2' },
      },
      {
        what: 'it deleted on r3',
        act: () => remove(r3, 'fresh'),
        status: 204,
        serves: { name: 'fresh', status: 404 },
      },
      {
        what: 'a function of the file layer overridden by a deploy on r1',
        act: () => deploy(r1, 'layered', "() => 'from the API'\n"),
        // The name was served already (from the file): a new version of it, not a new function.
        status: 200,
        serves: { name: 'layered', status: 200, text: 'from the API' },
      },
      {
        what: 'a new version of the override deployed on r3 just after the subscribers were cut',
        before: killSubscribers,
        act: () => deploy(r3, 'layered', "() => 'from the API, v2'\n"),
        status: 200,
        serves: { name: 'layered', status: 200, text: 'from the API, v2' },
      },
      {
        what: 'the override deleted on r2: the file is served again',
        act: () => remove(r2, 'layered'),
        status: 204,
        serves: { name: 'layered', status: 200, text: 'from the file' },
      },
    ];
    const report: Record<string, Record<string, number>> = {};
    for (const step of steps) {
      await step.before?.();
      const answer = await step.act();
      assert.equal(answer.status, step.status, `${step.what}: ${answer.text}`);
      const version = (answer.json as { version?: string } | undefined)?.version;
      const { name, status, text } = step.serves;
      report[step.what] = await timeUntilServed(
        name,
        (x) =>
          x.status === status &&
          (text === undefined || x.text === text) &&
          (version === undefined || x.headers['x-function-version'] === version),
      ).catch((err: Error) => {
        throw new Error(`${step.what}: ${err.message}`);
      });
      // The file layer is read-only: a deploy never writes into FUNCTIONS_DIR.
      for (const r of cluster.replicas) {
        assert.equal(fs.readFileSync(fileOf(r), 'utf8'), FILES.layered, `${step.what}: ${r.name}`);
        assert.equal(fs.existsSync(path.join(r.functionsDir, 'fresh.js')), false, step.what);
      }
      // Every replica lists the same version (or none, once deleted).
      for (const r of cluster.replicas) {
        const listed = await call(r.port, 'GET', '/_/functions', { headers: AUTH });
        const fn = (
          listed.json as { functions: { name: string; version: string }[] }
        ).functions.find((f) => f.name === name);
        if (status === 404) assert.equal(fn, undefined, `${step.what}: ${r.name} still lists it`);
        else if (version !== undefined)
          assert.equal(fn?.version, version, `${step.what}: ${r.name}`);
      }
    }
    // Seen by a person reading the test output: how fast each replica followed.
    t.diagnostic(`propagation (ms per replica): ${JSON.stringify(report)}`);
  });

  void test('50 concurrent kv.incr through HAProxy, spread over the three replicas, count exactly 1…50', async () => {
    const rows = [
      { key: 'burst-a', calls: 50 },
      { key: 'burst-b', calls: 50 },
    ];
    for (const row of rows) {
      const replies = await Promise.all(
        Array.from({ length: row.calls }, () =>
          call(cluster.haproxy.port, 'GET', `/count?key=${row.key}`, { timeoutMs: 10_000 }),
        ),
      );
      for (const reply of replies) assert.equal(reply.status, 200, reply.text);
      const values = replies.map((r) => (r.json as { n: number }).n).sort((a, b) => a - b);
      assert.deepEqual(
        values,
        Array.from({ length: row.calls }, (_, i) => i + 1),
      );
      const servedBy = new Map<string, number>();
      for (const reply of replies) {
        const by = String(reply.headers['x-served-by']);
        servedBy.set(by, (servedBy.get(by) ?? 0) + 1);
      }
      assert.deepEqual(
        [...servedBy.keys()].sort(),
        cluster.replicas.map((r) => r.name),
        `served by ${JSON.stringify([...servedBy])}`,
      );
      for (const r of cluster.replicas) assert.equal(await kvValue(r, 'count', row.key), row.calls);
    }
  });

  void test('a record written on one replica is read from every other, by id and by filter', async () => {
    for (const writer of cluster.replicas) {
      const id = `record-${writer.name}-${Date.now()}`;
      const tag = `written-on-${writer.name}`;
      const answer = await call(writer.port, 'GET', `/echo?tag=${tag}`, {
        headers: { 'X-Request-Id': id },
      });
      assert.equal(answer.status, 200);
      for (const reader of cluster.replicas.filter((r) => r !== writer)) {
        let record: Record<string, unknown> | undefined;
        await until(
          `${reader.name} reads the record written on ${writer.name}`,
          async () => {
            const reply = await call(reader.port, 'GET', `/_/invocations/${id}`, { headers: AUTH });
            record = reply.status === 200 ? (reply.json as Record<string, unknown>) : undefined;
            return record !== undefined;
          },
          PROPAGATION_MS,
        );
        assert.equal(record?.requestId, id);
        assert.equal(record?.function, 'echo');
        assert.equal(record?.status, 200);
        assert.deepEqual(record?.logs, [`info\ttag ${tag}`]);
        const listed = await call(reader.port, 'GET', '/_/invocations?fn=echo&limit=100', {
          headers: AUTH,
        });
        const ids = (listed.json as { invocations: { requestId: string }[] }).invocations.map(
          (i) => i.requestId,
        );
        assert.ok(ids.includes(id), `${reader.name} lists ${ids.join(', ')}`);
        const other = await call(reader.port, 'GET', '/_/invocations?fn=hello&limit=100', {
          headers: AUTH,
        });
        assert.ok(
          !(other.json as { invocations: { requestId: string }[] }).invocations.some(
            (i) => i.requestId === id,
          ),
          'the filter by function keeps others out',
        );
      }
    }
  });

  void test('async invocations enqueued on each replica run once in total, and their status is read from another replica', async () => {
    const ids: { id: string; on: Replica; reader: Replica }[] = [];
    const n = cluster.replicas.length;
    for (let i = 0; i < 9; i++) {
      const on = cluster.replicas[i % n];
      const reader = cluster.replicas[(i + 1) % n];
      const id = `async-${i}-${Date.now()}`;
      const answer = await call(on.port, 'POST', '/work', {
        headers: { Prefer: 'respond-async', 'X-Request-Id': id },
      });
      assert.equal(answer.status, 202, answer.text);
      assert.equal(answer.headers.location, `/_/invocations/${id}`);
      ids.push({ id, on, reader });
    }
    for (const { id, on, reader } of ids) {
      let state: { status?: string; attempts?: number; response?: { body: string } } = {};
      await until(
        `${id} (queued on ${on.name}) reads succeeded on ${reader.name}`,
        async () => {
          const reply = await call(reader.port, 'GET', `/_/invocations/${id}`, { headers: AUTH });
          state = reply.json as typeof state;
          return state.status === 'succeeded';
        },
        20_000,
        100,
      );
      assert.equal(state.attempts, 1, JSON.stringify(state));
      assert.deepEqual(JSON.parse(state.response?.body ?? '{}'), { runs: 1, attempt: 1 });
    }
    // Nothing runs a second time afterwards.
    await sleep(1000);
    for (const { id, reader } of ids) {
      assert.equal(await kvValue(reader, 'work', `runs:${id}`), 1, id);
    }
  });

  void test('an every-second schedule fires once per tick in total, not once per replica', async () => {
    const [r1, r2] = cluster.replicas;
    const rows: {
      name: string;
      put: () => Promise<void>;
      remove: () => Promise<void>;
    }[] = [
      {
        name: 'tick-file',
        put: async () => cluster.writeFile('tick-file', TICKER),
        remove: async () => cluster.removeFile('tick-file'),
      },
      {
        name: 'tick-api',
        put: async () => assert.equal((await deploy(r1, 'tick-api', TICKER)).status, 201),
        remove: async () => assert.equal((await remove(r2, 'tick-api')).status, 204),
      },
    ];
    for (const row of rows) {
      await row.put();
      // Every replica has set the schedule up (each lists it), then ticks for a while.
      for (const r of cluster.replicas) {
        await until(
          `${r.name} lists ${row.name}'s schedule`,
          async () => {
            const reply = await call(r.port, 'GET', '/_/schedules', { headers: AUTH });
            return (reply.json as { schedules: { function: string }[] }).schedules.some(
              (s) => s.function === row.name,
            );
          },
          5000,
        );
      }
      const from = Date.now();
      await sleep(4500);
      const to = Date.now();
      await row.remove();
      await sleep(1500); // the last ticks' invocations finish
      const keys = await kvKeys(r1, row.name, 'fires:');
      const times = keys.map((k) => Date.parse(k.slice('fires:'.length))).sort((a, b) => a - b);
      const inWindow = times.filter((t) => t >= from && t <= to);
      // Whole seconds, one each: at least 3 of the ~4 in the window (a loaded machine may miss one).
      assert.ok(inWindow.length >= 3, `${row.name}: ticks ${keys.join(', ')}`);
      assert.ok(inWindow.length <= Math.ceil((to - from) / 1000) + 1, keys.join(', '));
      for (const t of times) assert.equal(t % 1000, 0, `${row.name}: ${new Date(t).toISOString()}`);
      for (const key of keys) {
        assert.equal(
          await kvValue(r1, row.name, key),
          1,
          `${row.name}: ${key} fired more than once`,
        );
      }
    }
  });
});
