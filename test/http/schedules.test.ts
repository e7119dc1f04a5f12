/**
 * Schedules end to end (docs/spec.md §9): `config.schedule` on the real server, ticks as async
 * invocations on real workers, croner on one machine (SQLite) and BullMQ's job schedulers on a
 * real redis-server; deploy, redeploy and delete through the admin API and through files in
 * FUNCTIONS_DIR; and two servers sharing one Redis, where each tick fires once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { tickRequestId } from '../../src/async/async-runner';
import { startServer } from '../support/server';
import { eventually, sleep } from '../support/wait';
import type { TestServer } from '../support/server';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';

const TOKEN = 'a-test-admin-token-0123456789';
const AUTH = { Authorization: `Bearer ${TOKEN}` };
interface Listing {
  function: string;
  schedule: string;
  timezone: string;
  next?: string;
}

/** A function that counts its ticks in its KV namespace and keeps the last event. */
const ticker = (config: Record<string, unknown>) =>
  `module.exports = async (e, c) => {
  await c.kv.incr('n');
  await c.kv.put('last', e);
  return 'ticked';
};
module.exports.config = ${JSON.stringify(config)};
`;

async function schedules(t: TestServer): Promise<Listing[]> {
  const res = await t.request.get('/_/schedules').set(AUTH);
  assert.equal(res.status, 200);
  return (res.body as { schedules: Listing[] }).schedules;
}

async function count(t: TestServer, fn: string): Promise<number> {
  const res = await t.request.get(`/_/kv/${fn}/n`).set(AUTH);
  return res.status === 404 ? 0 : Number(res.text);
}

/** Waits until `fn`'s schedules are exactly `expected` (expression, zone). */
async function listed(t: TestServer, fn: string, expected: [string, string][]): Promise<Listing[]> {
  let mine: Listing[] = [];
  await eventually(async () => {
    mine = (await schedules(t)).filter((s) => s.function === fn);
    return JSON.stringify(mine.map((s) => [s.schedule, s.timezone])) === JSON.stringify(expected);
  }, 15_000).catch((err: Error) => {
    // Say what the server said about its schedules.
    const said = t.logs.filter((l) => /schedule/.test(String(l.msg)));
    throw new Error(`${err.message}: ${fn} has ${JSON.stringify(mine)}; ${JSON.stringify(said)}`);
  });
  return mine;
}

/** Ticks of `fn` counted over `ms`. */
async function ticksIn(t: TestServer, fn: string, ms: number): Promise<number> {
  const before = await count(t, fn);
  await sleep(ms);
  return (await count(t, fn)) - before;
}

function scheduleSuite(name: string, env: () => Record<string, string>, skip: string | false) {
  describe(`schedules: ${name}`, { skip }, () => {
    let t: TestServer;
    const fn = `tick-${name}`;
    before(async () => {
      t = await startServer({
        functions: {
          // Found at start: a yearly schedule, read in Tokyo.
          [`early-${name}`]: ticker({ schedule: '0 0 1 1 *', timezone: 'Asia/Tokyo' }),
          [`plain-${name}`]: `module.exports = () => 'no schedule';\n`,
        },
        env: { ADMIN_TOKEN: TOKEN, ...env() },
      });
    });
    after(() => t?.close());

    test('a function on disk at start is scheduled; next is read in its time zone', async () => {
      const [early] = await listed(t, `early-${name}`, [['0 0 1 1 *', 'Asia/Tokyo']]);
      // Midnight on 1 January in Tokyo is 15:00 UTC on 31 December.
      assert.match(early.next ?? '', /^\d{4}-12-31T15:00:00\.000Z$/);
      assert.ok(Date.parse(early.next ?? '') > Date.now());
      assert.equal((await schedules(t)).filter((s) => s.function === `plain-${name}`).length, 0);
    });

    test('GET /_/schedules needs the token', async () => {
      assert.equal((await t.request.get('/_/schedules')).status, 401);
    });

    test('an every-second schedule fires 4–6 times in 5 s, with the event of docs/spec.md §9', async () => {
      const put = await t.request
        .put(`/_/functions/${fn}`)
        .set(AUTH)
        .set('Content-Type', 'application/javascript')
        .send(ticker({ schedule: '* * * * * *' }));
      assert.equal(put.status, 201);
      const [listing] = await listed(t, fn, [['* * * * * *', 'UTC']]);
      const next = Date.parse(listing.next ?? '');
      assert.ok(next > Date.now() - 1000 && next <= Date.now() + 1000, listing.next);
      const n = await ticksIn(t, fn, 5000);
      assert.ok(n >= 4 && n <= 6, `${n} ticks in 5 s`);
      const last = (await t.request.get(`/_/kv/${fn}/last`).set(AUTH)).body as Record<
        string,
        unknown
      >;
      assert.deepEqual(Object.keys(last).sort(), [
        'method',
        'path',
        'schedule',
        'scheduledTime',
        'source',
      ]);
      assert.equal(last.source, 'schedule');
      assert.equal(last.schedule, '* * * * * *');
      assert.equal(last.method, 'POST');
      assert.equal(last.path, `/${fn}`);
      assert.match(String(last.scheduledTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
      // Ticks are async invocations: recorded, listed.
      const done = await t.request
        .get(`/_/invocations?status=succeeded&fn=${fn}&limit=3`)
        .set(AUTH);
      const states = (done.body as { invocations: Record<string, unknown>[] }).invocations;
      assert.equal(states.length, 3);
      for (const state of states) {
        assert.equal(state.source, 'schedule');
        assert.equal(state.schedule, '* * * * * *');
        assert.match(String(state.requestId), /^tick-[0-9a-f]{32}$/);
      }
      const metrics = (await t.request.get('/_/metrics')).text;
      const ticks = Number(
        new RegExp(`faas_schedule_ticks_total\\{function="${fn}"\\} (\\d+)`).exec(metrics)?.[1],
      );
      assert.ok(ticks >= n, `${ticks} ticks counted, ${n} ran`);
    });

    test('redeployed with another schedule: it changes at once', async () => {
      const put = await t.request
        .put(`/_/functions/${fn}`)
        .set(AUTH)
        .set('Content-Type', 'application/javascript')
        .send(ticker({ schedule: ['*/2 * * * * *'], timezone: 'Europe/Berlin' }));
      assert.equal(put.status, 200);
      await listed(t, fn, [['*/2 * * * * *', 'Europe/Berlin']]);
      const n = await ticksIn(t, fn, 6000);
      assert.ok(n >= 2 && n <= 4, `${n} ticks in 6 s every 2 s`);
    });

    test('deleted: its schedule goes and it fires no more', async () => {
      assert.equal((await t.request.delete(`/_/functions/${fn}`).set(AUTH)).status, 204);
      await listed(t, fn, []);
      // A tick queued just before the delete finds no function: it is not run.
      await sleep(500);
      assert.equal(await ticksIn(t, fn, 2500), 0);
    });

    test('a file appearing, changing and going in FUNCTIONS_DIR adds, changes and removes it', async () => {
      const file = `file-${name}`;
      await t.writeFunction(file, ticker({ schedule: '0 12 * * MON-FRI' }));
      await listed(t, file, [['0 12 * * MON-FRI', 'UTC']]);
      await t.writeFunction(file, ticker({ schedule: ['0 6 * * *', '30 18 * * *'] }));
      await listed(t, file, [
        ['0 6 * * *', 'UTC'],
        ['30 18 * * *', 'UTC'],
      ]);
      await t.writeFunction(file, `module.exports = () => 'schedule removed';\n`);
      await listed(t, file, []);
      await t.writeFunction(file, ticker({ schedule: '15 * * * *' }));
      await listed(t, file, [['15 * * * *', 'UTC']]);
      await t.removeFunction(file);
      await listed(t, file, []);
    });

    test('a bad schedule or zone is refused on deploy (422), naming the key', async () => {
      // [config, message]
      const rows: [Record<string, unknown>, RegExp][] = [
        [{ schedule: '* * * *' }, /config\.schedule holds "\* \* \* \*"/],
        [{ schedule: '61 * * * *' }, /config\.schedule holds "61 \* \* \* \*"/],
        [{ schedule: '1 2 3 4 5 6 7' }, /config\.schedule/],
        [{ schedule: '0 0 30 2 *' }, /config\.schedule holds "0 0 30 2 \*", which never fires/],
        [{ schedule: [] }, /config\.schedule must be a cron expression or an array/],
        [{ schedule: 5 }, /config\.schedule holds 5/],
        [
          { schedule: '* * * * *', timezone: 'Mars/Olympus' },
          /config\.timezone is "Mars\/Olympus"/,
        ],
        [{ async: { retries: 11 } }, /config\.async\.retries must be a whole number from 0 to 10/],
        [{ async: { maxAge: 5 } }, /config\.async\.maxAge is not a key of it/],
      ];
      for (const [config, message] of rows) {
        const res = await t.request
          .put(`/_/functions/bad-${name}`)
          .set(AUTH)
          .set('Content-Type', 'application/javascript')
          .send(ticker(config));
        assert.equal(res.status, 422, JSON.stringify(config));
        const error = (res.body as { error: { code: string; message: string } }).error;
        assert.equal(error.code, 'FUNCTION_COMPILE_ERROR');
        assert.match(error.message, message);
      }
      await listed(t, `bad-${name}`, []);
    });
  });
}

scheduleSuite('sqlite', () => ({}), false);

describe("schedules: a caller cannot take a tick's request id", () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      functions: {
        every: ticker({ schedule: '* * * * * *' }),
        other: `module.exports = () => 'other';\n`,
      },
      env: { ADMIN_TOKEN: TOKEN },
    });
  });
  after(() => t?.close());

  test('X-Request-Id tick-… is replaced by a new id, sync or async, and each tick still runs', async () => {
    const [listing] = await listed(t, 'every', [['* * * * * *', 'UTC']]);
    const next = Date.parse(listing.next ?? '');
    // A tick's id is a hash anyone can compute (the croner ticker's tick: function, zone,
    // expression, time). Ticks 2–5 s ahead, each sent once: [method, path, Prefer].
    const rows: [string, string, string | undefined][] = [
      ['POST', '/other', 'respond-async'],
      ['POST', '/every', 'respond-async'],
      ['GET', '/other', undefined],
      ['POST', '/every', undefined],
    ];
    const ids = rows.map((_, i) => tickRequestId(`every|UTC|* * * * * *|${next + (i + 2) * 1000}`));
    for (const [i, [method, path, prefer]] of rows.entries()) {
      let req = method === 'GET' ? t.request.get(path) : t.request.post(path);
      if (prefer) req = req.set('Prefer', prefer);
      const res = await req.set('X-Request-Id', ids[i]);
      assert.ok(res.status === 200 || res.status === 202, `${method} ${path}: ${res.status}`);
      assert.notEqual(res.headers['x-request-id'], ids[i], `${method} ${path} ${prefer ?? ''}`);
      assert.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
    }
    await sleep(Math.max(0, next + 6500 - Date.now()));
    for (const [i, id] of ids.entries()) {
      const res = await t.request.get(`/_/invocations/${id}`).set(AUTH);
      assert.equal(res.status, 200, `tick ${i + 2}: ${res.text}`);
      const state = res.body as { function: string; source: string; status: string };
      assert.deepEqual(
        [state.function, state.source, state.status],
        ['every', 'schedule', 'succeeded'],
        `tick ${i + 2}`,
      );
    }
  });
});

let redis: TestRedis | undefined;
if (!REDIS_MISSING) {
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis?.close());
}
scheduleSuite('redis', () => ({ REDIS_URL: (redis as TestRedis).url }), REDIS_MISSING);

describe('schedules: two servers sharing one Redis', { skip: REDIS_MISSING }, () => {
  const servers: TestServer[] = [];
  before(async () => {
    // Replicas: the same function file in each one's FUNCTIONS_DIR.
    for (let i = 0; i < 2; i++) {
      servers.push(
        await startServer({
          functions: { shared: ticker({ schedule: '* * * * * *' }) },
          env: { ADMIN_TOKEN: TOKEN, REDIS_URL: (redis as TestRedis).url },
        }),
      );
    }
  });
  after(async () => {
    for (const s of servers) await s.close();
  });

  test('each tick fires once, not once per server', async () => {
    for (const s of servers) await listed(s, 'shared', [['* * * * * *', 'UTC']]);
    // Let both settle (the first ticks), then count over 5 s.
    await sleep(1500);
    const n = await ticksIn(servers[0], 'shared', 5000);
    assert.ok(n >= 4 && n <= 6, `${n} ticks in 5 s across two servers`);
    const fired = await Promise.all(
      servers.map(async (s) => {
        const text = (await s.request.get('/_/metrics')).text;
        return Number(/faas_schedule_ticks_total\{function="shared"\} (\d+)/.exec(text)?.[1] ?? 0);
      }),
    );
    // Every tick so far fired on one server or the other, never on both.
    const total = await count(servers[0], 'shared');
    assert.ok(Math.abs(fired[0] + fired[1] - total) <= 1, `${fired.join(' + ')} vs ${total}`);
  });
});
