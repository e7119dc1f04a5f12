/**
 * bundle.ts on real files and real esbuild (docs/spec.md §2 "Packages"): the stand-ins work, the
 * entry rules, refusals with their import chains, versions and stamps. What bundled code can
 * reach inside the sandbox is test/worker/package-escape.test.ts; the server end to end is
 * test/http/packages.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import vm from 'node:vm';
import { FunctionCompileError } from '../../src/errors';
import { bundleFile, bundlePackage } from '../../src/functions/bundle';
import { stampsOf, stampsUnchanged } from '../../src/functions/bundle-files';
import { STAND_INS } from '../../src/functions/bundle-resolver';
import { packageEntry } from '../../src/functions/package-entry';
import type { Bundle } from '../../src/functions/bundle';
import { STAND_IN_NAMES } from '../../src/functions/compile-errors';
import { stopCompiler } from '../../src/functions/transform';
import { writeFiles } from '../support/files';

let root: string;

before(async () => {
  root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-bundle-')));
});

after(async () => {
  await stopCompiler();
  await fs.rm(root, { recursive: true, force: true });
});

let folders = 0;
/** A new package folder under the root, with these files. */
async function pkg(files: Record<string, string>): Promise<string> {
  const dir = path.join(root, `p${++folders}`);
  await writeFiles(dir, { 'package.json': '{}', ...files });
  return dir;
}

/** Runs a bundle as the sandbox does (a script with `module` and `exports`); its export. */
function run(bundle: Bundle): unknown {
  const module = { exports: {} as Record<string, unknown> };
  vm.runInNewContext(bundle.code, { module, exports: module.exports, URL, TextEncoder });
  const exported = module.exports;
  return typeof exported.default === 'function' ? exported.default : exported;
}

async function refusal(promise: Promise<unknown>): Promise<FunctionCompileError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof FunctionCompileError, String(err));
    return err;
  }
  assert.fail('it bundled');
}

void test('STAND_IN_NAMES, which refusals list, is every built-in with a stand-in', () => {
  const names = Object.keys(STAND_INS).filter((name) => !name.includes('/'));
  assert.equal(STAND_IN_NAMES, names.sort().join(', '));
});

void test('every stand-in bundles and works, with and without node:', async () => {
  const dir = await pkg({
    'index.js': [
      "const { Buffer } = require('node:buffer');",
      "const { EventEmitter } = require('events');",
      "const util = require('node:util');",
      "const path = require('path');",
      "const posix = require('path/posix');",
      "const { StringDecoder } = require('string_decoder');",
      "const url = require('node:url');",
      "const assert = require('assert');",
      "const proc = require('node:process');",
      'module.exports = () => {',
      '  const seen = [];',
      "  const ee = new EventEmitter(); ee.on('x', (v) => seen.push(v)); ee.emit('x', 1);",
      "  let refused = ''; try { assert.equal(1, 2); } catch (e) { refused = e.code; }",
      '  return {',
      "    b64: Buffer.from('hi').toString('base64'),",
      '    seen,',
      "    fmt: util.format('%s=%d', 'a', 1),",
      "    joined: path.join('/a', '../b', 'c.txt'),",
      "    posix: posix.basename('/x/y.js', '.js'),",
      "    decoded: new StringDecoder('utf8').write(Buffer.from([0xe2, 0x82, 0xac])),",
      "    host: url.parse('https://example.test:8080/p?q=1').port,",
      '    refused,',
      '    env: proc.env.NODE_ENV,',
      '    freeEnv: process.env.NODE_ENV,',
      '  };',
      '};',
    ].join('\n'),
  });
  const bundle = await bundlePackage(dir, { name: 'stand-ins' });
  assert.deepEqual(bundle.info.standIns, [
    'assert',
    'buffer',
    'events',
    'path',
    'path/posix',
    'process',
    'string_decoder',
    'url',
    'util',
  ]);
  // Through JSON: the values come from another realm (the script's own context).
  assert.deepEqual(JSON.parse(JSON.stringify((run(bundle) as () => unknown)())), {
    b64: 'aGk=',
    seen: [1],
    fmt: 'a=1',
    joined: '/b/c.txt',
    posix: 'y',
    decoded: '€',
    host: '8080',
    refused: 'ERR_ASSERTION',
    env: 'production',
    freeEnv: 'production',
  });
  // The stand-ins are named as ours in the map, never by the server's paths.
  assert.ok(bundle.sourceMap.sources.some((s) => s === 'koa-faas:buffer/index.js'));
  const install = path.join(__dirname, '..', '..', '..');
  for (const text of [bundle.code, JSON.stringify(bundle.sourceMap)]) {
    assert.ok(!text.includes(install), `the server's install path (${install}) in the bundle`);
    assert.ok(!/\.\.\/(\.\.\/)*node_modules/.test(text), 'a path out of the folder in the bundle');
  }
});

void test('a built-in without a stand-in: refused, naming it and the chain; subpaths too', async () => {
  const dir = await pkg({
    'index.ts': "import { go } from './lib/go';\nexport default go;\n",
    'lib/go.ts': "import { run } from 'runner';\nexport const go = () => run();\n",
    'node_modules/runner/package.json': '{"main":"main.js"}',
    'node_modules/runner/main.js':
      "// spawns\nexports.run = () => require('child_process').execSync('id');\n",
  });
  const err = await refusal(bundlePackage(dir, { name: 'spawner' }));
  assert.equal(
    err.message,
    "spawner/index.ts: node:child_process is not available in functions: `require('child_process')` " +
      '(runner/main.js line 2, column 29); import chain: index.ts → lib/go.ts → runner/main.js → ' +
      `node:child_process; stand-ins exist only for ${STAND_IN_NAMES}`,
  );
  assert.equal(err.file, 'runner/main.js');
  const subpath = await refusal(
    bundleFile("import fs from 'node:fs/promises';\nexport default () => fs;\n", 'f.ts', 'ts'),
  );
  assert.match(subpath.message, /^f\.ts: node:fs\/promises is not available in functions/);
});

void test("a package's browser field may map a built-in away: an empty module, not a refusal", async () => {
  const dir = await pkg({
    'index.js': "const lib = require('lib');\nmodule.exports = () => lib();\n",
    'node_modules/lib/package.json': '{"main":"lib.js","browser":{"fs":false}}',
    'node_modules/lib/lib.js':
      "const fs = require('fs');\nmodule.exports = () => Object.keys(fs).length;\n",
  });
  const bundle = await bundlePackage(dir, { name: 'mapped' });
  assert.equal((run(bundle) as () => number)(), 0);
});

void test('the entry: main, main without its extension, a folder main, else index.ts, else index.js', async () => {
  const entryOf = async (files: Record<string, string>) =>
    (await packageEntry(await pkg(files), 'e')).info.entry;
  assert.equal(
    await entryOf({ 'package.json': '{"main":"src/h.ts"}', 'src/h.ts': '' }),
    'src/h.ts',
  );
  assert.equal(await entryOf({ 'package.json': '{"main":"src/h"}', 'src/h.js': '' }), 'src/h.js');
  assert.equal(
    await entryOf({ 'package.json': '{"main":"lib"}', 'lib/index.ts': '' }),
    'lib/index.ts',
  );
  assert.equal(await entryOf({ 'index.ts': '', 'index.js': '' }), 'index.ts');
  assert.equal(await entryOf({ 'index.js': '' }), 'index.js');
  const cases: [Record<string, string>, RegExp][] = [
    [{ 'package.json': '{"main": "../x.js"}' }, /main '\.\.\/x\.js' leads outside the folder/],
    [{ 'package.json': '{"main": "gone.js"}' }, /main 'gone\.js' names no file/],
    [{ 'package.json': '[1]' }, /package\.json: not a JSON object/],
    [{ 'package.json': '{"main": "data.json"}', 'data.json': '{}' }, /is not a \.js or \.ts file/],
    [{}, /no entry file: package\.json has no main, and there is no index\.ts or index\.js/],
  ];
  for (const [files, message] of cases) {
    await assert.rejects(packageEntry(await pkg(files), 'e'), message);
  }
});

void test('the version covers every input and the lockfile; stamps say when it changed', async () => {
  const dir = await pkg({
    'index.js': "module.exports = require('dep');\n",
    'node_modules/dep/package.json': '{"main":"i.js"}',
    'node_modules/dep/i.js': 'module.exports = () => 1;\n',
  });
  const first = await bundlePackage(dir, { name: 'v' });
  const again = await bundlePackage(dir, { name: 'v' });
  assert.equal(again.version, first.version);
  assert.equal(await stampsUnchanged(first.stamps), true);
  await fs.writeFile(path.join(dir, 'node_modules', 'dep', 'i.js'), 'module.exports = () => 2;\n');
  assert.equal(await stampsUnchanged(first.stamps), false);
  const edited = await bundlePackage(dir, { name: 'v' });
  assert.notEqual(edited.version, first.version);
  await fs.writeFile(path.join(dir, 'package-lock.json'), '{"lockfileVersion":3}');
  assert.equal(await stampsUnchanged(edited.stamps), false);
  const locked = await bundlePackage(dir, { name: 'v' });
  assert.notEqual(locked.version, edited.version);
});

void test('a missing package: refused, and its install is a change the stamps see', async () => {
  const dir = await pkg({ 'index.js': "module.exports = require('later');\n" });
  const err = await refusal(bundlePackage(dir, { name: 'm', functionsDir: root }));
  assert.match(err.message, /package 'later' is not installed/);
  const stamps = stampsOf(err);
  assert.ok(stamps && (await stampsUnchanged(stamps)));
  await writeFiles(dir, {
    'node_modules/later/package.json': '{}',
    'node_modules/later/index.js': 'module.exports = () => 3;\n',
  });
  assert.equal(await stampsUnchanged(stamps), false);
  assert.equal((run(await bundlePackage(dir, { name: 'm' })) as () => number)(), 3);
});

void test('FUNCTIONS_DIR/node_modules is searched after the package, never past it', async () => {
  await writeFiles(root, {
    'node_modules/shared/package.json': '{}',
    'node_modules/shared/index.js': "module.exports = 'shared';\n",
  });
  const dir = await pkg({ 'index.js': "module.exports = () => require('shared');\n" });
  assert.equal(
    (run(await bundlePackage(dir, { name: 's', functionsDir: root })) as () => string)(),
    'shared',
  );
  // Without FUNCTIONS_DIR (the CLI), only the package's own node_modules.
  await refusal(bundlePackage(dir, { name: 's' }));
  // A package only the server has (its own node_modules) is never reached.
  const server = await pkg({ 'index.js': "module.exports = () => require('koa');\n" });
  const err = await refusal(bundlePackage(server, { name: 'k', functionsDir: root }));
  assert.match(err.message, /package 'koa' is not installed/);
});

void test('a bundle over maxBytes is refused, naming the largest parts', async () => {
  const dir = await pkg({
    'index.js': "module.exports = () => require('big').length;\n",
    'node_modules/big/package.json': '{}',
    'node_modules/big/index.js': `module.exports = ${JSON.stringify('y'.repeat(40_000))};\n`,
  });
  const err = await refusal(bundlePackage(dir, { name: 'b', maxBytes: 20_000 }));
  assert.match(
    err.message,
    /^b\/index\.js: the bundle is \d+ bytes; at most 20000 \(MAX_BUNDLE_BYTES\)\. The largest parts: big \d+ KiB/,
  );
});
