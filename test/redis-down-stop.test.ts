/**
 * The real entry with `REDIS_URL` at a port where nothing listens: it starts (what needs Redis
 * fails fast), and a SIGTERM still stops it promptly with exit 0. BullMQ waits for a connection
 * that never comes when it closes; the server's stop must not wait with it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { spawnMain } from './support/server';
import { freePort } from './support/system';
import { eventually } from './support/wait';

void test('with Redis unreachable, SIGTERM stops the server with exit 0 within the bound', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-redis-down-'));
  await fs.mkdir(path.join(dir, 'functions'));
  await fs.writeFile(path.join(dir, 'functions', 'hello.js'), '() => "hi"\n');
  const main = spawnMain({
    cwd: dir,
    inheritEnv: true,
    env: {
      FUNCTIONS_DIR: path.join(dir, 'functions'),
      DATA_DIR: path.join(dir, 'data'),
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    },
  });
  try {
    await eventually(async () => main.logged('listening') !== undefined, 20_000);
    const port = Number(main.logged('listening')?.port);
    // A function the replica holds still answers without Redis.
    const res = await fetch(`http://127.0.0.1:${port}/hello`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hi');
    const sent = performance.now();
    main.child.kill('SIGTERM');
    const { code } = await main.exited;
    const ms = performance.now() - sent;
    assert.equal(code, 0, main.tail().slice(-2000));
    // The bound: 2 s for a schedule scan in flight, 2 s per BullMQ part, and the drain.
    assert.ok(ms < 10_000, `stopped after ${Math.round(ms)} ms`);
  } finally {
    await main.kill();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
