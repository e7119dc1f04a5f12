/**
 * The folder index: which names a watched FUNCTIONS_DIR may hold, and the change events it passes
 * on, over a real temporary folder.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FolderIndex, nameOfFile } from '../../src/functions/folder-index';
import { createLogger } from '../../src/observe/logger';
import { eventually } from '../support/wait';

void test('nameOfFile: the name a file serves, or undefined when it is not a function file', () => {
  const cases: [string, string | undefined][] = [
    ['hello.js', 'hello'],
    ['hello.ts', 'hello'],
    ['a/b.js', 'a/b'],
    ['notes.txt', undefined],
    ['.hello.js.0c4f.tmp', undefined],
    ['types.d.ts', undefined],
    ['.hidden.js', undefined],
  ];
  for (const [file, name] of cases) assert.equal(nameOfFile(file), name, file);
});

void describe('FolderIndex', () => {
  let dir: string;
  let index: FolderIndex;
  const changes: [string | undefined, boolean][] = [];
  const saw = (name: string, announce: boolean) =>
    changes.some(([n, a]) => n === name && a === announce);

  before(async () => {
    dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-index-')));
    await fs.writeFile(path.join(dir, 'hello.js'), '() => 1;\n');
    await fs.mkdir(path.join(dir, 'a'));
    await fs.writeFile(path.join(dir, 'a', 'b.ts'), '() => 2;\n');
    await fs.writeFile(path.join(dir, 'notes.txt'), 'not a function');
    index = new FolderIndex(createLogger({ level: 'silent' }), (name, announce) =>
      changes.push([name, announce]),
    );
    index.start(dir);
  });
  after(async () => {
    index.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  void test('holds the function files found at start, in every folder, and nothing else', () => {
    assert.equal(index.mayHold('hello'), true);
    assert.equal(index.mayHold('a/b'), true);
    assert.equal(index.mayHold('notes'), false);
    assert.equal(index.mayHold('missing'), false);
    assert.equal(index.mayHold('a/missing'), false);
    assert.equal(index.mayHold('nofolder/x'), false);
  });

  void test('drop and add: a look-up that found no file, a write through the store', () => {
    index.drop('hello');
    assert.equal(index.mayHold('hello'), false);
    index.add('hello');
    assert.equal(index.mayHold('hello'), true);
  });

  void test('a new file is indexed and announced by its name', async () => {
    await fs.writeFile(path.join(dir, 'fresh.js'), '() => 3;\n');
    await eventually(async () => index.mayHold('fresh') && saw('fresh', true));
  });

  void test('a temp file is passed on but not announced, and not indexed', async () => {
    await fs.writeFile(path.join(dir, '.fresh.js.1234.tmp'), 'x');
    await eventually(async () => saw('.fresh.js.1234.tmp', false));
    assert.equal(index.mayHold('.fresh.js.1234'), false);
  });

  void test('a folder created after start is announced, watched and indexed', async () => {
    await fs.mkdir(path.join(dir, 'c'));
    await eventually(async () => saw('c', true));
    // The new folder is watched once its event is handled (a stat later): written until then.
    await eventually(async () => {
      await fs.writeFile(path.join(dir, 'c', 'd.js'), '() => 4;\n');
      return index.mayHold('c/d') && saw('c/d', true);
    });
  });
});
