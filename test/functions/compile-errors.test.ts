/**
 * compile-errors.ts: checkSyntax, V8's verdict on a .js script. (What compileFunction's errors
 * say, esbuild's included, is tested through compileFunction in transform.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FunctionCompileError } from '../../src/errors';
import { checkSyntax } from '../../src/functions/compile-errors';

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
