/**
 * The function store: get/list/invalidate/caching, change detection and misses, over a real
 * temporary folder.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FunctionCompileError, FunctionNotFoundError } from '../../src/errors';
import { hashSource } from '../../src/functions/function-source';
import { FunctionStore } from '../../src/functions/function-store';
import { createLogger } from '../../src/observe/logger';
import { eventually } from '../support/wait';

void describe('FunctionStore', () => {
  let dir: string;
  let outside: string;
  let store: FunctionStore;
  const HELLO = "(event) => 'hello';\n";

  const write = async (name: string, source: string) => {
    const file = path.join(dir, ...name.split('/')) + '.js';
    await fs.mkdir(path.dirname(file), { recursive: true });
    const temp = `${file}.tmp`;
    await fs.writeFile(temp, source);
    await fs.rename(temp, file);
  };

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-store-'));
    outside = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-outside-'));
    await write('hello', HELLO);
    await write('a/b', '() => 1;\n');
    await write('broken', '() => {\n  return 1 +;\n};\n');
    await fs.writeFile(path.join(dir, 'notes.txt'), 'not a function');
    await fs.writeFile(path.join(outside, 'secret.js'), "() => 'SECRET';\n");
    await fs.symlink(path.join(outside, 'secret.js'), path.join(dir, 'escape.js'));
    await fs.symlink(outside, path.join(dir, 'escapedir'));
    store = new FunctionStore({ dir, logger: createLogger({ level: 'silent' }) });
    await store.start();
  });
  after(async () => {
    store.close();
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rm(outside, { recursive: true, force: true });
  });

  void test('get reads a function: name, source, content-hash version, bytes, modified', async () => {
    const fn = await store.get('hello');
    const stat = await fs.stat(path.join(dir, 'hello.js'));
    assert.equal(fn.name, 'hello');
    assert.equal(fn.source, HELLO);
    assert.equal(fn.version, hashSource(HELLO));
    assert.equal(fn.bytes, Buffer.byteLength(HELLO));
    // Within a millisecond: mtimeMs has sub-millisecond digits that Date rounds or truncates.
    assert.ok(Math.abs(fn.modified.getTime() - stat.mtimeMs) < 1, String(fn.modified));
    assert.equal(fn.compileError, undefined);
  });

  void test('the version is a content hash: same source, same version; other source, other', () => {
    assert.equal(hashSource('a'), hashSource('a'));
    assert.notEqual(hashSource('a'), hashSource('b'));
  });

  void test('get of a nested name reads a/b.js', async () => {
    const fn = await store.get('a/b');
    assert.equal(fn.source, '() => 1;\n');
  });

  void test('a second get is served from the cache (the same object)', async () => {
    const first = await store.get('hello');
    const second = await store.get('hello');
    assert.equal(second, first);
  });

  void test('concurrent gets share one read', async () => {
    store.invalidate('a/b');
    const [x, y] = await Promise.all([store.get('a/b'), store.get('a/b')]);
    assert.equal(x, y);
  });

  void test('invalidate makes the next get read the file again', async () => {
    const first = await store.get('hello');
    store.invalidate('hello');
    const second = await store.get('hello');
    assert.notEqual(second, first);
    assert.equal(second.version, first.version);
  });

  void test('a changed file is picked up within a second', async () => {
    await write('changing', "() => 'v1';\n");
    // A new name is known from its change event (the index), which lands a moment after the write.
    await eventually(
      () =>
        store.get('changing').then(
          () => true,
          () => false,
        ),
      1000,
    );
    const v1 = await store.get('changing');
    assert.equal(v1.source, "() => 'v1';\n");
    await write('changing', "() => 'v2';\n");
    await eventually(async () => (await store.get('changing')).source === "() => 'v2';\n", 1000);
    assert.notEqual((await store.get('changing')).version, v1.version);
  });

  void test('a deleted file becomes FunctionNotFoundError within a second', async () => {
    await write('doomed', '() => 1;\n');
    await eventually(
      () =>
        store.get('doomed').then(
          () => true,
          () => false,
        ),
      1000,
    );
    await fs.rm(path.join(dir, 'doomed.js'));
    await eventually(
      () =>
        store.get('doomed').then(
          () => false,
          (err: unknown) => err instanceof FunctionNotFoundError,
        ),
      1000,
    );
  });

  void test('a missing function → FunctionNotFoundError', async () => {
    await assert.rejects(store.get('missing'), FunctionNotFoundError);
    await assert.rejects(store.get('a/missing'), FunctionNotFoundError);
    await assert.rejects(store.get('hello/deeper'), FunctionNotFoundError);
  });

  void test('a folder is not a function', async () => {
    await assert.rejects(store.get('a'), FunctionNotFoundError);
  });

  void test('a symlink leading outside the folder → FunctionNotFoundError, never the file', async () => {
    await assert.rejects(store.get('escape'), FunctionNotFoundError);
    await assert.rejects(store.get('escapedir/secret'), FunctionNotFoundError);
  });

  void test('a file that does not compile is stored with its compile error and line', async () => {
    const fn = await store.get('broken');
    assert.ok(fn.compileError instanceof FunctionCompileError);
    assert.equal(fn.compileError.line, 2);
  });

  void test('list: every function, sorted, with name, version, bytes, modified, status', async () => {
    const list = await store.list();
    const names = list.map((info) => info.name);
    assert.deepEqual(names, [...names].sort());
    for (const expected of ['a/b', 'broken', 'hello'])
      assert.ok(names.includes(expected), expected);
    assert.equal(names.includes('notes'), false);
    assert.equal(names.includes('escape'), false, 'a symlink leading outside is not listed');
    assert.equal(
      names.some((name) => name.includes('secret')),
      false,
      'the folder a symlink leads to is not listed',
    );
    const hello = list.find((info) => info.name === 'hello');
    const { modified, ...rest } = hello ?? { modified: '' };
    assert.deepEqual(rest, {
      name: 'hello',
      file: 'hello.js',
      version: hashSource(HELLO),
      bytes: Buffer.byteLength(HELLO),
      status: 'ok',
      config: {},
      layer: 'file',
    });
    const mtimeMs = (await fs.stat(path.join(dir, 'hello.js'))).mtimeMs;
    assert.match(modified, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(modified) - mtimeMs) < 1, modified);
    const broken = list.find((info) => info.name === 'broken');
    assert.equal(broken?.status, 'compile_error');
    assert.match(String(broken?.error), /SyntaxError/);
  });
});

void describe('FunctionStore change detection', () => {
  let dir: string;
  let store: FunctionStore;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-watch-'));
    await fs.mkdir(path.join(dir, 'a'));
    await fs.writeFile(path.join(dir, 'a', 'f.js'), '() => 0');
    store = new FunctionStore({ dir, logger: createLogger({ level: 'silent' }) });
    await store.start();
  });
  after(async () => {
    store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  // Node 20's recursive fs.watch on Linux watches the file, and goes quiet once a new version is
  // renamed over it; the store watches folders, so every rename is seen well within the second
  // its stat fallback would take.
  void test('every new version renamed over a file is seen at once, again and again', async () => {
    for (let i = 1; i <= 4; i++) {
      await store.get('a/f');
      await fs.writeFile(path.join(dir, 'a', `.next${i}`), `() => ${i}`);
      await fs.rename(path.join(dir, 'a', `.next${i}`), path.join(dir, 'a', 'f.js'));
      const started = Date.now();
      await eventually(async () => (await store.get('a/f')).source === `() => ${i}`, 3000);
      assert.ok(Date.now() - started < 500, `version ${i} seen after ${Date.now() - started} ms`);
    }
  });

  void test('a folder created after start is watched too', async () => {
    await fs.mkdir(path.join(dir, 'late'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await fs.writeFile(path.join(dir, 'late', 'g.js'), '() => 1');
    assert.equal((await store.get('late/g')).source, '() => 1');
    await fs.writeFile(path.join(dir, 'late', '.g2'), '() => 2');
    await fs.rename(path.join(dir, 'late', '.g2'), path.join(dir, 'late', 'g.js'));
    const started = Date.now();
    await eventually(async () => (await store.get('late/g')).source === '() => 2', 3000);
    assert.ok(Date.now() - started < 500, `seen after ${Date.now() - started} ms`);
  });
});

void describe('FunctionStore misses', () => {
  let dir: string;
  let store: FunctionStore;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-miss-'));
    store = new FunctionStore({ dir, logger: createLogger({ level: 'silent' }) });
    await store.start();
  });
  after(async () => {
    store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  void test('a missing function is remembered, and a new file is still served at once', async () => {
    await assert.rejects(store.get('ghost'), FunctionNotFoundError);
    // The miss is remembered for a second, but the folder's change event forgets it.
    await fs.writeFile(path.join(dir, 'ghost.js'), '() => 1');
    const started = Date.now();
    await eventually(async () => (await store.get('ghost').catch(() => undefined)) !== undefined);
    assert.ok(Date.now() - started < 500, `served after ${Date.now() - started} ms`);
  });

  void test('a flood of missing names keeps answering not found', async () => {
    for (let i = 0; i < 3000; i++) {
      await assert.rejects(store.get(`missing-${i}`), FunctionNotFoundError);
    }
    await assert.rejects(store.get('missing-0'), FunctionNotFoundError);
  });
});
