/**
 * `koa-faas logs --follow` end to end: real CLI processes (`node dist/src/cli/main.js`) following
 * the real server's record stream. A follower is started, and the test waits for its
 * `following …` line (stderr: the server has answered the stream's headers) before it invokes.
 * Every process is bounded by a timeout.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CLI } from '../support/cli';
import { startMain, startServer } from '../support/server';
import type { TestServer } from '../support/server';
import { until } from '../support/wait';

const TOKEN = 'follow-test-token-0123456789abcdef';
/** Generous: the machine may be loaded; a CLI that hangs is killed and fails here. */
const SPAWN_TIMEOUT_MS = 60_000;
/** docs/spec.md, the CLI: `logs --follow` prints an invocation within a second of it. */
const WITHIN_MS = 1000;

const FUNCTIONS = {
  hello: "module.exports = () => { console.log('hi there'); return 'hello'; };\n",
  other: "module.exports = () => 'other';\n",
  fails: "module.exports = () => { throw new Error('boom'); };\n",
};

let t: TestServer;
let cwd: string;

interface Follower {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

/** Starts a follower and waits until it says it follows (or exits first). */
async function follower(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Follower> {
  const child = spawn(process.execPath, [CLI, 'logs', '--follow', ...args], {
    cwd,
    env: {
      PATH: process.env.PATH,
      HOME: cwd,
      XDG_CONFIG_HOME: path.join(cwd, 'config'),
      KOA_FAAS_URL: t.url,
      KOA_FAAS_TOKEN: TOKEN,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), SPAWN_TIMEOUT_MS);
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    }),
  );
  let over = false;
  void exited.then(() => (over = true));
  await until('the follower to connect', () => over || /^following /m.test(stderr), 30_000);
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Calls a function; returns its request id and when its answer was in (performance.now()). */
async function invoke(name: string): Promise<{ requestId: string; at: number }> {
  const response = await fetch(`${t.url}/${name}`);
  await response.text();
  return { requestId: response.headers.get('x-request-id') as string, at: performance.now() };
}

/** Stops a follower with SIGINT; resolves with its exit code. */
async function interrupt(f: Follower): Promise<number | null> {
  f.child.kill('SIGINT');
  return f.exited;
}

before(async () => {
  t = await startServer({ functions: FUNCTIONS, env: { ADMIN_TOKEN: TOKEN, WORKERS: '2' } });
  cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-follow-'));
});

after(async () => {
  await t?.close();
  if (cwd) await fs.rm(cwd, { recursive: true, force: true });
});

test('prints an invocation within a second of it; SIGINT ends it with exit 0', async (ctx) => {
  const f = await follower([]);
  try {
    // The first call of a function loads it: measure a warm one.
    await invoke('hello');
    const { requestId, at } = await invoke('hello');
    let seenAt = 0;
    await until(
      'the record',
      () => {
        if (f.stdout().includes(requestId)) seenAt = performance.now();
        return seenAt > 0;
      },
      10_000,
      5,
    );
    const ms = Math.round(seenAt - at);
    ctx.diagnostic(`logs --follow printed the record ${ms} ms after the answer`);
    assert.ok(ms < WITHIN_MS, `${ms} ms`);
    // The line `logs` prints, then the console output, indented.
    const line = f
      .stdout()
      .split('\n')
      .find((l) => l.includes(requestId)) as string;
    assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z {2}hello {2}200 {2}ok {2}[\d.]+ms {2}\S+$/);
    assert.match(f.stdout(), new RegExp(`${requestId}\\n {4}info\\thi there\\n`));
  } finally {
    assert.equal(await interrupt(f), 0, f.stderr());
  }
  assert.doesNotMatch(f.stderr(), /koa-faas:/);
});

test('--json: NDJSON; a name keeps only that function; --status failed only failures', async () => {
  const json = await follower(['hello', '--json']);
  const failed = await follower(['--status', 'failed', '--json']);
  try {
    const other = await invoke('other');
    const boom = await invoke('fails');
    const hello = await invoke('hello');
    await until('hello', () => json.stdout().includes(hello.requestId), 10_000);
    await until('the failure', () => failed.stdout().includes(boom.requestId), 10_000);
    const lines = json.stdout().trimEnd().split('\n');
    const records = lines.map((l) => JSON.parse(l) as { requestId: string; function: string });
    // `other` and `fails` ran first: had either been printed, it would be here.
    assert.deepEqual(
      records.map((r) => [r.function, r.requestId]),
      [['hello', hello.requestId]],
    );
    assert.doesNotMatch(json.stdout(), new RegExp(other.requestId));
    const failures = failed
      .stdout()
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { requestId: string; outcome: string });
    assert.deepEqual(
      failures.map((r) => [r.requestId, r.outcome]),
      [[boom.requestId, 'FUNCTION_ERROR']],
    );
  } finally {
    assert.equal(await interrupt(json), 0);
    assert.equal(await interrupt(failed), 0);
  }
});

test('--since prints the recent records first, oldest first, then follows', async () => {
  const earlier = [await invoke('other'), await invoke('other')];
  // Records are kept as the answer is written: wait until both are listed.
  await until(
    'the records listed',
    async () => {
      const response = await fetch(`${t.url}/_/invocations?fn=other&limit=5`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const { invocations } = (await response.json()) as { invocations: { requestId: string }[] };
      return earlier.every((e) => invocations.some((r) => r.requestId === e.requestId));
    },
    10_000,
  );
  const f = await follower(['other', '--since', '10m', '--json']);
  try {
    const later = await invoke('other');
    await until('the new record', () => f.stdout().includes(later.requestId), 10_000);
    const ids = f
      .stdout()
      .trimEnd()
      .split('\n')
      .map((l) => (JSON.parse(l) as { requestId: string }).requestId);
    // Each once, in the order they ran.
    const mine = ids.filter((id) => [...earlier, later].some((e) => e.requestId === id));
    assert.deepEqual(mine, [earlier[0].requestId, earlier[1].requestId, later.requestId]);
    assert.equal(new Set(ids).size, ids.length);
  } finally {
    assert.equal(await interrupt(f), 0);
  }
});

test('a wrong token: exit 1 and one line saying so', async () => {
  const f = await follower([], { KOA_FAAS_TOKEN: 'wrong-token' });
  assert.equal(await f.exited, 1);
  assert.equal(f.stdout(), '');
  assert.match(f.stderr(), /^koa-faas: UNAUTHORIZED: the bearer token is not valid\n$/);
});

test('the server stopping: exit 1 and one line saying why', async () => {
  const own = await startServer({ functions: FUNCTIONS, env: { ADMIN_TOKEN: TOKEN } });
  const f = await follower([], { KOA_FAAS_URL: own.url });
  await own.close();
  assert.equal(await f.exited, 1);
  const lines = f.stderr().trimEnd().split('\n');
  assert.match(lines[0], /^following /);
  assert.deepEqual(lines.slice(1), [
    'koa-faas: the server ended the stream: SHUTTING_DOWN: the server is shutting down',
  ]);
});

test('the server killed: exit 1 and one line saying the stream was lost', async () => {
  const dir = path.join(cwd, 'killed');
  await fs.mkdir(path.join(dir, 'functions'), { recursive: true });
  const main = await startMain({
    env: {
      FUNCTIONS_DIR: path.join(dir, 'functions'),
      DATA_DIR: dir,
      ADMIN_TOKEN: TOKEN,
    },
  });
  const url = `http://127.0.0.1:${main.port}`;
  const f = await follower([], { KOA_FAAS_URL: url });
  await main.kill();
  assert.equal(await f.exited, 1);
  const lines = f.stderr().trimEnd().split('\n');
  assert.equal(lines.length, 2, f.stderr());
  assert.match(lines[1], new RegExp(`^koa-faas: lost the stream from ${url}: \\S`));
});
