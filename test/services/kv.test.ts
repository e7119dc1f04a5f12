/**
 * The KV store (src/services/kv): one suite, run against each backend — SQLite in a temporary
 * DATA_DIR, and a real redis-server this file starts on a loopback port (skipped, saying so,
 * when redis-server is not installed). Then what only one backend has: the SQLite file surviving
 * a reopen; Redis going down (KV_UNAVAILABLE, bounded) and coming back.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKvStore } from '../../src/services/kv';
import type { KvStore } from '../../src/services/kv';
import type { StoreOptions } from '../../src/services/kv';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';
import { sleep } from '../support/wait';

const LIMITS = { kvMaxValue: 1024, kvMaxBytes: 8 * 1024 };

/** Expects `promise` to reject with a KV error of `code`. */
async function rejectsWith(promise: Promise<unknown>, code: string, why: string) {
  await assert.rejects(promise, (err: Error & { code?: string; statusCode?: number }) => {
    assert.equal(err.code, code, `${why}: ${err.message}`);
    return true;
  });
}

async function listAll(store: KvStore, ns: string, prefix?: string, limit?: number) {
  const keys: string[] = [];
  const pages: number[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list(ns, { prefix, cursor, limit });
    pages.push(page.keys.length);
    keys.push(...page.keys.map((k) => k.key));
    cursor = page.cursor;
  } while (cursor !== undefined && pages.length < 100);
  return { keys, pages };
}

/** The suite every backend passes. `open` makes a store on the same data each time. */
function kvSuite(name: string, open: () => Promise<KvStore>, skip: string | false = false) {
  describe(`KV store: ${name}`, { skip }, () => {
    let store: KvStore;
    before(async () => {
      store = await open();
    });
    after(() => store?.close());

    test('reports its backend and answers ping', async () => {
      assert.equal(store.backend, name);
      assert.equal(await store.ping(), true);
    });

    test('get / put / delete round-trip JSON text of every kind', async () => {
      const values = ['1', '-2.5', '"text"', 'true', 'null', '[1,{"a":[]}]', '{"ü":"€ 😀"}'];
      for (const [i, value] of values.entries()) {
        const key = `rt/${i}`;
        assert.equal(await store.get('rt', key), null);
        assert.equal(await store.put('rt', key, value), true);
        assert.equal(await store.get('rt', key), value);
        assert.equal(await store.put('rt', key, '"replaced"'), true);
        assert.equal(await store.get('rt', key), '"replaced"');
        assert.equal(await store.delete('rt', key), true);
        assert.equal(await store.delete('rt', key), false);
        assert.equal(await store.get('rt', key), null);
      }
    });

    test('keys: any characters, up to 512 bytes of UTF-8', async () => {
      const keys = [
        'a',
        'with/slash',
        'sp ace',
        'nul\u0000byte',
        'ü€😀',
        '%2F',
        'x'.repeat(512),
        '😀'.repeat(128),
      ];
      for (const key of keys) {
        assert.equal(await store.put('keys', key, JSON.stringify(key)), true, key);
        assert.equal(await store.get('keys', key), JSON.stringify(key), key);
      }
      const listed = (await listAll(store, 'keys')).keys;
      assert.deepEqual(
        listed,
        [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
      );
    });

    test('each limit gives its code, and nothing is written', async () => {
      const cases: { what: string; call: () => Promise<unknown>; code: string }[] = [
        { what: 'empty key', call: () => store.put('lim', '', '1'), code: 'KV_INVALID_KEY' },
        {
          what: '513-byte key',
          call: () => store.put('lim', 'x'.repeat(513), '1'),
          code: 'KV_INVALID_KEY',
        },
        {
          what: '257 two-byte chars',
          call: () => store.get('lim', 'ü'.repeat(257)),
          code: 'KV_INVALID_KEY',
        },
        {
          what: 'lone surrogate',
          call: () => store.put('lim', 'a\ud800', '1'),
          code: 'KV_INVALID_KEY',
        },
        {
          what: 'non-string key',
          call: () => store.get('lim', 7 as unknown as string),
          code: 'KV_INVALID_KEY',
        },
        {
          what: 'value over max',
          call: () => store.put('lim', 'big', `"${'v'.repeat(1023)}"`),
          code: 'KV_VALUE_TOO_LARGE',
        },
        {
          what: 'ttl 0',
          call: () => store.put('lim', 'k', '1', { ttl: 0 }),
          code: 'KV_INVALID_ARGUMENT',
        },
        {
          what: 'ttl 1.5',
          call: () => store.put('lim', 'k', '1', { ttl: 1.5 }),
          code: 'KV_INVALID_ARGUMENT',
        },
        {
          what: 'limit 0',
          call: () => store.list('lim', { limit: 0 }),
          code: 'KV_INVALID_ARGUMENT',
        },
        {
          what: 'limit 1001',
          call: () => store.list('lim', { limit: 1001 }),
          code: 'KV_INVALID_ARGUMENT',
        },
        {
          what: 'forged cursor',
          call: () => store.list('lim', { cursor: '!!' }),
          code: 'KV_INVALID_ARGUMENT',
        },
        {
          what: 'incr by NaN',
          call: () => store.incr('lim', 'n', NaN),
          code: 'KV_INVALID_ARGUMENT',
        },
      ];
      for (const row of cases) await rejectsWith(row.call(), row.code, row.what);
      assert.deepEqual((await store.list('lim')).keys, []);
      // Exactly at the value limit is fine.
      assert.equal(await store.put('lim', 'edge', `"${'v'.repeat(1022)}"`), true);
      await store.clear('lim');
    });

    test('the namespace quota counts keys and values, and frees on delete', async () => {
      const value = `"${'q'.repeat(998)}"`; // 1000 bytes; key 'qNN' 3 bytes → 1003 per key
      let written = 0;
      for (; written < 20; written++) {
        try {
          await store.put('quota', `q${String(written).padStart(2, '0')}`, value);
        } catch (err) {
          assert.equal((err as { code?: string }).code, 'KV_QUOTA_EXCEEDED');
          break;
        }
      }
      assert.equal(written, Math.floor(LIMITS.kvMaxBytes / 1003));
      // Filling to exactly the quota fits; replacing a value with one of the same size too.
      const room = LIMITS.kvMaxBytes - written * 1003 - 'fill'.length;
      assert.equal(await store.put('quota', 'fill', `"${'f'.repeat(room - 2)}"`), true);
      assert.equal(await store.put('quota', 'q00', value), true);
      await rejectsWith(
        store.put('quota', 'q00', `${value} `),
        'KV_QUOTA_EXCEEDED',
        'one byte more',
      );
      await rejectsWith(
        store.incr('quota', 'counter'),
        'KV_QUOTA_EXCEEDED',
        'incr on a full namespace',
      );
      await rejectsWith(store.put('quota', 'x', '1', { ttl: 5 }), 'KV_QUOTA_EXCEEDED', 'with ttl');
      assert.equal(await store.get('quota', 'q00'), value);
      assert.equal(await store.delete('quota', 'q00'), true);
      assert.equal(await store.incr('quota', 'counter'), 1);
      // Another namespace is not affected.
      assert.equal(await store.put('quota-other', 'k', value), true);
      assert.equal(await store.clear('quota'), written + 1);
      assert.equal(await store.put('quota', 'k', value), true);
      await store.clear('quota');
      await store.clear('quota-other');
    });

    test('incr: counts from 0, adds any step, refuses non-numbers and unsafe results', async () => {
      assert.equal(await store.incr('incr', 'a'), 1);
      assert.equal(await store.incr('incr', 'a', 41), 42);
      assert.equal(await store.incr('incr', 'a', -50), -8);
      assert.equal(await store.get('incr', 'a'), '-8');
      assert.equal(await store.incr('incr', 'f', 0.1), 0.1);
      assert.equal(await store.incr('incr', 'f', 0.2), 0.1 + 0.2);
      assert.equal(Number(JSON.parse((await store.get('incr', 'f'))!)), 0.1 + 0.2);
      await store.put('incr', 'big', String(Number.MAX_SAFE_INTEGER - 1));
      assert.equal(await store.incr('incr', 'big'), Number.MAX_SAFE_INTEGER);
      await rejectsWith(store.incr('incr', 'big'), 'KV_NOT_A_NUMBER', 'past 2^53 - 1');
      assert.equal(await store.get('incr', 'big'), String(Number.MAX_SAFE_INTEGER));
      for (const value of ['"7"', 'null', 'true', '[1]', '{"n":1}']) {
        await store.put('incr', 'x', value);
        await rejectsWith(store.incr('incr', 'x'), 'KV_NOT_A_NUMBER', value);
        assert.equal(await store.get('incr', 'x'), value);
      }
      await store.clear('incr');
    });

    test('50 concurrent incr → exactly 1..50', async () => {
      const results = await Promise.all(Array.from({ length: 50 }, () => store.incr('conc', 'n')));
      assert.deepEqual(
        [...results].sort((a, b) => a - b),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      assert.equal(await store.get('conc', 'n'), '50');
    });

    test('ifAbsent writes only a missing key', async () => {
      assert.equal(await store.put('abs', 'k', '1', { ifAbsent: true }), true);
      assert.equal(await store.put('abs', 'k', '2', { ifAbsent: true }), false);
      assert.equal(await store.get('abs', 'k'), '1');
      const racing = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.put('abs', 'race', String(i), { ifAbsent: true }),
        ),
      );
      assert.equal(racing.filter(Boolean).length, 1);
    });

    test('ttl: listed with expiresAt, gone after it (get, list, incr, ifAbsent), swept', async () => {
      const t0 = Date.now();
      await store.put('ttl', 'short', '"s"', { ttl: 1 });
      await store.put('ttl', 'counter', '5', { ttl: 1 });
      await store.put('ttl', 'long', '"l"', { ttl: 3600 });
      await store.put('ttl', 'forever', '"f"');
      assert.equal(await store.incr('ttl', 'counter'), 6); // keeps its TTL
      const page = await store.list('ttl');
      const byKey = new Map(page.keys.map((k) => [k.key, k.expiresAt]));
      assert.deepEqual([...byKey.keys()], ['counter', 'forever', 'long', 'short']);
      assert.equal(byKey.get('forever'), undefined);
      for (const [key, ttl] of [
        ['short', 1],
        ['counter', 1],
        ['long', 3600],
      ] as const) {
        const at = byKey.get(key)!;
        assert.ok(
          at >= t0 + ttl * 1000 - 50 && at <= Date.now() + ttl * 1000 + 50,
          `${key}: ${at}`,
        );
      }
      await sleep(2000);
      assert.equal(await store.get('ttl', 'short'), null);
      assert.equal(await store.get('ttl', 'counter'), null);
      assert.equal(await store.get('ttl', 'long'), '"l"');
      assert.deepEqual(
        (await store.list('ttl')).keys.map((k) => k.key),
        ['forever', 'long'],
      );
      assert.equal(await store.incr('ttl', 'counter'), 1); // counts from 0 again, without a TTL
      assert.equal(await store.put('ttl', 'short', '"again"', { ifAbsent: true }), true);
      // Rewriting without ttl removes the TTL.
      await store.put('ttl', 'long', '"kept"');
      assert.equal((await store.list('ttl', { prefix: 'long' })).keys[0].expiresAt, undefined);
      // The background sweeper removes what nobody reads (its tick, called directly here).
      await store.put('ttl', 'unread', '1', { ttl: 1 });
      await sleep(1100);
      const sweeper = store as unknown as { sweep(): number | Promise<number> };
      assert.ok((await sweeper.sweep()) >= 1);
      assert.equal(await store.clear('ttl'), 4);
    });

    test('250 keys list in pages of 100, in order, no repeats, with and without prefix', async () => {
      const keys = Array.from({ length: 250 }, (_, i) => `item:${String(i).padStart(3, '0')}`);
      // Written out of order, with neighbours that the prefix must leave out.
      for (const key of [...keys].reverse()) await store.put('page', key, '0');
      for (const key of ['item', 'item;', 'iteM:1', 'aaa', 'zzz'])
        await store.put('page', key, '0');
      const { keys: listed, pages } = await listAll(store, 'page', 'item:', 100);
      assert.deepEqual(pages, [100, 100, 50]);
      assert.deepEqual(listed, keys);
      const all = await listAll(store, 'page');
      assert.equal(all.keys.length, 255);
      assert.equal(new Set(all.keys).size, 255);
      assert.deepEqual(all.pages, [100, 100, 55]);
      // A page that ends exactly at the end has no cursor.
      const exact = await store.list('page', { prefix: 'item:', limit: 250 });
      assert.equal(exact.keys.length, 250);
      assert.equal(exact.cursor, undefined);
      // Writes between pages: a key after the cursor shows up, one before it does not repeat.
      const first = await store.list('page', { prefix: 'item:', limit: 100 });
      await store.put('page', 'item:000a', '0');
      await store.put('page', 'item:200a', '0');
      await store.delete('page', 'item:150');
      const rest = await listAll(store, 'page', 'item:', 100);
      const after = await store.list('page', {
        prefix: 'item:',
        cursor: first.cursor,
        limit: 1000,
      });
      assert.equal(after.keys[0].key, 'item:100');
      assert.ok(after.keys.some((k) => k.key === 'item:200a'));
      assert.ok(!after.keys.some((k) => k.key === 'item:150' || k.key === 'item:000a'));
      assert.equal(rest.keys.length, 251);
      assert.equal(await store.clear('page'), 256);
    });

    test('namespaces are isolated, whatever their names', async () => {
      const names = ['a', 'a/b', 'a%2Fb', 'a:b', 'a}b{', 'ab'];
      for (const ns of names) await store.put(ns, 'k', JSON.stringify(ns));
      for (const ns of names) {
        assert.equal(await store.get(ns, 'k'), JSON.stringify(ns));
        assert.deepEqual((await store.list(ns)).keys, [{ key: 'k' }]);
      }
      assert.equal(await store.clear('a'), 1);
      assert.equal(await store.get('a', 'k'), null);
      assert.equal(await store.get('a/b', 'k'), '"a/b"');
      assert.equal(await store.clear('a'), 0);
      for (const ns of names) await store.clear(ns);
    });
  });
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kf-kv-'));
const sqliteOptions: StoreOptions = { dataDir, ...LIMITS };
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

kvSuite('sqlite', () => createKvStore(sqliteOptions));

let redis: TestRedis | undefined;
const redisOpen = async () => {
  redis ??= await startRedis();
  return createKvStore({ ...sqliteOptions, redisUrl: redis.url });
};
kvSuite('redis', redisOpen, REDIS_MISSING);

describe('KV store: sqlite file', () => {
  test('data survives closing and reopening; the folder is created', async () => {
    const dir = path.join(dataDir, 'nested', 'data');
    const first = await createKvStore({ ...LIMITS, dataDir: dir });
    await first.put('keep', 'k', '{"v":1}');
    await first.put('keep', 'gone', '1', { ttl: 1 });
    assert.equal(await first.incr('keep', 'n', 3), 3);
    await first.close();
    await rejectsWith(first.get('keep', 'k'), 'KV_UNAVAILABLE', 'after close');
    assert.ok(fs.existsSync(path.join(dir, 'koa-faas.db')));
    const second = await createKvStore({ ...LIMITS, dataDir: dir });
    assert.equal(await second.get('keep', 'k'), '{"v":1}');
    assert.equal(await second.incr('keep', 'n'), 4);
    await sleep(1100);
    assert.equal(await second.clear('keep'), 2);
    await second.close();
  });
});

describe('KV store: redis down and back', { skip: REDIS_MISSING }, () => {
  let server: TestRedis;
  let store: KvStore;
  before(async () => {
    server = await startRedis();
    store = await createKvStore({ ...sqliteOptions, redisUrl: server.url });
    for (let i = 0; i < 50 && !(await store.ping()); i++) await sleep(100);
  });
  after(async () => {
    await store?.close();
    await server?.close();
    await redis?.close();
  });

  test('calls fail with KV_UNAVAILABLE within a bounded time, then work again', async () => {
    await store.put('down', 'k', '1');
    await server.stop();
    const calls: [string, () => Promise<unknown>][] = [
      ['get', () => store.get('down', 'k')],
      ['put', () => store.put('down', 'k', '2')],
      ['incr', () => store.incr('down', 'n')],
      ['list', () => store.list('down')],
    ];
    for (const [what, call] of calls) {
      const started = Date.now();
      await rejectsWith(call(), 'KV_UNAVAILABLE', what);
      const took = Date.now() - started;
      assert.ok(took < 3000, `${what} took ${took} ms`);
    }
    assert.equal(await store.ping(), false);
    await server.start();
    let back = false;
    for (let i = 0; i < 100 && !back; i++) {
      back = await store.ping();
      if (!back) await sleep(100);
    }
    assert.equal(back, true, 'reconnected');
    // The server restarted empty (no persistence): the store works on it.
    assert.equal(await store.get('down', 'k'), null);
    assert.equal(await store.incr('down', 'n'), 1);
  });
});
