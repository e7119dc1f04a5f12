/**
 * Package functions end to end (docs/spec.md §2 "Packages"): folders with a package.json and
 * real npm packages (zod, ms: devDependencies of this repository, copied into the function's
 * node_modules as `npm install` would put them), served by the real server with real workers;
 * the same package deployed through a real CLI process.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { runCli } from '../support/cli';
import { writeFiles } from '../support/files';
import type { CliRun } from '../support/cli';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';
import { until } from '../support/wait';

const ROOT = path.join(__dirname, '..', '..', '..');
const TOKEN = 'packages-test-token-0123456789';
const AUTH = { Authorization: `Bearer ${TOKEN}` };

let t: TestServer;

/**
 * Installs a real npm package from this repository's node_modules, as `npm install` would: the
 * package's files, then npm's hidden lockfile (`node_modules/.package-lock.json`), last.
 */
async function install(dir: string, pkg: string): Promise<void> {
  await fs.cp(path.join(ROOT, 'node_modules', pkg), path.join(dir, 'node_modules', pkg), {
    recursive: true,
  });
  const lockfile = path.join(dir, 'node_modules', '.package-lock.json');
  const installed = await fs.readFile(lockfile, 'utf8').catch(() => '');
  await fs.writeFile(lockfile, `${installed}${pkg}\n`);
}

const ZOD_PACKAGE = {
  'package.json': JSON.stringify({
    name: 'signup',
    version: '1.0.0',
    main: 'src/handler.ts',
    dependencies: { zod: '^4.6.7', ms: '^2.1.3' },
  }),
  'src/handler.ts': [
    "import { z } from 'zod';",
    "import ms from 'ms';",
    "import { describe } from './describe';",
    '',
    'const User = z.object({ name: z.string().min(1), age: z.number().int().positive() });',
    '',
    'export default (event: { body: unknown; query: Record<string, string> }) => {',
    "  if (event.query.strict === '1') return describe(User.parse(event.body));",
    "  if (event.query.strict === '2') return ms(event.query.ttl as unknown as number);",
    '  const parsed = User.safeParse(event.body);',
    '  if (!parsed.success) {',
    "    return { statusCode: 422, body: { issues: parsed.error.issues.map((i) => i.path.join('.')) } };",
    '  }',
    "  return { ...describe(parsed.data), ttl: ms('2h') };",
    '};',
    '',
  ].join('\n'),
  'src/describe.ts': [
    'export function describe(user: { name: string; age: number }) {',
    '  return { hello: user.name, age: user.age };',
    '}',
    '',
  ].join('\n'),
};

before(async () => {
  // zod's top level takes some 200–600 ms in vm2 on these machines, more when they are loaded:
  // generous bounds here; the start limit itself is tested on a server of its own.
  t = await startServer({
    env: { ADMIN_TOKEN: TOKEN, FUNCTION_TIMEOUT_MS: '10000', MAX_STARTUP_MS: '8000' },
  });
  const signup = path.join(t.dir, 'signup');
  await writeFiles(signup, ZOD_PACKAGE);
  await install(signup, 'zod');
  await install(signup, 'ms');
  // The server may have read the folder half written (the watch tells it of every file): a
  // change is seen at most a second later (docs/packages.md), so wait for the installed version.
  await until(
    'the installed package served',
    async () => (await t.request.post('/signup').send({ name: 'a', age: 1 })).status === 200,
    10_000,
  );
});

after(() => t.close());

void test('a package with zod: validation passes and fails as zod says', async () => {
  const ok = await t.request.post('/signup').send({ name: 'Ada', age: 36 });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.body, { hello: 'Ada', age: 36, ttl: 7_200_000 });
  const bad = await t.request.post('/signup').send({ name: '', age: 1.5 });
  assert.equal(bad.status, 422, bad.text);
  assert.deepEqual(bad.body, { issues: ['name', 'age'] });
});

void test('the package is one function: its files are modules, not functions; sub-paths work', async () => {
  const sub = await t.request.post('/signup/src/handler').send({ name: 'Bo', age: 2 });
  assert.equal(sub.status, 200, sub.text);
  assert.equal(sub.body.hello, 'Bo');
  const list = await t.request.get('/_/functions').set(AUTH);
  const names = (list.body.functions as { name: string }[]).map((f) => f.name);
  assert.ok(names.includes('signup'), names.join());
  assert.ok(
    !names.some((n) => n.startsWith('signup/') || n.includes('node_modules')),
    names.join(),
  );
});

void test('GET /_/functions/<name> shows the dependencies and the bundle size', async () => {
  const res = await t.request.get('/_/functions/signup').set(AUTH);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.file, 'signup/src/handler.ts');
  assert.deepEqual(res.body.package, {
    name: 'signup',
    version: '1.0.0',
    entry: 'src/handler.ts',
    dependencies: { zod: '^4.6.7', ms: '^2.1.3' },
  });
  const zodVersion = (
    JSON.parse(
      await fs.readFile(path.join(ROOT, 'node_modules', 'zod', 'package.json'), 'utf8'),
    ) as { version: string }
  ).version;
  assert.deepEqual(res.body.bundle.packages, { ms: '2.1.3', zod: zodVersion });
  assert.ok(res.body.bundle.bytes > 10_000, `bundle of ${res.body.bundle.bytes} bytes`);
  assert.ok(res.body.bundle.modules > 3);
  assert.match(res.body.source, /import \{ z \} from 'zod'/);
});

/** The stack the server logged for a request. */
function loggedStack(requestId: string): string {
  const line = t.logs.find((l) => l.reqId === requestId && l.msg === 'request');
  return String((line?.err as { stack?: string } | undefined)?.stack);
}

/** 1-based line and column of `marker` in `text`. */
function where(text: string, marker: string): string {
  const before = text.slice(0, text.indexOf(marker)).split('\n');
  return `${before.length}:${before[before.length - 1].length + 1}`;
}

void test('a throw from inside the package: its stack in the log points at the files and lines', async () => {
  const handler = ZOD_PACKAGE['src/handler.ts'];
  const zodThrows = await t.request
    .post('/signup?strict=1')
    .set('X-Request-Id', 'zod-throws')
    .send({ name: 7 });
  assert.equal(zodThrows.status, 500, zodThrows.text);
  assert.equal(zodThrows.body.error.code, 'FUNCTION_ERROR');
  // zod cuts its own frames (captureStackTrace): the top one is the call of `parse`.
  const zodStack = loggedStack('zod-throws');
  assert.ok(
    zodStack.includes(`(signup/src/handler.ts:${where(handler, 'parse(event.body)')})`),
    zodStack,
  );
  // ms throws from its own file: the frame names that file, its line and column.
  const msThrows = await t.request.get('/signup?strict=2').set('X-Request-Id', 'ms-throws');
  assert.equal(msThrows.status, 500, msThrows.text);
  const msSource = await fs.readFile(path.join(ROOT, 'node_modules', 'ms', 'index.js'), 'utf8');
  const msStack = loggedStack('ms-throws');
  // V8 places a `throw new Error(…)` frame at the `new`.
  const thrownAt = where(msSource, "new Error(\n    'val is not");
  assert.ok(msStack.includes(`(signup/node_modules/ms/index.js:${thrownAt})`), msStack);
  // The call of `ms` from the handler: its line (the column is where esbuild's call of the
  // imported binding is mapped, inside that line).
  const callLine = where(handler, 'ms(event.query.ttl').split(':')[0];
  assert.ok(msStack.includes(`(signup/src/handler.ts:${callLine}:`), msStack);
});

void test('a dependency that imports fs: the compile error names node:fs and the import chain', async () => {
  const dir = path.join(t.dir, 'reader');
  await writeFiles(dir, {
    'package.json': JSON.stringify({ name: 'reader', main: 'handler.ts' }),
    'handler.ts': "import read from 'some-pkg';\nexport default () => read();\n",
    'node_modules/some-pkg/package.json': JSON.stringify({
      name: 'some-pkg',
      main: 'lib/index.js',
    }),
    'node_modules/some-pkg/lib/index.js': "module.exports = require('./io.js');\n",
    'node_modules/some-pkg/lib/io.js':
      "// reads a file\nconst fs = require('node:fs');\nmodule.exports = () => fs.readFileSync('/etc/hostname', 'utf8');\n",
  });
  const res = await t.request.get('/reader');
  assert.equal(res.status, 500, res.text);
  assert.equal(res.body.error.code, 'FUNCTION_COMPILE_ERROR');
  assert.match(
    res.body.error.message,
    /^reader\/handler\.ts: node:fs is not available in functions: `require\('node:fs'\)` \(some-pkg\/lib\/io\.js line 2, column 20\); import chain: handler\.ts → some-pkg\/lib\/index\.js → some-pkg\/lib\/io\.js → node:fs; stand-ins exist only for /,
  );
  assert.equal(res.body.error.file, 'some-pkg/lib/io.js');
  assert.equal(res.body.error.line, 2);
});

void test('a native addon is refused, naming it', async () => {
  const dir = path.join(t.dir, 'native');
  await writeFiles(dir, {
    'package.json': JSON.stringify({ name: 'native' }),
    'index.js': "const addon = require('fast-thing');\nmodule.exports = () => addon.go();\n",
    'node_modules/fast-thing/package.json': JSON.stringify({
      name: 'fast-thing',
      main: 'index.js',
    }),
    'node_modules/fast-thing/index.js': "module.exports = require('./build/Release/fast.node');\n",
    'node_modules/fast-thing/build/Release/fast.node': '\x7fELF not really',
  });
  const res = await t.request.get('/native');
  assert.equal(res.status, 500, res.text);
  assert.match(
    res.body.error.message,
    /native addons are not available in functions: `require\('\.\/build\/Release\/fast\.node'\)`.*import chain: index\.js → fast-thing\/index\.js → \.\/build\/Release\/fast\.node/,
  );
});

void test('a bundle over MAX_BUNDLE_BYTES is refused, naming its largest parts', async () => {
  const dir = path.join(t.dir, 'huge');
  await writeFiles(dir, {
    'package.json': JSON.stringify({ name: 'huge' }),
    'index.js': "const blob = require('./blob.js');\nmodule.exports = () => blob.length;\n",
    'blob.js': `module.exports = ${JSON.stringify('x'.repeat(5.5 * 1024 * 1024))};\n`,
  });
  const res = await t.request.get('/huge');
  assert.equal(res.status, 500, res.text);
  assert.match(
    res.body.error.message,
    /^huge\/index\.js: the bundle is \d+ bytes; at most 5242880 \(MAX_BUNDLE_BYTES\)\. The largest parts: blob\.js /,
  );
});

void test('top-level code over MAX_STARTUP_MS is a compile error', async () => {
  const limited = await startServer({ env: { MAX_STARTUP_MS: '100' } });
  try {
    await writeFiles(path.join(limited.dir, 'slowstart'), {
      'package.json': JSON.stringify({ name: 'slowstart' }),
      'index.js':
        'const until = Date.now() + 600;\nwhile (Date.now() < until) {}\nmodule.exports = () => "late";\n',
    });
    await until(
      'the package seen',
      async () => (await limited.request.get('/slowstart')).status !== 404,
      5000,
    );
    const res = await limited.request.get('/slowstart');
    assert.equal(res.status, 500, res.text);
    assert.equal(res.body.error.code, 'FUNCTION_COMPILE_ERROR');
    assert.match(
      res.body.error.message,
      /the file's top-level code (ran for \d+ ms|did not finish within \d+ ms) when it loaded; at most 100 ms \(MAX_STARTUP_MS\)/,
    );
  } finally {
    await limited.close();
  }
});

void test('a package edited on disk: the next version is served (its version changes)', async () => {
  const dir = path.join(t.dir, 'edited');
  await writeFiles(dir, {
    'package.json': JSON.stringify({ name: 'edited' }),
    'index.ts': "import { word } from './lib/word';\nexport default () => word;\n",
    'lib/word.ts': "export const word = 'one';\n",
  });
  const first = await t.request.get('/edited');
  assert.equal(first.text, 'one');
  const before = (await t.request.get('/_/functions/edited').set(AUTH)).body.version as string;
  await fs.writeFile(path.join(dir, 'lib', 'word.ts'), "export const word = 'two';\n");
  await until('the edit served', async () => (await t.request.get('/edited')).text === 'two', 5000);
  const after = (await t.request.get('/_/functions/edited').set(AUTH)).body.version as string;
  assert.notEqual(after, before);
  // A change in node_modules (an install): the lockfile changes, and so does the version.
  await writeFiles(dir, {
    'index.ts':
      "import { word } from './lib/word';\nimport ms from 'ms';\nexport default () => `${word} ${ms(1000)}`;\n",
  });
  await until(
    'the missing import refused',
    async () => (await t.request.get('/edited')).status === 500,
    5000,
  );
  await install(dir, 'ms');
  await writeFiles(dir, { 'package-lock.json': '{"lockfileVersion":3}' });
  await until(
    'the install seen',
    async () => (await t.request.get('/edited')).text === 'two 1s',
    5000,
  );
});

void test('a single-file function imports a package from FUNCTIONS_DIR/node_modules', async () => {
  await install(t.dir, 'ms');
  await t.writeFunction('single.ts', "import ms from 'ms';\nexport default () => ms(60_000);\n");
  const res = await t.request.get('/single');
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, '1m');
  const info = await t.request.get('/_/functions/single').set(AUTH);
  assert.deepEqual(info.body.bundle.packages, { ms: '2.1.3' });
  assert.equal(info.body.package, undefined);
  // Not a package, so no files of its own: a relative import is refused, saying what to do.
  await t.writeFunction('relative.ts', "import x from './x';\nexport default () => x;\n");
  const relative = await t.request.get('/relative');
  assert.match(relative.body.error.message, /make the function a package folder/);
});

void test('a file beside a package folder of the same name is a compile error naming both', async () => {
  await writeFiles(path.join(t.dir, 'twin'), {
    'package.json': '{}',
    'index.js': 'module.exports = () => 1;\n',
  });
  await t.writeFunction('twin', 'module.exports = () => 2;\n');
  const res = await t.request.get('/twin');
  assert.equal(res.status, 500, res.text);
  assert.match(res.body.error.message, /both twin\.js and the package folder twin\/ exist/);
});

/** Runs the CLI against the test server (a real process, bounded). */
function cli(args: string[]): Promise<CliRun> {
  return runCli(args, {
    env: { PATH: process.env.PATH, HOME: os.tmpdir(), KOA_FAAS_URL: t.url, KOA_FAAS_TOKEN: TOKEN },
  });
}

void test('the same package deployed through the CLI: bundled there, uploaded, served', async () => {
  const local = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-package-'));
  try {
    await writeFiles(local, ZOD_PACKAGE);
    await install(local, 'zod');
    await install(local, 'ms');
    const deployed = await cli(['deploy', local, '--name', 'uploaded', '--json']);
    assert.equal(deployed.code, 0, deployed.stderr);
    const answer = JSON.parse(deployed.stdout) as { name: string; bundle: { packages: object } };
    assert.equal(answer.name, 'uploaded');
    assert.ok('zod' in answer.bundle.packages);
    const ok = await t.request.post('/uploaded').send({ name: 'Cy', age: 3 });
    assert.deepEqual(ok.body, { hello: 'Cy', age: 3, ttl: 7_200_000 });
    const bad = await t.request.post('/uploaded').send({ age: -1 });
    assert.deepEqual(bad.body, { issues: ['name', 'age'] });
    // Its source map came with it: a throw points at the package's own files.
    const thrown = await t.request
      .post('/uploaded?strict=1')
      .set('X-Request-Id', 'uploaded-throws')
      .send({});
    assert.equal(thrown.status, 500);
    const stack = loggedStack('uploaded-throws');
    const at = where(ZOD_PACKAGE['src/handler.ts'], 'parse(event.body)');
    assert.ok(stack.includes(`(uploaded/src/handler.ts:${at})`), stack);
    const info = await t.request.get('/_/functions/uploaded').set(AUTH);
    assert.equal(info.body.package.entry, 'src/handler.ts');
    assert.ok(info.body.bundle.bytes > 10_000);

    // A dependency that imports fs: the CLI refuses it with the server's words, exit 1.
    await writeFiles(local, {
      'node_modules/zod/index.js': "require('child_process');\nmodule.exports = {};\n",
    });
    const refused = await cli(['deploy', local, '--name', 'uploaded']);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(
      refused.stderr.trim(),
      /^koa-faas: FUNCTION_COMPILE_ERROR: uploaded\/src\/handler\.ts: node:child_process is not available in functions: .*import chain: src\/handler\.ts → zod\/index\.js → node:child_process/,
    );
    assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  } finally {
    await fs.rm(local, { recursive: true, force: true });
  }
});

void test('DELETE of a package function removes its folder', async () => {
  const dir = path.join(t.dir, 'gone');
  await writeFiles(dir, { 'package.json': '{}', 'index.js': 'module.exports = () => 1;\n' });
  assert.equal((await t.request.get('/gone')).status, 200);
  const res = await t.request.delete('/_/functions/gone').set(AUTH);
  assert.equal(res.status, 204, res.text);
  await assert.rejects(fs.stat(dir), /ENOENT/);
  await until(
    'the deleted package gone',
    async () => (await t.request.get('/gone')).status === 404,
    5000,
  );
});
