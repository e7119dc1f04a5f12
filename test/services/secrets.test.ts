/**
 * The secret store (src/services/secrets.ts), against SQLite and a real redis-server (skipped,
 * saying so, when redis-server is not installed): names, limits, listing without values, and
 * values() returning only the named, existing secrets.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createStores } from '../../src/services/kv';
import type { Stores } from '../../src/services/kv';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kf-secrets-'));
const base = { dataDir, kvMaxValue: 1024, kvMaxBytes: 8192 };
let redis: TestRedis | undefined;
after(async () => {
  await redis?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function secretSuite(name: string, open: () => Promise<Stores>, skip: string | false = false) {
  describe(`secrets: ${name}`, { skip }, () => {
    let stores: Stores;
    before(async () => {
      stores = await open();
    });
    after(() => stores?.close());

    test('set creates then replaces; list has names and times, never values', async () => {
      const { secrets } = stores;
      const before = Date.now();
      assert.deepEqual(await secrets.set('API_KEY', 'first-value'), { created: true });
      assert.deepEqual(await secrets.set('API_KEY', 'second-value'), { created: false });
      assert.deepEqual(await secrets.set('_hook', 'ü€😀\nline'), { created: true });
      const listed = await secrets.list();
      assert.deepEqual(
        listed.map((s) => s.name),
        ['API_KEY', '_hook'],
      );
      for (const entry of listed) {
        assert.deepEqual(Object.keys(entry).sort(), ['name', 'updatedAt']);
        const at = Date.parse(entry.updatedAt);
        assert.ok(at >= before - 1000 && at <= Date.now() + 1000, entry.updatedAt);
      }
      assert.equal(JSON.stringify(listed).includes('value'), false);
      assert.deepEqual(await secrets.values(['API_KEY', '_hook', 'MISSING']), {
        API_KEY: 'second-value',
        _hook: 'ü€😀\nline',
      });
      assert.deepEqual(await secrets.values([]), {});
      assert.equal(await secrets.delete('API_KEY'), true);
      assert.equal(await secrets.delete('API_KEY'), false);
      assert.deepEqual(await secrets.values(['API_KEY']), {});
      assert.equal(await secrets.delete('_hook'), true);
    });

    test('names and values out of bounds are refused with their codes', async () => {
      const { secrets } = stores;
      const cases: [string, () => Promise<unknown>, string][] = [
        ['empty name', () => secrets.set('', 'v'), 'INVALID_SECRET'],
        ['digit first', () => secrets.set('1ABC', 'v'), 'INVALID_SECRET'],
        ['dash', () => secrets.set('A-B', 'v'), 'INVALID_SECRET'],
        ['129 chars', () => secrets.set('A'.repeat(129), 'v'), 'INVALID_SECRET'],
        ['empty value', () => secrets.set('A', ''), 'INVALID_SECRET'],
        ['64 KiB + 1', () => secrets.set('A', 'x'.repeat(65537)), 'PAYLOAD_TOO_LARGE'],
        ['delete bad name', () => secrets.delete('a b'), 'INVALID_SECRET'],
      ];
      for (const [what, call, code] of cases) {
        await assert.rejects(call(), (err: { code?: string }) => err.code === code, what);
      }
      assert.deepEqual(await secrets.set('A'.repeat(128), 'x'.repeat(65536)), { created: true });
      assert.deepEqual(await secrets.list().then((l) => l.map((s) => s.name)), ['A'.repeat(128)]);
      assert.equal(await secrets.delete('A'.repeat(128)), true);
    });

    test('secrets and KV share the connection and close together', async () => {
      await stores.kv.put('fn', 'k', '1');
      assert.equal(await stores.kv.get('fn', 'k'), '1');
      await stores.secrets.set('SHARED', 'yes');
      assert.deepEqual(await stores.secrets.values(['SHARED']), { SHARED: 'yes' });
      await stores.secrets.delete('SHARED');
      await stores.kv.clear('fn');
    });
  });
}

secretSuite('sqlite', () => createStores(base));
secretSuite(
  'redis',
  async () => {
    redis ??= await startRedis();
    return createStores({ ...base, redisUrl: redis.url });
  },
  REDIS_MISSING,
);

void test('sqlite: secrets survive reopening', async () => {
  const dir = path.join(dataDir, 'reopen');
  const first = await createStores({ ...base, dataDir: dir });
  await first.secrets.set('KEEP', 'kept');
  await first.close();
  await assert.rejects(
    first.secrets.list(),
    (err: { code?: string }) => err.code === 'KV_UNAVAILABLE',
  );
  const second = await createStores({ ...base, dataDir: dir });
  assert.deepEqual(await second.secrets.values(['KEEP']), { KEEP: 'kept' });
  await second.close();
});
