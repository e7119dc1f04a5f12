/**
 * The real entry with `REDIS_URL` at a port where nothing listens: it starts (what needs Redis
 * fails fast), and a SIGTERM still stops it promptly with exit 0. BullMQ waits for a connection
 * that never comes when it closes; the server's stop must not wait with it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { eventually } from './helpers';

const ROOT = path.join(__dirname, '..', '..');

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

void test('with Redis unreachable, SIGTERM stops the server with exit 0 within the bound', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-redis-down-'));
  await fs.mkdir(path.join(dir, 'functions'));
  await fs.writeFile(path.join(dir, 'functions', 'hello.js'), '() => "hi"\n');
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'src', 'main.js')], {
    cwd: dir,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      FUNCTIONS_DIR: path.join(dir, 'functions'),
      DATA_DIR: path.join(dir, 'data'),
      REDIS_URL: `redis://127.0.0.1:${await closedPort()}`,
      WORKERS: '2',
      LOG_FORMAT: 'json',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  try {
    await eventually(async () => out.includes('"listening"'), 20_000);
    const port = Number(/"port":(\d+)/.exec(out.slice(out.indexOf('"listening"') - 300))?.[1]);
    // A function the replica holds still answers without Redis.
    const res = await fetch(`http://127.0.0.1:${port}/hello`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hi');
    const sent = performance.now();
    child.kill('SIGTERM');
    const code = await exited;
    const ms = performance.now() - sent;
    assert.equal(code, 0, out.slice(-2000));
    // The bound: 2 s for a schedule scan in flight, 2 s per BullMQ part, and the drain.
    assert.ok(ms < 10_000, `stopped after ${Math.round(ms)} ms`);
  } finally {
    child.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  }
});
