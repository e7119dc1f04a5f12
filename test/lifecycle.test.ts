/**
 * The process lifecycle of the real entry (node dist/src/main.js): configuration errors, start-up
 * failures, a graceful SIGTERM drain, a second signal, and no worker process left behind.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { spawnMain, startMain } from './support/server';
import type { MainProcess } from './support/server';
import { childPids, isAlive } from './support/system';
import { eventually, sleep } from './support/wait';

const spawned: MainProcess[] = [];
const workerPids = new Set<number>();
let dir: string;

function start(env: Record<string, string>): MainProcess {
  const proc = spawnMain({ env: { FUNCTIONS_DIR: dir, FUNCTION_TIMEOUT_MS: '5000', ...env } });
  spawned.push(proc);
  return proc;
}

function logged(proc: MainProcess, msg: string): Record<string, unknown> | undefined {
  return proc.lines.find((l) => l.msg === msg);
}

/** Starts the server and waits for its `listening` line; returns the port and its worker pids. */
async function startListening(env: Record<string, string> = {}) {
  const proc = await startMain({
    env: { FUNCTIONS_DIR: dir, FUNCTION_TIMEOUT_MS: '5000', ...env },
    timeoutMs: 15_000,
  });
  spawned.push(proc);
  const port = proc.port;
  assert.ok(port > 0);
  // Two shared workers and the solo lane's spare (started just after the pool, docs/spec.md §3).
  await eventually(async () => childPids(proc.pid).length === 3, 10_000).catch(() => undefined);
  const workers = childPids(proc.pid);
  const lanes = workers.map(
    (pid) => /"lane":"(\w+)"/.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))?.[1],
  );
  assert.deepEqual(
    lanes.sort(),
    ['shared', 'shared', 'solo'],
    `worker processes: ${workers.join(', ')}`,
  );
  for (const pid of workers) {
    assert.ok(running(pid));
    workerPids.add(pid);
  }
  return { proc, port, workers };
}

interface Reply {
  status?: number;
  body?: string;
  error?: NodeJS.ErrnoException;
}

/** One GET on a new connection; never rejects. */
function get(port: number, urlPath: string): Promise<Reply> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', (error) => resolve({ error }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
  });
}

/**
 * Whether `pid` is still running. An orphaned worker that exited stays a zombie until PID 1 reaps
 * it (seconds in some containers); a zombie runs nothing, so it counts as gone.
 */
const running = isAlive;

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-lifecycle-'));
  await fs.writeFile(
    path.join(dir, 'slow.js'),
    `async (event) => {
      await new Promise((resolve) => setTimeout(resolve, Number(event.query.ms || 500)));
      return 'done';
    }`,
  );
  await fs.writeFile(path.join(dir, 'hello.js'), "() => 'hi'");
});

after(async () => {
  for (const proc of spawned) {
    if (proc.exitedAt() === undefined && proc.child.pid) proc.child.kill('SIGKILL');
  }
  await Promise.all(spawned.map((p) => p.exited));
  // Workers exit when their channel closes; one still running now is a leak: end it, then fail.
  const leaked = await eventually(async () => [...workerPids].every((pid) => !running(pid)), 3000)
    .then(() => [])
    .catch(() => [...workerPids].filter(running));
  for (const pid of leaked) process.kill(pid, 'SIGKILL');
  await fs.rm(dir, { recursive: true, force: true });
  assert.deepEqual(leaked, [], 'leaked worker processes');
});

void describe('start-up failures', () => {
  const badValues: [string, string][] = [
    ['PORT', 'abc'],
    ['WORKERS', '1'],
    ['FUNCTION_TIMEOUT_MS', 'x'],
  ];
  for (const [name, value] of badValues) {
    void test(`${name}=${value} exits 2 before listening, naming the variable`, async () => {
      const proc = start({ [name]: value });
      const { code } = await proc.exited;
      assert.equal(code, 2);
      assert.match(proc.stderr(), new RegExp(`\\b${name}\\b`));
      assert.equal(logged(proc, 'listening'), undefined);
    });
  }

  void test('a missing FUNCTIONS_DIR fails start-up with exit 1', async () => {
    const proc = start({ FUNCTIONS_DIR: path.join(dir, 'does-not-exist') });
    const { code } = await proc.exited;
    assert.equal(code, 1);
    assert.equal(logged(proc, 'listening'), undefined);
    assert.ok(logged(proc, 'failed to start'), JSON.stringify(proc.lines));
  });
});

void describe('signals', () => {
  void test('SIGTERM when idle exits 0 and leaves no worker', async () => {
    const { proc, port, workers } = await startListening();
    assert.equal((await get(port, '/hello')).body, 'hi');
    proc.child.kill('SIGTERM');
    const { code, signal } = await proc.exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null });
    await eventually(async () => workers.every((pid) => !running(pid)), 1500);
  });

  void test('SIGTERM drains: the in-flight call gets 200, new calls are refused, exit 0, no worker left', async () => {
    const { proc, port, workers } = await startListening();
    const inFlight = get(port, '/slow?ms=500');
    await sleep(150);
    proc.child.kill('SIGTERM');
    await eventually(async () => logged(proc, 'draining') !== undefined);
    const late = await get(port, '/hello');
    if (late.error) {
      assert.ok(
        ['ECONNREFUSED', 'ECONNRESET'].includes(String(late.error.code)),
        String(late.error),
      );
    } else {
      assert.equal(late.status, 503, late.body);
      assert.equal(JSON.parse(late.body ?? '{}').error.code, 'SHUTTING_DOWN');
    }
    const reply = await inFlight;
    assert.equal(reply.error, undefined);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'done');
    const { code, signal } = await proc.exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null });
    assert.ok(logged(proc, 'stopped'));
    await eventually(async () => workers.every((pid) => !running(pid)), 1500);
  });

  // npm start relays the signal it gets, and a terminal or systemd signals npm and the server
  // alike: the server sees the same signal twice, milliseconds apart (see signals.test.ts).
  const repeats: {
    name: string;
    /** Each signal, and the ms to wait before sending it. */
    signals: [NodeJS.Signals, number][];
    /** How many of them are taken as a relayed copy (logged at debug). */
    copies: number;
    drains: boolean;
  }[] = [
    {
      name: 'SIGTERM, SIGTERM 50 ms later',
      signals: [
        ['SIGTERM', 0],
        ['SIGTERM', 50],
      ],
      copies: 1,
      drains: true,
    },
    {
      name: 'SIGINT, SIGINT 50 ms later',
      signals: [
        ['SIGINT', 0],
        ['SIGINT', 50],
      ],
      copies: 1,
      drains: true,
    },
    {
      name: 'SIGINT three times 50 ms apart (Ctrl-C twice under npm)',
      signals: [
        ['SIGINT', 0],
        ['SIGINT', 50],
        ['SIGINT', 50],
      ],
      copies: 1,
      drains: false,
    },
    {
      name: 'SIGTERM, SIGTERM 1.3 s later',
      signals: [
        ['SIGTERM', 0],
        ['SIGTERM', 1300],
      ],
      copies: 0,
      drains: false,
    },
  ];
  for (const row of repeats) {
    const what = row.drains
      ? 'the repeat is taken as a relayed copy: the call drains, exit 0'
      : 'the last is a second signal: exit 1 at once';
    void test(`${row.name}: ${what}`, async () => {
      const { proc, port, workers } = await startListening({ LOG_LEVEL: 'debug' });
      const inFlight = get(port, '/slow?ms=2500');
      await sleep(200);
      // Signals the kernel has not delivered yet merge into one: send each after the server
      // has logged the one before.
      const seen = () =>
        proc.lines.filter((l) => /^(draining|second signal)|relayed copy/.test(String(l.msg)))
          .length;
      let lastAt = 0;
      for (const [index, [signal, waitMs]] of row.signals.entries()) {
        await eventually(async () => seen() === index, 3000);
        await sleep(waitMs);
        assert.equal(proc.exitedAt(), undefined, `exited before ${signal}`);
        lastAt = performance.now();
        proc.child.kill(signal);
      }
      const { code, signal } = await proc.exited;
      const copies = proc.lines.filter((l) => /relayed copy/.test(String(l.msg))).length;
      assert.equal(copies, row.copies, JSON.stringify(proc.lines));
      const reply = await inFlight;
      if (row.drains) {
        assert.deepEqual({ code, signal }, { code: 0, signal: null });
        assert.deepEqual(reply, { status: 200, body: 'done' });
        assert.equal(logged(proc, 'second signal: exiting now'), undefined);
      } else {
        assert.deepEqual({ code, signal }, { code: 1, signal: null });
        const took = (proc.exitedAt() as number) - lastAt;
        assert.ok(took < 1500, `exited ${Math.round(took)} ms after the last signal`);
        assert.notEqual(reply.status, 200);
        assert.ok(logged(proc, 'second signal: exiting now'));
      }
      await eventually(async () => workers.every((pid) => !running(pid)), 1500);
    });
  }

  void test('a second signal during a long call exits non-zero at once and leaves no worker', async () => {
    const { proc, port, workers } = await startListening();
    const inFlight = get(port, '/slow?ms=4000');
    await sleep(200);
    proc.child.kill('SIGTERM');
    await eventually(async () => logged(proc, 'draining') !== undefined);
    const secondAt = performance.now();
    proc.child.kill('SIGINT');
    const { code } = await proc.exited;
    assert.notEqual(code, 0);
    assert.notEqual(code, null);
    const took = (proc.exitedAt() as number) - secondAt;
    assert.ok(took < 1500, `exited ${Math.round(took)} ms after the second signal`);
    // The in-flight call did not get a success: the process died under it.
    const reply = await inFlight;
    assert.notEqual(reply.status, 200);
    await eventually(async () => workers.every((pid) => !running(pid)), 1500);
  });
});
