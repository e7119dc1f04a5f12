/**
 * Attacks on the bundler (docs/spec.md §2 "Packages") by someone who controls the function files
 * (or the deploy API): every one must fail safely, with a clear compile error (or a 4xx), without
 * a byte of a file outside the function's folders in the bundle, the error or an API answer,
 * without hanging, and a delete must never reach outside FUNCTIONS_DIR. Module tests call
 * bundle.ts and transform.ts on temporary folders; a few go through the real server.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FunctionCompileError } from '../../src/errors';
import { bundleFile, bundlePackage } from '../../src/functions/bundle';
import { compileFunction, remapStack } from '../../src/functions/transform';
import { closeAndReap, startServer } from '../support/server';
import type { TestServer } from '../support/server';

/** What an outside file holds: it must never appear in anything the bundler returns or says. */
const SECRET = 'SECRETxyzzy0123456789';
/** Every await on the bundler is bounded: a hang is a failure, not a stuck test run. */
const BOUND_MS = 20_000;

function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${BOUND_MS} ms`)), BOUND_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A file in a layout: its text, a symlink to a path, or a FIFO. */
type Item = string | { link: string } | 'fifo';

interface Layout {
  /** FUNCTIONS_DIR (real path). */
  functionsDir: string;
  /** A folder outside it holding `secret.js`, `secret.json`, `secret.txt` and a package `leak`. */
  outside: string;
}

const roots: string[] = [];
after(async () => {
  for (const root of roots) await fs.rm(root, { recursive: true, force: true });
});

/**
 * A FUNCTIONS_DIR and an outside folder full of SECRET, side by side in a temporary folder (or
 * under `parent`), with `files` (paths relative to FUNCTIONS_DIR; `{OUT}` in a link stands for
 * the outside folder) written in it.
 */
async function layout(files: Record<string, Item>, parent = os.tmpdir()): Promise<Layout> {
  const root = await fs.realpath(await fs.mkdtemp(path.join(parent, 'bundle-attacks-')));
  roots.push(root);
  const functionsDir = path.join(root, 'functions');
  const outside = path.join(root, 'outside');
  await fs.mkdir(functionsDir);
  await fs.mkdir(path.join(outside, 'leak'), { recursive: true });
  await fs.writeFile(path.join(outside, 'secret.js'), `module.exports = '${SECRET}';\n`);
  await fs.writeFile(path.join(outside, 'secret.json'), `{"secret": "${SECRET}"}\n`);
  await fs.writeFile(path.join(outside, 'secret.txt'), `${SECRET}\n`);
  await fs.writeFile(path.join(outside, 'token'), SECRET);
  await fs.writeFile(path.join(outside, 'leak', 'package.json'), '{"name":"leak","main":"i.js"}');
  await fs.writeFile(path.join(outside, 'leak', 'i.js'), `module.exports = '${SECRET}';\n`);
  for (const [name, item] of Object.entries(files)) {
    const file = path.join(functionsDir, name);
    await fs.mkdir(path.dirname(file), { recursive: true });
    if (item === 'fifo') execFileSync('mkfifo', [file]);
    else if (typeof item === 'string') await fs.writeFile(file, item);
    else await fs.symlink(item.link.replace('{OUT}', outside), file);
  }
  return { functionsDir, outside };
}

/** The package `p` of a layout, bundled; resolves with the bundle or the compile error. */
async function bundleP(at: Layout, maxBytes?: number) {
  return bounded(
    bundlePackage(path.join(at.functionsDir, 'p'), {
      name: 'p',
      functionsDir: at.functionsDir,
      maxBytes,
    }).catch((err: unknown) => err),
    'bundlePackage',
  );
}

/** Asserts a compile error matching `pattern`, without SECRET anywhere in it. */
function refused(result: unknown, pattern: RegExp): FunctionCompileError {
  assert.ok(
    result instanceof FunctionCompileError,
    `expected a compile error, got ${result instanceof Error ? result.stack : JSON.stringify(result)?.slice(0, 300)}`,
  );
  assert.match(result.message, pattern);
  assert.ok(!JSON.stringify({ ...result, message: result.message }).includes(SECRET));
  assert.ok(!result.message.includes(SECRET), result.message);
  assert.ok(!String(result.stack).includes(SECRET));
  return result;
}

/** Asserts a bundle without SECRET in its code, map or info. */
function clean(result: unknown): void {
  assert.ok(!(result instanceof Error), result instanceof Error ? result.message : '');
  assert.ok(!JSON.stringify(result).includes(SECRET));
}

const PKG = '{"name":"p"}';

describe('a package reaching outside its folder', () => {
  test('package.json a link to a file outside: refused before it is parsed (no JSON.parse echo)', async () => {
    const at = await layout({ 'p/package.json': { link: '{OUT}/token' }, 'p/index.js': '' });
    refused(await bundleP(at), /^p\/package\.json leads outside the folder$/);
  });

  test('package.json a link to /proc/self/environ (the server environment): refused', async () => {
    const at = await layout({ 'p/package.json': { link: '/proc/self/environ' }, 'p/index.js': '' });
    const err = refused(await bundleP(at), /^p\/package\.json leads outside the folder$/);
    assert.ok(!err.message.includes('PATH='));
  });

  test('package.json not JSON (its own file): says so', async () => {
    const at = await layout({ 'p/package.json': 'not json', 'p/index.js': '' });
    refused(await bundleP(at), /^p\/package\.json: not a JSON object/);
  });

  test('package.json over 1 MiB: refused without reading it', async () => {
    const at = await layout({ 'p/package.json': '', 'p/index.js': '' });
    await fs.truncate(path.join(at.functionsDir, 'p', 'package.json'), 2 * 1024 * 1024);
    refused(
      await bundleP(at),
      /^p\/package\.json: not a JSON object \(\d+ bytes; at most 1048576\)/,
    );
  });

  for (const [what, main, pattern] of [
    ['../ out of the folder', '../../outside/secret.js', /main '.*' leads outside the folder/],
    ['an absolute path', '/dev/zero', /main '\/dev\/zero' leads outside the folder/],
    ['a link out of the folder', 'l.js', /main 'l\.js' leads outside the folder/],
    ['a FIFO in the folder', 'f.js', /main 'f\.js' names no file/],
  ] as const) {
    test(`main: ${what} → refused`, async () => {
      const at = await layout({
        'p/package.json': JSON.stringify({ main }),
        'p/l.js': { link: '{OUT}/secret.js' },
        'p/f.js': 'fifo',
      });
      refused(await bundleP(at), pattern);
    });
  }

  for (const [what, files, pattern] of [
    [
      'an absolute import',
      { 'p/index.js': `import s from '{OUT}/secret.js'; export default () => s;` },
      /leads outside the function's folder/,
    ],
    [
      'a ../ import',
      { 'p/index.js': `import s from '../../outside/secret.js'; export default () => s;` },
      /leads outside the function's folder/,
    ],
    [
      'a JSON import through ../',
      { 'p/index.js': `import s from '../../outside/secret.json'; export default () => s;` },
      /leads outside the function's folder/,
    ],
    [
      '/etc/passwd',
      { 'p/index.js': `import s from '/etc/passwd'; export default () => s;` },
      /leads outside the function's folder/,
    ],
    [
      'an own file that is a link out',
      {
        'p/index.js': `import s from './s.js'; export default () => s;`,
        'p/s.js': { link: '{OUT}/secret.js' },
      },
      /leads outside the function's folder/,
    ],
    [
      'an own folder that is a link out',
      {
        'p/index.js': `import s from './lib/secret.js'; export default () => s;`,
        'p/lib': { link: '{OUT}' },
      },
      /leads outside the function's folder/,
    ],
    [
      'a node_modules package that is a link out',
      {
        'p/index.js': `import s from 'leak'; export default () => s;`,
        'p/node_modules/leak': { link: '{OUT}/leak' },
      },
      /package 'leak' is not installed/,
    ],
    [
      'a node_modules folder that is a link out',
      {
        'p/index.js': `import s from 'leak'; export default () => s;`,
        'p/node_modules': { link: '{OUT}' },
      },
      /package 'leak' is not installed/,
    ],
    [
      'a package file that is a link out',
      {
        'p/index.js': `import s from 'dep'; export default () => s;`,
        'p/node_modules/dep/package.json': '{"main":"i.js"}',
        'p/node_modules/dep/i.js': { link: '{OUT}/secret.js' },
      },
      /package 'dep' is not installed/,
    ],
    [
      'main ../ in a dependency',
      {
        'p/index.js': `import s from 'dep'; export default () => s;`,
        'p/node_modules/dep/package.json': '{"main":"../../../../outside/secret.js"}',
      },
      /package 'dep' is not installed/,
    ],
    [
      'exports ../ in a dependency',
      {
        'p/index.js': `import s from 'dep'; export default () => s;`,
        'p/node_modules/dep/package.json': '{"exports":"../../../../outside/secret.js"}',
      },
      /package 'dep' is not installed/,
    ],
    [
      'module: an absolute path in a dependency',
      {
        'p/index.js': `import s from 'dep'; export default () => s;`,
        'p/node_modules/dep/package.json': '{"module":"{OUT}/secret.js"}',
      },
      /package 'dep' is not installed/,
    ],
    [
      'browser maps a file out',
      {
        'p/index.js': `import s from 'dep'; export default () => s;`,
        'p/node_modules/dep/package.json':
          '{"main":"i.js","browser":{"./i.js":"../../../../outside/secret.js"}}',
        'p/node_modules/dep/i.js': '',
      },
      /not installed|leads outside/,
    ],
    [
      'imports #x to a file out',
      {
        'p/package.json': '{"imports":{"#x":"../../outside/secret.js"}}',
        'p/index.js': `import s from '#x'; export default () => s;`,
      },
      /not installed|leads outside/,
    ],
    [
      'a dependency importing ../ out',
      {
        'p/index.js': `import s from 'dep'; export default () => s;`,
        'p/node_modules/dep/package.json': '{"main":"i.js"}',
        'p/node_modules/dep/i.js': `module.exports = require('../../../../outside/secret.js');`,
      },
      /leads outside the function's folder \(dep\/i\.js/,
    ],
    [
      "another function's folder",
      {
        'p/index.js': `import s from '../q/s.js'; export default () => s;`,
        'q/s.js': `module.exports = '${SECRET}';`,
      },
      /leads outside the function's folder/,
    ],
    [
      'a text import attribute on a file out',
      {
        'p/index.js': `import s from '../../outside/secret.txt' with { type: 'text' }; export default () => s;`,
      },
      /leads outside the function's folder/,
    ],
    [
      'a .txt file of its own (no loader)',
      {
        'p/index.js': `import s from './s.txt' with { type: 'text' }; export default () => s;`,
        'p/s.txt': { link: '{OUT}/secret.txt' },
      },
      /leads outside|cannot be imported/,
    ],
    [
      'a .node addon',
      { 'p/index.js': `import s from './a.node'; export default () => s;`, 'p/a.node': '' },
      /native addons are not available/,
    ],
    [
      'require.resolve',
      { 'p/index.js': `module.exports = () => require.resolve('../../outside/secret.js');` },
      /require\.resolve is not available/,
    ],
  ] as const) {
    test(`${what} → refused, nothing of the outside file said`, async () => {
      const at = await layout({ 'p/package.json': PKG, ...(files as Record<string, Item>) });
      for (const file of await fs.readdir(path.join(at.functionsDir, 'p'), { recursive: true })) {
        const full = path.join(at.functionsDir, 'p', file);
        const stat = await fs.lstat(full);
        if (stat.isFile()) {
          const text = (await fs.readFile(full, 'utf8')).replaceAll('{OUT}', at.outside);
          await fs.writeFile(full, text);
        }
      }
      refused(await bundleP(at), pattern);
    });
  }

  test('tsconfig.json paths and extends (never read): no outside file bundled', async () => {
    const at = await layout({
      'p/package.json': PKG,
      'p/index.ts': `import s from 'out/secret.js'; export default () => s;`,
      'p/tsconfig.json': `{"extends": "{OUT}/token", "compilerOptions": {"baseUrl": ".", "paths": {"out/*": ["../../outside/*"]}}}`,
    });
    refused(await bundleP(at), /package 'out' is not installed/);
  });

  test("the server's own packages (koa, vm2, esbuild) and the stand-ins' dependencies (base64-js, qs) are not installed", async () => {
    // FUNCTIONS_DIR inside the server's folder: its node_modules is a parent's.
    const at = await layout({ 'p/package.json': PKG, 'p/index.js': '' }, path.join(__dirname));
    for (const name of ['koa', 'vm2', 'esbuild', 'base64-js', 'qs', 'buffer/', 'util/']) {
      const index = path.join(at.functionsDir, 'p', 'index.js');
      await fs.writeFile(index, `import x from '${name}'; export default () => x;`);
      const pkg = name.replace(/\/$/, '');
      refused(await bundleP(at), new RegExp(`package '${pkg}' is not installed`));
      const single = await bounded(
        bundleFile(`import x from '${name}'; export default () => x;`, 'f.js', 'js', {
          functionsDir: at.functionsDir,
        }).catch((err: unknown) => err),
        'bundleFile',
      );
      refused(single, new RegExp(`package '${pkg}' is not installed`));
    }
    // The stand-in itself is bundled, from the server's node_modules.
    await fs.writeFile(
      path.join(at.functionsDir, 'p', 'index.js'),
      `import { Buffer } from 'buffer'; export default () => Buffer.from('a');`,
    );
    const bundle = await bundleP(at);
    clean(bundle);
    assert.deepEqual((bundle as { info: { standIns: string[] } }).info.standIns, ['buffer']);
  });

  test('circular imports and a deep chain of node_modules bundle, in bounded time', async () => {
    const files: Record<string, Item> = {
      'p/package.json': PKG,
      'p/index.js': `import { a } from './a.js'; import d from 'd0'; export default () => a() + d;`,
      'p/a.js': `import { b } from './b.js'; export const a = () => b();`,
      'p/b.js': `import { a } from './a.js'; export const b = () => typeof a;`,
    };
    let dir = 'p';
    for (let depth = 0; depth < 30; depth++) {
      dir = `${dir}/node_modules/d${depth}`;
      files[`${dir}/package.json`] = `{"name":"d${depth}","main":"i.js"}`;
      files[`${dir}/i.js`] =
        depth < 29 ? `module.exports = require('d${depth + 1}');` : `module.exports = 1;`;
    }
    const bundle = await bundleP(await layout(files));
    clean(bundle);
    assert.ok((bundle as { info: { modules: number } }).info.modules >= 33);
  });
});

describe('files that would hang or flood a read', () => {
  test('an imported FIFO: refused, no hang', async () => {
    const at = await layout({
      'p/package.json': PKG,
      'p/index.js': `import s from './f.js'; export default () => s;`,
      'p/f.js': 'fifo',
    });
    refused(await bundleP(at), /a file that is not a regular file cannot be imported/);
  });

  for (const [what, file, item, pattern] of [
    [
      'a FIFO package.json in a dependency',
      'p/node_modules/dep/package.json',
      'fifo',
      /^p\/node_modules\/dep\/package\.json: not a regular file$/,
    ],
    [
      'a dependency package.json linked to /dev/zero',
      'p/node_modules/dep/package.json',
      { link: '/dev/zero' },
      /^p\/node_modules\/dep\/package\.json: it leads outside the folder$/,
    ],
    [
      'a dependency package.json linked outside',
      'p/node_modules/dep/package.json',
      { link: '{OUT}/token' },
      /^p\/node_modules\/dep\/package\.json: it leads outside the folder$/,
    ],
    [
      'a FIFO Yarn PnP manifest',
      'p/.pnp.data.json',
      'fifo',
      /^p\/\.pnp\.data\.json: not a regular file$/,
    ],
    ['a FIFO .pnp.cjs', 'p/.pnp.cjs', 'fifo', /^p\/\.pnp\.cjs: not a regular file$/],
    [
      'a FIFO package.json in FUNCTIONS_DIR',
      'package.json',
      'fifo',
      /^package\.json: not a regular file$/,
    ],
    [
      'a FIFO package.json in FUNCTIONS_DIR/node_modules',
      'node_modules/x/package.json',
      'fifo',
      /^node_modules\/x\/package\.json: not a regular file$/,
    ],
    [
      'a FIFO package.json behind a linked folder',
      'p/node_modules/dep',
      { link: '../../elsewhere' },
      /^elsewhere\/package\.json: not a regular file$/,
    ],
  ] as const) {
    test(`${what}: refused before esbuild reads it, no hang`, async () => {
      const at = await layout({
        'p/package.json': PKG,
        'p/index.js': `import s from 'dep'; export default () => s;`,
        'elsewhere/package.json': 'fifo',
        [file]: item as Item,
      });
      refused(await bundleP(at), pattern);
    });
  }

  test('a single file: a FIFO package.json in FUNCTIONS_DIR/node_modules is refused, no hang', async () => {
    const at = await layout({ 'node_modules/dep/package.json': 'fifo' });
    const result = await bounded(
      compileFunction(`import d from 'dep'; export default () => d;`, 'f.ts', {
        functionsDir: at.functionsDir,
      }).catch((err: unknown) => err),
      'compileFunction',
    );
    refused(result, /^f\.ts: node_modules\/dep\/package\.json: not a regular file$/);
  });

  test('FIFO and /dev/zero lockfiles are stamped, never read: the bundle is made', async () => {
    const at = await layout({
      'p/package.json': PKG,
      'p/index.js': `export default () => 1;`,
      'p/package-lock.json': 'fifo',
      'p/yarn.lock': { link: '/dev/zero' },
      'p/pnpm-lock.yaml': { link: '{OUT}/token' },
    });
    clean(await bundleP(at));
  });

  test('a file over 4 × MAX_BUNDLE_BYTES: refused without reading it', async () => {
    const at = await layout({
      'p/package.json': PKG,
      'p/index.js': `import big from './big.js'; export default () => big;`,
      'p/big.js': '',
    });
    await fs.truncate(path.join(at.functionsDir, 'p', 'big.js'), 64 * 1024 * 1024);
    refused(
      await bundleP(at, 1024 * 1024),
      /a file of 67108864 bytes \(over 4 × MAX_BUNDLE_BYTES, 4194304\) cannot be imported/,
    );
  });
});

describe("an uploaded bundle's source map", () => {
  test('sources naming outside files are names only: nothing is read', async () => {
    const map = {
      version: 3,
      sources: ['/etc/passwd', '../../outside/token', 'file:///proc/self/environ'],
      names: [],
      mappings: 'AAAA;AACA;AAEA',
    };
    const source =
      `module.exports = () => { throw new Error('boom'); };\n` +
      `//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`;
    const compiled = await bounded(compileFunction(source, 'up.js'), 'compileFunction');
    assert.equal(compiled.code.includes('sourceMappingURL'), false);
    assert.deepEqual(compiled.sourceMap?.sources, map.sources);
    assert.deepEqual(compiled.sourceMap?.sourcesContent, []);
    assert.equal(remapStack(compiled, 'at up.js:2:1'), 'at /etc/passwd:2:1');
  });

  test('huge mappings: compiled and remapped in bounded time', async () => {
    const mappings = Array.from({ length: 20_000 }, () => 'AAAA,'.repeat(20).slice(0, -1)).join(
      ';',
    );
    const map = { version: 3, sources: ['a.js'], names: [], mappings };
    const source =
      `module.exports = () => 1;\n` +
      `//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`;
    const compiled = await bounded(compileFunction(source, 'up.js'), 'compileFunction');
    assert.equal(remapStack(compiled, 'at up.js:1:1'), 'at a.js:1:1');
  });
});

describe('through the server', () => {
  const TOKEN = 'admin-token-for-bundle-attacks-0123';
  const AUTH = `Bearer ${TOKEN}`;
  let t: TestServer;
  let outside: string;

  before(async () => {
    t = await startServer({ env: { ADMIN_TOKEN: TOKEN } });
    outside = await fs.mkdtemp(path.join(os.tmpdir(), 'bundle-attacks-outside-'));
    roots.push(outside);
    await fs.writeFile(path.join(outside, 'token'), SECRET);
    await fs.mkdir(path.join(outside, 'keep'));
    await fs.writeFile(path.join(outside, 'keep', 'file.txt'), SECRET);
  });
  after(async () => {
    await closeAndReap(t);
  });

  test('a package whose package.json links out: a compile error without the file, in the API and the invocation', async () => {
    const dir = path.join(t.dir, 'leaky');
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, 'index.js'), 'module.exports = () => 1;');
    await fs.symlink(path.join(outside, 'token'), path.join(dir, 'package.json'));
    const detail = await bounded(
      t.request.get('/_/functions/leaky').set('Authorization', AUTH),
      'GET',
    );
    assert.ok(!detail.text.includes(SECRET), detail.text);
    assert.match(detail.text, /leads outside the folder/);
    const invoked = await bounded(t.request.get('/leaky'), 'invoke');
    assert.ok(invoked.status >= 400, String(invoked.status));
    assert.ok(!invoked.text.includes(SECRET), invoked.text);
  });

  test('a package importing a FIFO answers with a compile error, and the server goes on', async () => {
    const dir = path.join(t.dir, 'fifo');
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, 'package.json'), PKG);
    await fs.writeFile(
      path.join(dir, 'index.js'),
      `import f from './f.js'; export default () => f;`,
    );
    execFileSync('mkfifo', [path.join(dir, 'f.js')]);
    const invoked = await bounded(t.request.get('/fifo'), 'invoke');
    assert.ok(invoked.status >= 400 && invoked.status < 600, String(invoked.status));
    assert.match(invoked.text, /not a regular file/);
    await t.writeFunction('alive', 'module.exports = () => "alive";');
    assert.equal((await bounded(t.request.get('/alive'), 'invoke')).text, 'alive');
  });

  test('DELETE of a package holding links out removes the links, never what they point at', async () => {
    const dir = path.join(t.dir, 'linked');
    await fs.mkdir(path.join(dir, 'node_modules'), { recursive: true });
    await fs.writeFile(path.join(dir, 'package.json'), PKG);
    await fs.writeFile(path.join(dir, 'index.js'), 'module.exports = () => 1;');
    await fs.symlink(path.join(outside, 'keep'), path.join(dir, 'node_modules', 'keep'));
    await fs.symlink(path.join(outside, 'keep'), path.join(dir, 'keep'));
    await fs.symlink(path.join(outside, 'token'), path.join(dir, 'token'));
    const deleted = await bounded(
      t.request.delete('/_/functions/linked').set('Authorization', AUTH),
      'DELETE',
    );
    assert.equal(deleted.status, 204, deleted.text);
    await assert.rejects(fs.access(dir));
    assert.equal(await fs.readFile(path.join(outside, 'keep', 'file.txt'), 'utf8'), SECRET);
    assert.equal(await fs.readFile(path.join(outside, 'token'), 'utf8'), SECRET);
  });

  test('DELETE of a package folder that is a link out of FUNCTIONS_DIR: 404, nothing removed', async () => {
    const pkg = path.join(outside, 'pkg');
    await fs.mkdir(pkg);
    await fs.writeFile(path.join(pkg, 'package.json'), PKG);
    await fs.writeFile(path.join(pkg, 'index.js'), 'module.exports = () => 1;');
    await fs.symlink(pkg, path.join(t.dir, 'outpkg'));
    const deleted = await bounded(
      t.request.delete('/_/functions/outpkg').set('Authorization', AUTH),
      'DELETE',
    );
    assert.equal(deleted.status, 404, deleted.text);
    await fs.access(path.join(pkg, 'index.js'));
  });

  test("a deploy importing outside files or the server's packages: 422 without their contents", async () => {
    for (const source of [
      `import s from '${path.join(outside, 'token')}'; export default () => s;`,
      `import s from '../../../../../../../../etc/passwd'; export default () => s;`,
      `import k from 'koa'; export default () => k;`,
      `const r = require('base64-js'); module.exports = () => r;`,
    ]) {
      const answer = await bounded(
        t.request.put('/_/functions/deployed').set('Authorization', AUTH).send({ source }),
        'PUT',
      );
      assert.equal(answer.status, 422, answer.text);
      assert.ok(!answer.text.includes(SECRET) && !answer.text.includes('root:x:0'), answer.text);
    }
  });

  test('a deployed bundle whose map names /etc/passwd: stored and run, the map only names it', async () => {
    const answer = await bounded(
      t.request
        .put('/_/functions/uploaded')
        .set('Authorization', AUTH)
        .send({
          source: 'module.exports = () => { throw new Error("boom"); };\n',
          sourceMap: { version: 3, sources: ['/etc/passwd'], names: [], mappings: 'AAAA' },
        }),
      'PUT',
    );
    assert.equal(answer.status, 201, answer.text);
    const invoked = await bounded(t.request.get('/uploaded'), 'invoke');
    assert.equal(invoked.status, 500, invoked.text);
    assert.ok(!invoked.text.includes('root:x:0'), invoked.text);
    const detail = await bounded(
      t.request.get('/_/functions/uploaded').set('Authorization', AUTH),
      'GET',
    );
    assert.ok(!detail.text.includes('root:x:0'), detail.text);
  });
});
