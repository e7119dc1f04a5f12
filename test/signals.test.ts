/**
 * Stopping the server started the documented way, `npm start`, as supervisors do: a
 * SIGTERM or SIGINT to the npm process only (supervisord, a container whose command is
 * `npm start`, `kill <pid>`), or to its whole process group (a terminal's Ctrl-C; systemd's
 * default stop likewise signals every process of the unit). Each run starts `npm start` in a process group of its own, with its `prestart`
 * build, and checks the exit code, that no process of the group is left and that the port is
 * free. `node dist/src/main.js` itself is tested in lifecycle.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, sleep } from './support/wait';

const ROOT = path.join(__dirname, '..', '..');
/** `prestart` builds what changed (scripts/build-server.mjs): seconds, more on a busy machine. */
const START_MS = 120_000;
const GRACE_MS = 5000;
const TEST_OPTIONS = { timeout: START_MS + 60_000 };

interface NpmRun {
  child: ChildProcess;
  /** The npm process's pid, which is also its process group's id. */
  pid: number;
  output: () => string;
  lines: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  done: () => boolean;
}

const runs: NpmRun[] = [];
let dir: string;

/** `npm start` in a new process group, as a supervisor runs it. */
function npmStart(env: Record<string, string> = {}): NpmRun {
  const inherited = { ...process.env };
  delete inherited.NODE_TEST_CONTEXT; // set by node --test for its own children
  const child = spawn('npm', ['start'], {
    cwd: ROOT,
    detached: true, // setsid: the group is npm, its children and nothing else
    env: {
      ...inherited,
      PORT: '0',
      HOST: '127.0.0.1',
      FUNCTIONS_DIR: dir,
      WORKERS: '2',
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
      FUNCTION_TIMEOUT_MS: '10000',
      SHUTDOWN_GRACE_MS: String(GRACE_MS),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let partial = '';
  const lines: Record<string, unknown>[] = [];
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
    const split = (partial + chunk).split('\n');
    partial = split.pop() ?? '';
    for (const line of split) {
      if (!line.startsWith('{')) continue; // npm's own banner lines
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  let finished = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>(
    (resolve) =>
      child.once('exit', (code, signal) => {
        finished = true;
        resolve({ code, signal, at: performance.now() });
      }),
  );
  const run = {
    child,
    pid: child.pid as number,
    output: () => output,
    lines,
    exited,
    done: () => finished,
  };
  runs.push(run);
  return run;
}

interface Proc {
  pid: number;
  ppid: number;
  cmdline: string;
}

/** The live processes of process group `pgid` (a zombie runs nothing: it counts as gone). */
function group(pgid: number): Proc[] {
  const found: Proc[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // "pid (comm) state ppid pgrp …": the fields after the last ')'.
      const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) !== pgid || state === 'Z') continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      found.push({ pid: Number(entry), ppid: Number(ppid), cmdline });
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

const describeGroup = (procs: Proc[]) =>
  procs.map((p) => `${p.pid}<${p.ppid} ${p.cmdline.slice(0, 80)}`).join('; ') || 'none';

function logged(run: NpmRun, msg: string): Record<string, unknown> | undefined {
  return run.lines.find((l) => l.msg === msg);
}

/**
 * Starts `npm start` and waits for its `listening` line. Checks that npm's child is the server
 * itself (the script `exec`s node: no shell in between to swallow the signal) and that the
 * server has its two workers.
 */
async function startListening(env: Record<string, string> = {}) {
  const run = npmStart(env);
  await eventually(async () => logged(run, 'listening') !== undefined || run.done(), START_MS);
  assert.ok(logged(run, 'listening'), `npm start did not listen:\n${run.output()}`);
  const port = Number(logged(run, 'listening')?.port);
  assert.ok(port > 0);
  let procs = group(run.pid);
  const server = procs.filter((p) => p.ppid === run.pid);
  assert.equal(server.length, 1, describeGroup(procs));
  assert.match(server[0].cmdline, /^\S*node\S* dist\/src\/main\.js$/, describeGroup(procs));
  // Two shared workers and the solo lane's spare (started just after the pool, docs/spec.md §3).
  const workersOf = () => procs.filter((p) => p.ppid === server[0].pid);
  await eventually(async () => {
    procs = group(run.pid);
    return workersOf().length === 3;
  }, START_MS).catch(() => undefined);
  assert.equal(workersOf().length, 3, describeGroup(procs));
  return { run, port, procs };
}

/** After npm exited: nothing of its group runs, and the port accepts a new listener. */
async function assertAllGone(run: NpmRun, port: number): Promise<void> {
  await eventually(async () => group(run.pid).length === 0, 1500).catch(() => undefined);
  assert.equal(describeGroup(group(run.pid)), 'none', 'processes left in the group');
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(port, '127.0.0.1', () => resolve());
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
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

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-signals-'));
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
  // Anything still running is a failure already reported; end the groups we started.
  for (const run of runs) {
    if (group(run.pid).length > 0) {
      try {
        process.kill(-run.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  await Promise.all(runs.map((r) => r.exited));
  await fs.rm(dir, { recursive: true, force: true });
});

void describe('npm start, signalled like a supervisor', () => {
  // Runs first: a build cut short may leave dist/ half written; the runs below rebuild it.
  void test(
    'a SIGTERM to npm during the prestart build ends npm and the build, nothing left',
    TEST_OPTIONS,
    async () => {
      // The build runs tsc only when src/ changed since its last build: forget that build.
      await fs.rm(path.join(ROOT, 'dist', '.server.tsbuildinfo'), { force: true });
      const run = npmStart();
      let procs: Proc[] = [];
      await eventually(async () => {
        procs = group(run.pid);
        // tsc itself, not the `sh -c exec tsc …` that is about to become it.
        return (
          procs.some((p) => /\btsc\b/.test(p.cmdline) && !/^\S*sh /.test(p.cmdline)) || run.done()
        );
      }, START_MS);
      assert.equal(run.done(), false, `npm ended before tsc ran:\n${run.output()}`);
      // npm → npm run build:server → build-server.mjs → tsc: each script execs, so no shell
      // sits between them; build-server.mjs relays the signal to tsc.
      assert.equal(describeGroup(procs.filter((p) => /^\S*sh /.test(p.cmdline))), 'none');
      process.kill(run.pid, 'SIGTERM');
      const { code, signal } = await run.exited;
      // npm ends the way its script did: by the same signal.
      assert.deepEqual({ code, signal }, { code: null, signal: 'SIGTERM' }, run.output());
      await eventually(async () => group(run.pid).length === 0, 1500).catch(() => undefined);
      assert.equal(describeGroup(group(run.pid)), 'none', 'processes left in the group');
      assert.equal(logged(run, 'listening'), undefined);
    },
  );

  const rows: {
    name: string;
    signal: NodeJS.Signals;
    /** `npm`: the npm process only; `group`: npm's whole process group. */
    to: 'npm' | 'group';
    /** A call running when the signal arrives, which must still get its answer. */
    inFlightMs?: number;
  }[] = [
    {
      name: 'SIGTERM to npm only, a call in flight',
      signal: 'SIGTERM',
      to: 'npm',
      inFlightMs: 800,
    },
    { name: 'SIGINT to npm only, a call in flight', signal: 'SIGINT', to: 'npm', inFlightMs: 800 },
    // npm relays the signal the server got from the terminal too: one drain, not a second signal.
    // The workers get it as well and leave it to the server, so the call in flight finishes.
    {
      name: "SIGINT to the whole group (a terminal's Ctrl-C), a call in flight",
      signal: 'SIGINT',
      to: 'group',
      inFlightMs: 800,
    },
  ];
  for (const row of rows) {
    void test(
      `${row.name}: drains, exit 0 within the grace, no process left, port free`,
      TEST_OPTIONS,
      async () => {
        const { run, port } = await startListening();
        assert.equal((await get(port, '/hello')).body, 'hi');
        const inFlight =
          row.inFlightMs === undefined ? undefined : get(port, `/slow?ms=${row.inFlightMs}`);
        if (inFlight) await sleep(200);
        const signalledAt = performance.now();
        process.kill(row.to === 'npm' ? run.pid : -run.pid, row.signal);
        const { code, signal, at } = await run.exited;
        assert.deepEqual({ code, signal }, { code: 0, signal: null }, run.output());
        assert.ok(at - signalledAt < GRACE_MS, `exited ${Math.round(at - signalledAt)} ms after`);
        assert.equal(logged(run, 'draining')?.signal, row.signal);
        assert.ok(logged(run, 'stopped'), run.output());
        assert.equal(logged(run, 'second signal: exiting now'), undefined, run.output());
        if (inFlight) {
          const reply = await inFlight;
          assert.deepEqual(reply, { status: 200, body: 'done' });
        }
        await assertAllGone(run, port);
      },
    );
  }
});
