/**
 * function-source.ts: request path → function name (docs/spec.md §2).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidFunctionNameError } from '../../src/errors';
import { candidatesForPath, exactFunctionName } from '../../src/functions/function-source';

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
  void test(`exactFunctionName(${JSON.stringify(row.path)}) → ${row.name.slice(0, 20)}`, () => {
    assert.equal(exactFunctionName(row.path), row.name);
    assert.deepEqual(candidatesForPath(row.path)[0], { name: row.name, subpath: '' });
  });
}

// Sub-paths: every valid leading run of segments is a candidate, longest first; the rest is data.
const subpaths: { path: string; candidates: [string, string][] }[] = [
  { path: '/echo', candidates: [['echo', '']] },
  {
    path: '/echo/users/42',
    candidates: [
      ['echo/users/42', ''],
      ['echo/users', '/42'],
      ['echo', '/users/42'],
    ],
  },
  {
    path: '/echo/users/',
    candidates: [
      ['echo/users', ''],
      ['echo', '/users/'],
    ],
  },
  { path: '/echo/a.b/c', candidates: [['echo', '/a.b/c']] },
  { path: '/echo/../etc/passwd', candidates: [['echo', '/../etc/passwd']] },
  { path: '/echo/%2e%2e/x', candidates: [['echo', '/%2e%2e/x']] },
  { path: '/a//b', candidates: [['a', '//b']] },
  { path: '/a/b.js', candidates: [['a', '/b.js']] },
  { path: '/a/x y', candidates: [['a', '/x y']] },
  {
    path: `/${Array(10).fill('s').join('/')}`,
    candidates: Array.from({ length: 8 }, (_, i) => {
      const rest = 10 - (8 - i);
      return [
        Array(8 - i)
          .fill('s')
          .join('/'),
        `/${Array(rest).fill('s').join('/')}`,
      ];
    }),
  },
];
for (const row of subpaths) {
  void test(`candidatesForPath(${JSON.stringify(row.path.slice(0, 40))})`, () => {
    const expected = row.candidates.map(([name, subpath]) => ({ name, subpath }));
    assert.deepEqual(candidatesForPath(row.path), expected);
  });
  if (row.candidates[0][1] !== '') {
    void test(`exactFunctionName(${JSON.stringify(row.path.slice(0, 40))}) refuses a sub-path`, () => {
      assert.throws(() => exactFunctionName(row.path), InvalidFunctionNameError);
    });
  }
}

// The first segment is not a name: refused before any look-up.
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
  '//',
  `/${'x'.repeat(65)}`,
  '/_/health',
  '/_x',
  '/-x',
  '/a b',
  '/héllo',
  '/a?b',
  'hello',
];
for (const urlPath of invalid) {
  void test(`candidatesForPath(${JSON.stringify(urlPath.slice(0, 40))}) → InvalidFunctionNameError`, () => {
    assert.throws(
      () => candidatesForPath(urlPath),
      (err: unknown) => {
        assert.ok(err instanceof InvalidFunctionNameError, String(err));
        assert.equal(err.statusCode, 400);
        return true;
      },
    );
  });
}
