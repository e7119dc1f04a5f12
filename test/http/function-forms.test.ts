/**
 * The four forms of a function file (docs/spec.md §2) through the real server: ES modules and TypeScript
 * compiled once per version, their config read from `export const config`, imports refused, and
 * error positions in the user's file; TypeScript deployed through the admin API.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const TOKEN = 'a-test-admin-token-0123456789';
const AUTH = { Authorization: `Bearer ${TOKEN}` };

const TS_THROWS = `interface Event { query: Record<string, string> }
type Answer = { ok: boolean };

export default (event: Event): Answer => {
  const n: number = Number(event.query.n ?? '0');
  if (n > 1) throw new TypeError('too big: ' + n);
  return { ok: true };
};
`;

void describe('function forms', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      env: { ADMIN_TOKEN: TOKEN },
      functions: {
        seed: `(event) => ({ form: 'seed', method: event.method });\n`,
        cjs: `module.exports = (event) => ({ form: 'cjs' });\n`,
        handler: `exports.handler = async () => ({ form: 'handler' });\n`,
        'esm-default': `export default async (event) => ({ form: 'esm-default', sub: event.subpath });\n`,
        'esm-handler': `export const handler = () => ({ form: 'esm-handler' });\n`,
        'esm-config': `export const config = { methods: ['POST'], timeoutMs: 300 };\nexport default () => 'esm-config';\n`,
        'seed-ts.ts': `(event: { method: string }): { form: string } => ({ form: 'seed-ts' });\n`,
        'seed-types.ts': `export type Answer = { form: string };\n(event: unknown): Answer => ({ form: 'seed-types' });\n`,
        'typed.ts': TS_THROWS,
        'ts-config.ts': `export const config = { methods: ['PUT'] as string[] };\nexport const handler = async (): Promise<string> => 'ts-config';\n`,
        'imports.ts': `// a comment\n\nimport crypto from 'node:crypto';\nexport default () => crypto.randomUUID();\n`,
        'requires.js': `export default () => require('fs');\n`,
        'esm-broken.js': `export default () => {\n  const a = 1;\n\n\n  return a +;\n};\n`,
        'ts-broken.ts': `const x: number = 1;\nexport default () => {\n  return x +* 2;\n};\n`,
        both: `module.exports = () => 'js';\n`,
        'both.ts': `export default () => 'ts';\n`,
      },
    });
  });
  after(() => t.close());

  const forms: [string, unknown][] = [
    ['/seed', { form: 'seed', method: 'GET' }],
    ['/cjs', { form: 'cjs' }],
    ['/handler', { form: 'handler' }],
    ['/esm-default/x/y', { form: 'esm-default', sub: '/x/y' }],
    ['/esm-handler', { form: 'esm-handler' }],
    ['/seed-ts', { form: 'seed-ts' }],
    ['/seed-types', { form: 'seed-types' }],
    ['/typed', { ok: true }],
  ];
  for (const [route, expected] of forms) {
    void test(`${route} runs`, async () => {
      const res = await t.request.get(route);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, expected);
    });
  }

  void test('export const config applies (JS and TS)', async () => {
    assert.equal((await t.request.get('/esm-config')).status, 405);
    assert.equal((await t.request.post('/esm-config')).text, 'esm-config');
    assert.equal((await t.request.post('/ts-config')).status, 405);
    assert.equal((await t.request.put('/ts-config')).text, 'ts-config');
    const info = await t.request.get('/_/functions/ts-config').set(AUTH);
    assert.deepEqual(info.body.config, { methods: ['PUT'] });
    assert.equal(info.body.file, 'ts-config.ts');
  });

  void test('an import is a compile error that says so, with its line', async () => {
    const res = await t.request.get('/imports');
    assert.equal(res.status, 500);
    assert.equal(res.body.error.code, 'FUNCTION_COMPILE_ERROR');
    assert.match(res.body.error.message, /node:crypto is not available in functions/);
    assert.equal(res.body.error.line, 3);
    const req = await t.request.get('/requires');
    assert.equal(req.status, 500);
    assert.match(
      req.body.error.message,
      /node:fs is not available in functions: `require\('fs'\)`/,
    );
  });

  void test('syntax errors in ESM and TS files point at the line in the file', async () => {
    const esm = await t.request.get('/esm-broken');
    assert.equal(esm.status, 500);
    assert.equal(esm.body.error.line, 5);
    const ts = await t.request.get('/ts-broken');
    assert.equal(ts.status, 500);
    assert.equal(ts.body.error.line, 3);
  });

  void test('a runtime error in TypeScript: its stack in the log points into the .ts file', async () => {
    const res = await t.request.get('/typed?n=5').set('X-Request-Id', 'typed-throws');
    assert.equal(res.status, 500);
    assert.equal(res.body.error.type, 'TypeError');
    assert.equal(res.body.error.message, 'too big: 5');
    const line = t.logs.find((l) => l.reqId === 'typed-throws' && l.msg === 'request');
    const stack = String((line?.err as { stack?: string } | undefined)?.stack);
    // `if (n > 1) throw new TypeError(...)` is line 6 of typed.ts; V8 places
    // a `throw new E()` frame at the `new`, column 20.
    assert.match(stack, /typed\.ts:6:20/, stack);
  });

  void test('name.js beside name.ts is a compile error naming both', async () => {
    const res = await t.request.get('/both');
    assert.equal(res.status, 500);
    assert.match(res.body.error.message, /both both\.js and both\.ts exist/);
  });

  void test('TypeScript deployed through the API: content type or JSON language', async () => {
    const byType = await t.request
      .put('/_/functions/deployed-ts')
      .set(AUTH)
      .set('Content-Type', 'application/typescript')
      .send(`export default (e: { method: string }): string => 'ts via type ' + e.method;\n`);
    assert.equal(byType.status, 201, byType.text);
    assert.equal(byType.body.file, 'deployed-ts.ts');
    assert.equal((await t.request.get('/deployed-ts')).text, 'ts via type GET');
    await fs.access(path.join(t.dir, 'deployed-ts.ts'));

    // Replacing it with JavaScript removes the .ts file: one name, one file.
    const byJson = await t.request
      .put('/_/functions/deployed-ts')
      .set(AUTH)
      .send({ source: `module.exports = () => 'now js';\n`, language: 'js' });
    assert.equal(byJson.status, 200, byJson.text);
    assert.equal((await t.request.get('/deployed-ts')).text, 'now js');
    await assert.rejects(fs.access(path.join(t.dir, 'deployed-ts.ts')));

    const broken = await t.request
      .put('/_/functions/deployed-ts')
      .set(AUTH)
      .send({ source: `const a: number = 1;\nexport default () => a +;\n`, language: 'ts' });
    assert.equal(broken.status, 422);
    assert.equal(broken.body.error.line, 2);
    const bad = await t.request
      .put('/_/functions/x')
      .set(AUTH)
      .send({ source: 'x', language: 'py' });
    assert.equal(bad.status, 400);
  });
});
