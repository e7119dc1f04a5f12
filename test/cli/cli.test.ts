/**
 * The `koa-faas` CLI end to end: real CLI processes (`node dist/src/cli/main.js …`) against the
 * real server, configured the way a user would (KOA_FAAS_URL, KOA_FAAS_TOKEN, XDG_CONFIG_HOME for
 * the `login` file). Every spawn is bounded by a timeout.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { runCli } from '../support/cli';
import type { CliRun } from '../support/cli';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';
import { until } from '../support/wait';

const TOKEN = 'cli-test-token-0123456789abcdef';
type Run = CliRun;

let t: TestServer;
let cwd: string;
let configHome: string;

/** Runs the CLI with the test's environment (`env` on top); resolves when it exits. */
function cli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; stdin?: string } = {},
): Promise<Run> {
  return runCli(args, {
    cwd,
    env: {
      PATH: process.env.PATH,
      HOME: cwd,
      XDG_CONFIG_HOME: configHome,
      KOA_FAAS_URL: t.url,
      KOA_FAAS_TOKEN: TOKEN,
      ...options.env,
    },
    stdin: options.stdin,
  });
}

/** Asserts exit 0; returns the run. */
async function ok(args: string[], options?: Parameters<typeof cli>[1]): Promise<Run> {
  const run = await cli(args, options);
  assert.equal(run.code, 0, `koa-faas ${args.join(' ')}: ${run.stderr}`);
  return run;
}

/** Asserts exit 1 with one line on stderr; returns that line. */
async function fails(args: string[], options?: Parameters<typeof cli>[1]): Promise<string> {
  const run = await cli(args, options);
  assert.equal(run.code, 1, `koa-faas ${args.join(' ')}: ${run.stdout}${run.stderr}`);
  const lines = run.stderr.trimEnd().split('\n');
  return lines[lines.length - 1];
}

const ECHO = `// Answers with what it was called with.
module.exports = (event) => ({ method: event.method, subpath: event.subpath, body: event.body, tag: event.headers['x-tag'] });
`;

before(async () => {
  t = await startServer({ env: { ADMIN_TOKEN: TOKEN, WORKERS: '2' } });
  cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-cli-'));
  configHome = path.join(cwd, 'config');
});

after(async () => {
  await t?.close();
  if (cwd) await fs.rm(cwd, { recursive: true, force: true });
});

test('new → deploy → invoke → logs → describe → list → delete', async () => {
  const created = await ok(['new', 'greet']);
  assert.match(created.stdout, /functions\/greet\.js/);
  const refused = await fails(['new', 'greet']);
  assert.match(refused, /exists/);

  const deployed = await ok(['deploy', 'functions/greet.js']);
  assert.match(deployed.stdout, /deployed\s+greet/);
  assert.match(deployed.stdout, /version\s+[0-9a-f]{16}/);
  assert.match(deployed.stdout, /bytes\s+\d+/);

  const invoked = await ok(['invoke', 'greet']);
  assert.equal(JSON.parse(invoked.stdout).message, 'hello from greet');
  assert.match(invoked.stderr, /^200\b/);

  await fs.writeFile(path.join(cwd, 'echo.js'), ECHO);
  const json = JSON.parse((await ok(['deploy', 'echo.js', '--name', 'echo2', '--json'])).stdout);
  assert.equal(json.name, 'echo2');
  await fs.writeFile(path.join(cwd, 'body.json'), '{"from":"file"}');
  const plain = await ok([
    'invoke',
    'echo2',
    '--data',
    '{"a":1}',
    '--header',
    'X-Tag: blue',
    '--path',
    '/sub',
  ]);
  assert.deepEqual(JSON.parse(plain.stdout), {
    method: 'POST',
    subpath: '/sub',
    body: { a: 1 },
    tag: 'blue',
  });
  const full = JSON.parse(
    (await ok(['invoke', 'echo2', '--data', '@body.json', '--method', 'PUT', '--json'])).stdout,
  );
  assert.equal(full.status, 200);
  assert.deepEqual(full.body.body, { from: 'file' });
  assert.equal(full.body.method, 'PUT');
  assert.match(full.requestId, /\S/);
  assert.equal(full.headers['x-request-id'], full.requestId);

  // Records land asynchronously: poll.
  let logs = '';
  await until(
    'a record of greet',
    async () => {
      logs = (await ok(['logs', 'greet'])).stdout;
      return /greet\s+200\s+ok/.test(logs);
    },
    30_000,
  );
  const records = (await ok(['logs', 'echo2', '--json', '--since', '10m', '--limit', '1'])).stdout
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as { function: string; status: number });
  assert.equal(records.length, 1);
  assert.equal(records[0].function, 'echo2');
  assert.equal((await ok(['logs', '--status', 'failed', '--json'])).stdout, '');

  const described = await ok(['describe', 'greet']);
  assert.match(described.stdout, /version\s+[0-9a-f]{16}/);
  assert.match(described.stdout, /hello from greet/);
  const detail = JSON.parse((await ok(['describe', 'greet', '--json'])).stdout);
  assert.equal(detail.name, 'greet');
  assert.equal(detail.status, 'ok');

  assert.match((await ok(['list'])).stdout, /^greet\s+[0-9a-f]{16}\s+ok/m);
  const listed = JSON.parse((await ok(['list', '--json'])).stdout);
  assert.deepEqual(listed.functions.map((fn: { name: string }) => fn.name).sort(), [
    'echo2',
    'greet',
  ]);

  assert.match((await ok(['delete', 'greet'])).stdout, /deleted greet/);
  assert.deepEqual(JSON.parse((await ok(['delete', 'echo2', '--json'])).stdout), {
    name: 'echo2',
    deleted: true,
  });
  assert.match(await fails(['describe', 'greet']), /NOT_FOUND/);
});

test('new writes each template, and a TypeScript one deploys', async () => {
  for (const template of ['ts', 'webhook', 'kv']) {
    await ok(['new', `t-${template}`, '--template', template, '--dir', 'starters']);
  }
  const ts = await ok(['deploy', 'starters/t-ts.ts']);
  assert.match(ts.stdout, /deployed\s+t-ts/);
  assert.equal(JSON.parse((await ok(['invoke', 't-ts'])).stdout).message, 'hello, world');
  await ok(['deploy', 'starters/t-kv.js']);
  assert.deepEqual(JSON.parse((await ok(['invoke', 't-kv'])).stdout), { count: 1 });
  await ok(['deploy', 'starters/t-webhook.js']);
  const hook = await ok(['invoke', 't-webhook', '--data', '{"x":1}', '--json']);
  assert.equal(JSON.parse(hook.stdout).status, 202);
  const queued = await ok(['invoke', 't-kv', '--async', '--json']);
  const accepted = JSON.parse(queued.stdout);
  assert.equal(accepted.status, 202);
  assert.equal(accepted.headers['preference-applied'], 'respond-async');
  for (const name of ['t-ts', 't-kv', 't-webhook']) await ok(['delete', name]);
});

test('secrets: set from stdin and as an argument, list, delete', async () => {
  assert.match(
    (await ok(['secrets', 'set', 'API_KEY', '-'], { stdin: 's3cret\n' })).stdout,
    /created API_KEY/,
  );
  await ok(['secrets', 'set', 'OTHER', 'value']);
  // The value as stored: stdin's final newline dropped (the length only: values are masked).
  await fs.writeFile(
    path.join(cwd, 'uses-key.js'),
    'module.exports = (event, context) => ({ length: context.secrets.API_KEY.length });\n' +
      "module.exports.config = { secrets: ['API_KEY'] };\n",
  );
  await ok(['deploy', 'uses-key.js']);
  assert.deepEqual(JSON.parse((await ok(['invoke', 'uses-key'])).stdout), { length: 6 });
  await ok(['delete', 'uses-key']);
  const listed = JSON.parse((await ok(['secrets', 'list', '--json'])).stdout);
  assert.deepEqual(listed.secrets.map((s: { name: string }) => s.name).sort(), [
    'API_KEY',
    'OTHER',
  ]);
  assert.doesNotMatch(JSON.stringify(listed), /s3cret/);
  assert.match((await ok(['secrets', 'list'])).stdout, /^API_KEY\s/m);
  await ok(['secrets', 'delete', 'OTHER']);
  assert.match(await fails(['secrets', 'delete', 'OTHER']), /NOT_FOUND/);
});

test('kv: put, get, list, delete', async () => {
  assert.match((await ok(['kv', 'put', 'store', 'a', '{"n":1}'])).stdout, /stored a/);
  await ok(['kv', 'put', 'store', 'b', 'plain text']);
  assert.deepEqual(JSON.parse((await ok(['kv', 'get', 'store', 'a'])).stdout), { n: 1 });
  assert.equal(JSON.parse((await ok(['kv', 'get', 'store', 'b', '--json'])).stdout), 'plain text');
  assert.deepEqual((await ok(['kv', 'list', 'store'])).stdout.trimEnd().split('\n'), ['a', 'b']);
  const keys = JSON.parse((await ok(['kv', 'list', 'store', '--json'])).stdout);
  assert.deepEqual(
    keys.keys.map((k: { key: string }) => k.key),
    ['a', 'b'],
  );
  await ok(['kv', 'delete', 'store', 'a']);
  assert.match(await fails(['kv', 'get', 'store', 'a']), /NOT_FOUND/);
});

test('login writes a 0600 file that later commands use', async () => {
  const home = path.join(cwd, 'login-home');
  const bare = { XDG_CONFIG_HOME: home, KOA_FAAS_URL: '', KOA_FAAS_TOKEN: '' };
  await ok(['login', '--url', t.url, '--token', TOKEN], { env: bare });
  const file = path.join(home, 'koa-faas', 'config.json');
  assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(JSON.parse(await fs.readFile(file, 'utf8')), { url: t.url, token: TOKEN });
  await ok(['secrets', 'list'], { env: bare });
  // The flag wins over the file.
  assert.match(await fails(['secrets', 'list', '--token', 'wrong'], { env: bare }), /UNAUTHORIZED/);
});

test('failures: wrong token, unknown function, compile error, usage, no server', async () => {
  const unauthorized = await cli(['list', '--json'], { env: { KOA_FAAS_TOKEN: 'wrong' } });
  // GET /_/functions is open; a route behind the token is not.
  assert.equal(unauthorized.code, 0);
  const line = await fails(['secrets', 'list'], { env: { KOA_FAAS_TOKEN: 'wrong' } });
  assert.match(line, /UNAUTHORIZED/);
  const run = await cli(['describe', 'anything'], { env: { KOA_FAAS_TOKEN: 'wrong' } });
  assert.equal(run.code, 1);
  assert.equal(run.stderr.trimEnd().split('\n').length, 1);
  assert.match(run.stderr, /UNAUTHORIZED/);

  assert.match(await fails(['describe', 'nope']), /NOT_FOUND/);
  const missing = await cli(['invoke', 'nope']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^koa-faas: FUNCTION_NOT_FOUND: .+\n$/);

  await fs.writeFile(
    path.join(cwd, 'broken.js'),
    'module.exports = (event) => {\n  return [;\n};\n',
  );
  assert.match(await fails(['deploy', 'broken.js']), /FUNCTION_COMPILE_ERROR/);

  const usage = await cli(['deploy']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /missing required argument/);
  assert.equal((await cli(['frobnicate'])).code, 2);
  assert.equal((await cli(['logs', '--since', 'soon'])).code, 2);

  // A port that was just free: nothing listens there.
  const closed = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
  const started = Date.now();
  const down = await fails(['list'], { env: { KOA_FAAS_URL: `http://127.0.0.1:${closed}` } });
  assert.match(down, new RegExp(`cannot reach http://127\\.0\\.0\\.1:${closed}: ECONNREFUSED`));
  // Well under the request timeout (30 s): a refused connection does not wait for it.
  assert.ok(Date.now() - started < 20_000);
});
