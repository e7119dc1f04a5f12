/**
 * function-source.ts: request path → function name (SPEC §2) and the syntax check.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FunctionCompileError, InvalidFunctionNameError } from '../../src/errors';
import { checkSyntax, functionNameFromPath } from '../../src/functions/function-source';

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

void test('checkSyntax: valid sources (seed form, CommonJS) → undefined', () => {
  assert.equal(checkSyntax('(event, context) => {\n  return { ok: 1 };\n};\n', 'a'), undefined);
  assert.equal(checkSyntax('module.exports = async (event) => event;\n', 'b'), undefined);
});

void test('checkSyntax: a syntax error → FunctionCompileError with its line and column', () => {
  const err = checkSyntax('(event) => {\n  const x = 1;\n  return x +;\n};\n', 'broken');
  assert.ok(err instanceof FunctionCompileError);
  assert.equal(err.code, 'FUNCTION_COMPILE_ERROR');
  assert.equal(err.line, 3);
  // `  return x +;` — the error is at the `;`, column 13.
  assert.equal(err.column, 13);
  assert.match(err.message, /SyntaxError/);
  assert.match(err.message, /broken\.js/);
  assert.match(err.message, /line 3/);
});

void test('checkSyntax: an error on the first line → line 1', () => {
  const err = checkSyntax('(event => {', 'first');
  assert.ok(err instanceof FunctionCompileError);
  assert.equal(err.line, 1);
});
