/**
 * Async invocations across a restart of the real entry (node dist/src/main.js), docs/spec.md §9: queued
 * invocations are persisted in DATA_DIR's SQLite file (or in a real redis-server); a SIGTERM
 * drains (the running attempt gets the grace period) and exits 0, leaving the rest queued; the
 * next process on the same DATA_DIR (or Redis) runs them all; an attempt cut short by the end of
 * the grace period runs again, uncounted (at least once).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startMain } from './support/server';
import { eventually } from './support/wait';
import { REDIS_MISSING, startRedis } from './support/redis';
import type { TestRedis } from './support/redis';

const TOKEN = 'a-test-admin-token-0123456789';

let dir: string;
let dataDir: string;
const children: ChildProcess[] = [];

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-restart-'));
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-restart-data-'));
  await fs.writeFile(
    path.join(dir, 'long.js'),
    `module.exports = async (e, c) => {
  const starts = await c.kv.incr('starts:' + c.requestId);
  await new Promise((r) => setTimeout(r, Number(e.query.ms)));
  return { starts, attempt: c.attempt };
};
module.exports.config = { timeoutMs: 20000 };
`,
  );
  await fs.writeFile(
    path.join(dir, 'work.js'),
    `module.exports = async (e, c) => {
  await new Promise((r) => setTimeout(r, 150));
  return { runs: await c.kv.incr('runs:' + c.requestId), attempt: c.attempt };
};
`,
  );
});

after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rm(dataDir, { recursive: true, force: true });
});

/** Starts the server; resolves with its port once it logs `listening`. */
async function start(
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; port: number; exited: Promise<number> }> {
  const proc = await startMain({
    env: {
      FUNCTIONS_DIR: dir,
      DATA_DIR: dataDir,
      ADMIN_TOKEN: TOKEN,
      ASYNC_CONCURRENCY: '1',
      SHUTDOWN_GRACE_MS: '3000',
      ...env,
    },
    timeoutMs: 20_000,
  });
  children.push(proc.child);
  return { child: proc.child, port: proc.port, exited: proc.exited.then(({ code }) => code ?? -1) };
}

function call(
  port: number,
  method: string,
  urlPath: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, headers, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: text ? (JSON.parse(text) as unknown) : null,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const auth = { Authorization: `Bearer ${TOKEN}` };

interface State {
  requestId: string;
  status: string;
  attempts: number;
  response?: { body: string };
}

async function states(port: number, status: string): Promise<State[]> {
  const res = await call(port, 'GET', `/_/invocations?status=${status}&limit=1000`, auth);
  return (res.body as { invocations: State[] }).invocations;
}

const CUT = { SHUTDOWN_GRACE_MS: '300', MAX_TIMEOUT_MS: '20000' };

function restartSuite(name: string, env: () => Record<string, string>, skip: string | false) {
  describe(`async invocations across a restart: ${name}`, { skip }, () => {
    test('20 queued invocations survive a SIGTERM and a restart, and all complete', async () => {
      const first = await start(env());
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await call(first.port, 'POST', '/work', {
          Prefer: 'respond-async',
          'X-Request-Id': `restart-${name}-${i}`,
        });
        assert.equal(res.status, 202);
        ids.push(`restart-${name}-${i}`);
      }
      // A few done, the rest queued (one at a time, 150 ms each): stop now.
      await eventually(async () => (await states(first.port, 'succeeded')).length >= 2, 20_000);
      first.child.kill('SIGTERM');
      assert.equal(await first.exited, 0, 'the drain exits 0');

      const second = await start(env());
      try {
        // Queued ones were left; the first server finished or released what it ran.
        const before = await states(second.port, 'succeeded');
        assert.ok(before.length < 20, `${before.length} succeeded before the restart`);
        await eventually(
          async () => (await states(second.port, 'succeeded')).length === 20,
          30_000,
        );
        const done = await states(second.port, 'succeeded');
        assert.deepEqual(done.map((s) => s.requestId).sort(), [...ids].sort());
        // At least once: each ran; only an attempt cut short by the stop could have run twice.
        const runs = done.map(
          (s) => (JSON.parse(s.response?.body ?? '{}') as { runs: number }).runs,
        );
        assert.ok(
          runs.every((r) => r >= 1),
          runs.join(','),
        );
        assert.ok(runs.reduce((a, b) => a + b, 0) <= 21, runs.join(','));
        assert.deepEqual(await states(second.port, 'queued'), []);
        assert.deepEqual(await states(second.port, 'failed'), []);
      } finally {
        second.child.kill('SIGTERM');
        assert.equal(await second.exited, 0);
      }
    });

    test('an attempt still running when the grace period ends runs again after the restart', async () => {
      const first = await start({ ...env(), ...CUT });
      const id = `cut-short-${name}`;
      const res = await call(first.port, 'POST', '/long?ms=4000', {
        Prefer: 'respond-async',
        'X-Request-Id': id,
      });
      assert.equal(res.status, 202);
      await eventually(async () => (await states(first.port, 'running')).length === 1, 10_000);
      first.child.kill('SIGTERM');
      assert.equal(await first.exited, 0, 'the drain exits 0 after its grace period');

      const second = await start({ ...env(), ...CUT });
      try {
        let state: State | undefined;
        await eventually(async () => {
          const answer = await call(second.port, 'GET', `/_/invocations/${id}`, auth);
          state = answer.body as State;
          return state.status === 'succeeded';
        }, 20_000);
        // It started twice (at least once), and the cut-short attempt was not counted.
        assert.equal(state?.attempts, 1, JSON.stringify(state));
        assert.deepEqual(JSON.parse(state?.response?.body ?? '{}'), { starts: 2, attempt: 1 });
      } finally {
        second.child.kill('SIGTERM');
        assert.equal(await second.exited, 0);
      }
    });
  });
}

restartSuite('sqlite', () => ({}), false);

let redis: TestRedis | undefined;
if (!REDIS_MISSING) {
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis?.close());
}
restartSuite('redis', () => ({ REDIS_URL: (redis as TestRedis).url }), REDIS_MISSING);
