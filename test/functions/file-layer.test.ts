/**
 * The file layer: finding, reading, writing and listing function files in a real temporary
 * FUNCTIONS_DIR.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  FunctionCompileError,
  FunctionNotFoundError,
  InvalidFunctionNameError,
} from '../../src/errors';
import { FileLayer, MAX_SOURCE_BYTES } from '../../src/functions/file-layer';
import { FolderIndex } from '../../src/functions/folder-index';
import { createLogger } from '../../src/observe/logger';
import { eventually } from '../support/wait';

void describe('FileLayer', () => {
  let dir: string;
  let outside: string;
  let folders: FolderIndex;
  let files: FileLayer;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-files-'));
    outside = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-outside-'));
    await fs.writeFile(path.join(dir, 'hello.js'), '() => 1;\n');
    await fs.writeFile(path.join(dir, 'twice.js'), '() => 1;\n');
    await fs.writeFile(path.join(dir, 'twice.ts'), '() => 2;\n');
    await fs.mkdir(path.join(dir, 'a'));
    await fs.writeFile(path.join(dir, 'a', 'b.ts'), '() => 3;\n');
    await fs.writeFile(path.join(dir, 'notes.txt'), 'not a function');
    await fs.writeFile(path.join(outside, 'secret.js'), "() => 'SECRET';\n");
    await fs.symlink(path.join(outside, 'secret.js'), path.join(dir, 'escape.js'));
    const logger = createLogger({ level: 'silent' });
    folders = new FolderIndex(logger, () => undefined);
    files = new FileLayer(dir, logger, folders);
    await files.start();
  });
  after(async () => {
    folders.close();
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rm(outside, { recursive: true, force: true });
  });

  void test('start refuses a folder that does not exist', async () => {
    const missing = new FileLayer(
      path.join(dir, 'missing'),
      createLogger({ level: 'silent' }),
      folders,
    );
    await assert.rejects(missing.start());
  });

  void test('find: the file of a name, its language, and whether both languages exist', async () => {
    const root = await fs.realpath(dir);
    assert.deepEqual(await files.find('hello'), {
      realPath: path.join(root, 'hello.js'),
      language: 'js',
      package: false,
      conflict: undefined,
    });
    assert.deepEqual(await files.find('a/b'), {
      realPath: path.join(root, 'a', 'b.ts'),
      language: 'ts',
      package: false,
      conflict: undefined,
    });
    assert.equal(
      (await files.find('twice'))?.conflict,
      'both twice.js and twice.ts exist: remove one of them',
    );
    assert.equal(await files.find('missing'), undefined);
  });

  void test('find refuses a symlink that leads outside the folder', async () => {
    await assert.rejects(files.find('escape'), FunctionNotFoundError);
  });

  void test('read: the whole file, named relative to the folder, with its stat', async () => {
    const found = await files.find('a/b');
    const read = await files.read('a/b', 'ts', found!.realPath);
    assert.equal(read.file, 'a/b.ts');
    assert.equal(read.source, '() => 3;\n');
    assert.equal(read.stat.size, Buffer.byteLength('() => 3;\n'));
    assert.equal(read.tooLarge, undefined);
  });

  void test('read of a file over MAX_SOURCE_BYTES: not read, a compile error instead', async () => {
    await fs.writeFile(path.join(dir, 'big.js'), Buffer.alloc(MAX_SOURCE_BYTES + 1, 0x20));
    const found = await files.find('big');
    const read = await files.read('big', 'js', found!.realPath);
    assert.equal(read.source, '');
    assert.ok(read.tooLarge instanceof FunctionCompileError);
    assert.match(read.tooLarge.message, /big\.js is \d+ bytes/);
    await fs.rm(path.join(dir, 'big.js'));
  });

  void test('stat and read of a file gone since found → FunctionNotFoundError', async () => {
    await fs.writeFile(path.join(dir, 'gone.js'), '() => 0;\n');
    const found = await files.find('gone');
    await fs.rm(path.join(dir, 'gone.js'));
    await assert.rejects(files.stat('gone', found!.realPath), FunctionNotFoundError);
    await assert.rejects(files.read('gone', 'js', found!.realPath), FunctionNotFoundError);
  });

  void test('write: created once, replaced after; no temp file left', async () => {
    assert.deepEqual(await files.write('made', '() => 1;\n', 'js'), { created: true });
    assert.deepEqual(await files.write('made', '() => 2;\n', 'js'), { created: false });
    assert.equal(await fs.readFile(path.join(dir, 'made.js'), 'utf8'), '() => 2;\n');
    assert.deepEqual(
      (await fs.readdir(dir)).filter((f) => f.endsWith('.tmp')),
      [],
    );
  });

  void test('write in the other language replaces the file (not created)', async () => {
    assert.deepEqual(await files.write('made', 'export default () => 3;\n', 'ts'), {
      created: false,
    });
    assert.equal(await files.has('made'), true);
    await assert.rejects(fs.access(path.join(dir, 'made.js')));
    assert.equal((await files.find('made'))?.language, 'ts');
  });

  void test('write of a nested name creates its folders and watches them at once', async () => {
    assert.deepEqual(await files.write('x/y/z', '() => 1;\n', 'js'), { created: true });
    assert.equal(await fs.readFile(path.join(dir, 'x', 'y', 'z.js'), 'utf8'), '() => 1;\n');
    // Watched before the file was written: its event reaches the index.
    await eventually(async () => folders.mayHold('x/y/z'));
  });

  void test('write refuses a folder of the name that is a file or a symlink', async () => {
    await assert.rejects(files.write('notes.txt/f', '() => 1;\n', 'js'), InvalidFunctionNameError);
    await fs.symlink(outside, path.join(dir, 'link'));
    await assert.rejects(files.write('link/f', '() => 1;\n', 'js'), InvalidFunctionNameError);
    await assert.rejects(fs.access(path.join(outside, 'f.js')));
  });

  void test('has, remove', async () => {
    assert.equal(await files.has('hello'), true);
    assert.equal(await files.has('missing'), false);
    await files.write('short', '() => 1;\n', 'js');
    await files.remove('short.js');
    assert.equal(await files.has('short'), false);
  });

  void test('names: every function file in the tree, and nothing else', async () => {
    const names = [...(await files.names())].sort();
    assert.deepEqual(names, ['a/b', 'escape', 'hello', 'made', 'twice', 'x/y/z']);
  });
});
