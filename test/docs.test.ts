/**
 * The documentation's examples, run (docs/operations.md "The docs test"): every fenced js, ts,
 * sh and bash block of README.md and docs/*.md carries a marker; the function files they define
 * load on a real server; and every `run` block is run with bash against it, in order, its output
 * checked against its `expect` markers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startServer } from './support/server';
import type { TestServer } from './support/server';
import { markerProblem, missingExpectation, readDocs, where } from './support/docs-examples';
import type { Block } from './support/docs-examples';

const ROOT = path.join(__dirname, '..', '..');
const TOKEN = 'docs-test-admin-token-0123456789';
/** How long one block may run; a whole run stays well under two minutes. */
const BLOCK_TIMEOUT_MS = 30_000;

const blocks = readDocs(ROOT);
const examples = blocks.filter((block) => block.example !== undefined);
const files = blocks.filter((block) => block.path !== undefined);
const runs = blocks.filter((block) => block.run);

test('every js, ts, sh and bash block of the docs is marked', () => {
  const problems = blocks.flatMap((block) => {
    const problem = markerProblem(block);
    return problem ? [`${where(block)}: ${problem}`] : [];
  });
  assert.deepEqual(problems, []);
  assert.ok(examples.length > 10 && runs.length > 10, 'the docs hold examples and runs');
});

test('an example or file defined twice is the same text each time', () => {
  const seen = new Map<string, Block>();
  for (const block of [...examples, ...files]) {
    const key = block.example !== undefined ? `functions/${block.example}` : `${block.path}`;
    const first = seen.get(key);
    if (first) assert.equal(block.code, first.code, `${key}: ${where(first)} and ${where(block)}`);
    else seen.set(key, block);
  }
});

/** Runs one block with bash; resolves to its stdout and stderr, killed past the timeout. */
function runBash(
  script: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${BLOCK_TIMEOUT_MS} ms)`;
      child.kill('SIGKILL');
    }, BLOCK_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('the examples, on a real server', () => {
  let t: TestServer;
  let cwd: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    const functions: Record<string, string> = {};
    for (const block of examples) {
      functions[`${block.example}.${block.language}`] = block.code;
    }
    t = await startServer({ functions, env: { ADMIN_TOKEN: TOKEN, WORKERS: '2' } });
    // The shell's folder looks like a checkout: functions/ is the server's, data/ holds the token.
    cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-docs-'));
    await fs.symlink(t.dir, path.join(cwd, 'functions'));
    await fs.mkdir(path.join(cwd, 'data'));
    await fs.writeFile(path.join(cwd, 'data', 'admin-token'), TOKEN, { mode: 0o600 });
    for (const block of files) await fs.writeFile(path.join(cwd, block.path as string), block.code);
    env = {
      // bin/ holds the `koa-faas` CLI (docs/cli.md).
      PATH: `${path.join(ROOT, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: cwd,
      LANG: 'C.UTF-8',
      BASE: t.url,
      ADMIN_TOKEN: TOKEN,
    };
  });
  after(async () => {
    await t?.close();
    if (cwd) await fs.rm(cwd, { recursive: true, force: true });
  });

  test('every example function loads', async () => {
    for (const block of examples) {
      const answer = await t.request
        .get(`/_/functions/${block.example}`)
        .set('Authorization', `Bearer ${TOKEN}`);
      assert.equal(answer.status, 200, `${where(block)}: ${answer.text}`);
      assert.equal(answer.body.status, 'ok', `${where(block)}: ${answer.text}`);
    }
  });

  for (const block of runs) {
    test(`run ${where(block)}`, async () => {
      const address = new URL(t.url).host;
      // curl quietly, bounded; localhost:3000 in the docs is this server.
      const script =
        'set -eo pipefail\n' +
        'curl() { command curl -sS --max-time 20 "$@"; }\n' +
        block.code.replaceAll('localhost:3000', address);
      const { code, stdout, stderr } = await runBash(script, cwd, env);
      const shown = `--- stdout\n${stdout}\n--- stderr\n${stderr}`;
      assert.equal(code, 0, `${where(block)} exited ${code}\n${shown}`);
      const missing = missingExpectation(stdout, block.expect);
      assert.equal(missing, undefined, `${where(block)}: no "${missing}" in its output\n${shown}`);
    });
  }
});
