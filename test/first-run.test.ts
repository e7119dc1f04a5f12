/**
 * The first five minutes (docs/configuration.md "The admin token"): without ADMIN_TOKEN, a local
 * server makes a token, keeps it in DATA_DIR (0600), prints the console link with it, and the
 * admin API accepts it; the next start reuses it. adminToken() itself on real files: ADMIN_TOKEN
 * wins, REDIS_URL disables, an unwritable DATA_DIR disables with a log line.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { TOKEN_FILE, adminToken } from '../src/admin-token';
import { createLogger } from '../src/observe/logger';
import { startMain } from './support/server';

const silent = createLogger({ level: 'silent' });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kf-first-run-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('adminToken', () => {
  test('makes a token once, keeps it 0600, and reuses it', () => {
    const dataDir = path.join(tmp, 'made', 'data');
    const first = adminToken({ adminToken: undefined, redisUrl: undefined, dataDir }, silent);
    assert.equal(first.source, 'created');
    assert.match(first.token ?? '', /^[A-Za-z0-9_-]{43}$/);
    const file = path.join(dataDir, TOKEN_FILE);
    assert.equal(fs.readFileSync(file, 'utf8'), `${first.token}\n`);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const again = adminToken({ adminToken: undefined, redisUrl: undefined, dataDir }, silent);
    assert.deepEqual(again, { token: first.token, source: 'file' });
  });

  test('ADMIN_TOKEN wins, and no file is written', () => {
    const dataDir = path.join(tmp, 'env');
    const got = adminToken({ adminToken: 'x'.repeat(20), redisUrl: undefined, dataDir }, silent);
    assert.deepEqual(got, { token: 'x'.repeat(20), source: 'env' });
    assert.equal(fs.existsSync(dataDir), false);
  });

  test('with REDIS_URL and no ADMIN_TOKEN the admin API stays disabled', () => {
    const dataDir = path.join(tmp, 'redis');
    const got = adminToken(
      { adminToken: undefined, redisUrl: 'redis://127.0.0.1:6379', dataDir },
      silent,
    );
    assert.deepEqual(got, { token: undefined, source: 'none' });
    assert.equal(fs.existsSync(dataDir), false);
  });

  test('a DATA_DIR that cannot be written disables it, never throws', () => {
    const blocker = path.join(tmp, 'a-file');
    fs.writeFileSync(blocker, '');
    const got = adminToken(
      { adminToken: undefined, redisUrl: undefined, dataDir: path.join(blocker, 'data') },
      silent,
    );
    assert.deepEqual(got, { token: undefined, source: 'none' });
  });

  test('a token file too short to be a token disables it', () => {
    const dataDir = path.join(tmp, 'short');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, TOKEN_FILE), 'abc\n');
    const got = adminToken({ adminToken: undefined, redisUrl: undefined, dataDir }, silent);
    assert.deepEqual(got, { token: undefined, source: 'none' });
  });
});

/** Runs main.js until its `console` line; resolves with the lines, then stops it. */
async function firstLines(
  env: Record<string, string>,
  during?: (port: number) => Promise<void>,
): Promise<Record<string, unknown>[]> {
  const main = await startMain({ env, timeoutMs: 30_000 });
  try {
    await during?.(main.port);
    return main.lines;
  } finally {
    await main.kill();
  }
}

describe('npm start without ADMIN_TOKEN', () => {
  const functionsDir = path.join(tmp, 'functions');
  const dataDir = path.join(tmp, 'server-data');
  fs.mkdirSync(functionsDir);
  fs.writeFileSync(path.join(functionsDir, 'hello.js'), "module.exports = () => 'hi';\n");
  const env = { FUNCTIONS_DIR: functionsDir, DATA_DIR: dataDir, WORKERS: '2' };

  test('prints a console link with the token it keeps in DATA_DIR; the next start reuses it', async () => {
    const answers: number[] = [];
    const lines = await firstLines(env, async (port) => {
      const token = fs.readFileSync(path.join(dataDir, TOKEN_FILE), 'utf8').trim();
      for (const auth of [`Bearer ${token}`, 'Bearer not-the-token-at-all']) {
        const res = await fetch(`http://127.0.0.1:${port}/_/functions/hello`, {
          headers: { authorization: auth },
          signal: AbortSignal.timeout(20_000),
        });
        answers.push(res.status);
      }
    });
    assert.deepEqual(answers, [200, 401], 'the kept token opens the admin API; another does not');
    const link = lines.find((l) => l.msg === 'console');
    assert.ok(link, 'a console line');
    const token = fs.readFileSync(path.join(dataDir, TOKEN_FILE), 'utf8').trim();
    const listening = lines.find((l) => l.msg === 'listening');
    assert.equal(link.url, `http://127.0.0.1:${String(listening?.port)}/_/ui/#token=${token}`);
    assert.equal(link.tokenFile, path.join(dataDir, TOKEN_FILE));
    const again = await firstLines(env);
    assert.equal(
      again
        .find((l) => l.msg === 'console')
        ?.url?.toString()
        .split('#')[1],
      `token=${token}`,
    );
  });

  test('with ADMIN_TOKEN there is no console line and no file', async () => {
    const otherData = path.join(tmp, 'env-data');
    const lines = await firstLines({ ...env, DATA_DIR: otherData, ADMIN_TOKEN: 'y'.repeat(24) });
    assert.equal(
      lines.find((l) => l.msg === 'console'),
      undefined,
    );
    assert.equal(fs.existsSync(path.join(otherData, TOKEN_FILE)), false);
  });
});
