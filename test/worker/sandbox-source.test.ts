/**
 * The sandbox's own code as the worker reads it (src/worker/sandbox/, copied beside the compiled
 * worker by `npm run build`): every file of the globals script is joined into it, once, and the
 * joined script compiles as one strict function.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import vm from 'node:vm';
import { ENVELOPE_SOURCE } from '../../src/worker/envelope';
import { GLOBALS_SOURCE } from '../../src/worker/globals';

const SANDBOX_DIR = path.join(__dirname, '..', '..', 'src', 'worker', 'sandbox');

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return jsFiles(file);
    return entry.name.endsWith('.js') ? [file] : [];
  });
}

test('every file of sandbox/globals/ is in the globals script, once', () => {
  const files = jsFiles(path.join(SANDBOX_DIR, 'globals'));
  assert.ok(files.length > 5, files.join());
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    assert.equal(GLOBALS_SOURCE.split(text).length, 2, path.relative(SANDBOX_DIR, file));
  }
});

test('the globals script and the envelope compile, each to a function', () => {
  for (const [name, source] of [
    ['globals', GLOBALS_SOURCE],
    ['envelope', ENVELOPE_SOURCE],
    ['request', readFileSync(path.join(SANDBOX_DIR, 'request.js'), 'utf8')],
  ]) {
    assert.equal(typeof vm.runInNewContext(source), 'function', name);
  }
});
