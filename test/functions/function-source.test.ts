/**
 * function-source.ts: request path → function name (SPEC §2).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidFunctionNameError } from '../../src/errors';
import { functionNameFromPath } from '../../src/functions/function-source';

const valid: { path: string; name: string }[] = [
  { path: '/', name: 'index' },
  { path: '/hello', name: 'hello' },
  { path: '/hello/', name: 'hello' },
  { path: '/a/b', name: 'a/b' },
  { path: '/a/b/', name: 'a/b' },
  { path: '/Hello_World-2', name: 'Hello_World-2' },
  { path: '/0', name: '0' },
  { path: `/${'x'.repeat(64)}`, name: 'x'.repeat(64) },
  { path: `/${Array(8).fill('s').join('/')}`, name: Array(8).fill('s').join('/') },
];
for (const row of valid) {
  void test(`functionNameFromPath(${JSON.stringify(row.path)}) → ${row.name.slice(0, 20)}`, () => {
    assert.equal(functionNameFromPath(row.path), row.name);
  });
}

const invalid: string[] = [
  '/../package',
  '/..',
  '/.',
  '/%2e%2e/x',
  '/%2E%2E/x',
  '/a%2fb',
  '/a\\b',
  '/.env',
  '/a.js',
  '/%00',
  '/a\u0000b',
  '//x',
  '/a//b',
  '//',
  `/${'x'.repeat(65)}`,
  `/${Array(9).fill('s').join('/')}`,
  '/_/health',
  '/_x',
  '/-x',
  '/a b',
  '/héllo',
  '/a?b',
  'hello',
  '/a/../b',
];
for (const urlPath of invalid) {
  void test(`functionNameFromPath(${JSON.stringify(urlPath.slice(0, 40))}) → InvalidFunctionNameError`, () => {
    assert.throws(
      () => functionNameFromPath(urlPath),
      (err: unknown) => {
        assert.ok(err instanceof InvalidFunctionNameError, String(err));
        assert.equal(err.statusCode, 400);
        return true;
      },
    );
  });
}
