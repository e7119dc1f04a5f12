/**
 * The admin API (docs/http-api.md) against the real server: deploys through PUT land on disk
 * and are served by the next request, compile errors keep the old version, names are checked
 * before any file is touched, and the token guards what it should. One server per describe,
 * started one after the other.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Response } from 'supertest';
import { closeAndReap, startServer } from '../support/server';
import type { TestServer } from '../support/server';

const TOKEN = 'admin-token-for-tests-0123456789';
const AUTH = `Bearer ${TOKEN}`;

const HELLO = "(event, context) => {\n  return { message: 'it works!', status: 'ok' };\n};\n";

/** The version the server reports for a source: the first 16 hex digits of its SHA-256. */
const versionOf = (source: string) =>
  createHash('sha256').update(source).digest('hex').slice(0, 16);

/** Every file under `dir`, relative, sorted (dot files and temp files included). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath ?? entry.path, entry.name)))
    .sort();
}

const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

function assertError(res: Response, status: number, code: string): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${res.text}`);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.equal(res.body.error.code, code, res.text);
  assert.equal(typeof res.body.error.message, 'string');
  assert.equal(res.body.requestId, res.headers['x-request-id']);
}

/** One admin request; a PUT carries a valid deploy body. */
function call(
  t: TestServer,
  method: 'get' | 'put' | 'delete',
  route: string,
  authorization?: string,
): Promise<Response> {
  const base = t.request[method](route);
  const req = authorization === undefined ? base : base.set('Authorization', authorization);
  return method === 'put' ? req.send({ source: "() => 'pwned'" }) : req;
}

describe('with ADMIN_TOKEN set', () => {
  let t: TestServer;
  const file = (name: string) => path.join(t.dir, ...name.split('/')) + '.js';
  const put = (name: string, source: string, type = 'application/javascript') =>
    t.request
      .put(`/_/functions/${name}`)
      .set('Authorization', AUTH)
      .set('Content-Type', type)
      .send(source);

  before(async () => {
    t = await startServer({ functions: { hello: HELLO }, env: { ADMIN_TOKEN: TOKEN } });
  });
  after(async () => {
    assert.deepEqual(await closeAndReap(t), [], 'worker processes left running after close()');
  });

  describe('deploy through PUT, then invoke', () => {
    const cases = [
      { type: 'application/javascript', name: 'dep-js' },
      { type: 'text/plain', name: 'dep-text' },
      { type: 'application/json', name: 'dep-json' },
    ];
    for (const { type, name } of cases) {
      void test(`${type}: 201 for a new function, 200 on replace, served at once`, async () => {
        const v1 = `(event) => ({ deployedAs: ${JSON.stringify(type)}, v: 1 });\n`;
        const v2 = `module.exports = () => 'second version via ${type}';\n`;
        const send = (source: string) =>
          type === 'application/json'
            ? t.request.put(`/_/functions/${name}`).set('Authorization', AUTH).send({ source })
            : put(name, source, type);

        const created = await send(v1);
        assert.equal(created.status, 201, created.text);
        assert.deepEqual(created.body, {
          name,
          file: `${name}.js`,
          version: versionOf(v1),
          bytes: Buffer.byteLength(v1),
          config: {},
        });
        const first = await t.request.get(`/${name}`);
        assert.equal(first.status, 200);
        assert.deepEqual(first.body, { deployedAs: type, v: 1 });
        assert.equal(first.headers['x-function-version'], created.body.version);
        assert.equal(await fs.readFile(file(name), 'utf8'), v1);

        const replaced = await send(v2);
        assert.equal(replaced.status, 200, replaced.text);
        assert.deepEqual(replaced.body, {
          name,
          file: `${name}.js`,
          version: versionOf(v2),
          bytes: Buffer.byteLength(v2),
          config: {},
        });
        const second = await t.request.get(`/${name}`);
        assert.equal(second.status, 200);
        assert.equal(second.text, `second version via ${type}`);
        assert.equal(second.headers['x-function-version'], replaced.body.version);
        assert.equal(await fs.readFile(file(name), 'utf8'), v2);
      });
    }

    void test('a JSON body without a string source is 400 INVALID_BODY, nothing written', async () => {
      const res = await t.request
        .put('/_/functions/no-source')
        .set('Authorization', AUTH)
        .send({ code: '() => 1' });
      assertError(res, 400, 'INVALID_BODY');
      assert.equal(await exists(file('no-source')), false);
    });

    void test('a nested name a/b is written to a/b.js and served at /a/b', async () => {
      const source = "() => 'nested deploy';\n";
      const res = await put('a/b', source);
      assert.equal(res.status, 201, res.text);
      assert.equal(res.body.name, 'a/b');
      assert.equal(await fs.readFile(path.join(t.dir, 'a', 'b.js'), 'utf8'), source);
      const served = await t.request.get('/a/b');
      assert.equal(served.status, 200);
      assert.equal(served.text, 'nested deploy');
      assert.equal(served.headers['x-function-version'], res.body.version);
      const one = await t.request.get('/_/functions/a/b').set('Authorization', AUTH);
      assert.equal(one.status, 200);
      assert.equal(one.body.source, source);
    });

    void test('the source on disk is exactly the bytes sent, unicode included', async () => {
      const source = "// ünïcödé ✓ 🚀\r\n() => 'snowman ☃';\n\n";
      const res = await put('exact', source);
      assert.equal(res.status, 201, res.text);
      assert.equal(res.body.bytes, Buffer.byteLength(source));
      assert.deepEqual(await fs.readFile(file('exact')), Buffer.from(source));
      assert.equal((await t.request.get('/exact')).text, 'snowman ☃');
    });

    void test('no temp file is left in the folder after deploys', async () => {
      await put('tidy', "() => 'tidy';\n");
      await put('tidy', "() => 'tidy 2';\n");
      await put('tidy/inner', "() => 'inner';\n");
      const files = await filesUnder(t.dir);
      const strays = files.filter(
        (f) => !f.endsWith('.js') || path.basename(f).startsWith('.') || /\.tmp/.test(f),
      );
      assert.deepEqual(strays, []);
      assert.ok(files.includes('tidy.js') && files.includes(path.join('tidy', 'inner.js')));
    });
  });

  test('GET /_/functions/<name> returns the source and its metadata', async () => {
    const source = "module.exports = () => 'meta';\n";
    await put('meta', source).expect(201);
    const res = await t.request.get('/_/functions/meta').set('Authorization', AUTH);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.name, 'meta');
    assert.equal(res.body.source, source);
    assert.equal(res.body.version, versionOf(source));
    assert.equal(res.body.bytes, Buffer.byteLength(source));
    assert.equal(res.body.status, 'ok');
    const stat = await fs.stat(file('meta'));
    assert.equal(Date.parse(res.body.modified), Math.floor(stat.mtimeMs));
    assert.equal(typeof res.body.invocations, 'object');

    const missing = await t.request.get('/_/functions/no-such-fn').set('Authorization', AUTH);
    assertError(missing, 404, 'FUNCTION_NOT_FOUND');
  });

  test('DELETE answers 204; the function is then 404, and DELETE again is 404', async () => {
    await put('doomed', "() => 'alive';\n").expect(201);
    assert.equal((await t.request.get('/doomed')).text, 'alive');
    const del = await t.request.delete('/_/functions/doomed').set('Authorization', AUTH);
    assert.equal(del.status, 204, del.text);
    assert.equal(del.text, '');
    assert.equal(await exists(file('doomed')), false);
    assertError(await t.request.get('/doomed'), 404, 'FUNCTION_NOT_FOUND');
    const again = await t.request.delete('/_/functions/doomed').set('Authorization', AUTH);
    assertError(again, 404, 'FUNCTION_NOT_FOUND');
    const list = await t.request.get('/_/functions');
    assert.ok(!list.body.functions.some((f: { name: string }) => f.name === 'doomed'));
  });

  describe('a deploy that does not compile changes nothing', () => {
    const GOOD = "(event) => 'the old version';\n";
    let goodVersion: string;
    before(async () => {
      const res = await put('keeper', GOOD);
      assert.equal(res.status, 201, res.text);
      goodVersion = res.body.version;
    });

    const assertOldServes = async () => {
      const res = await t.request.get('/keeper');
      assert.equal(res.status, 200);
      assert.equal(res.text, 'the old version');
      assert.equal(res.headers['x-function-version'], goodVersion);
      assert.equal(await fs.readFile(file('keeper'), 'utf8'), GOOD);
      assert.deepEqual(
        (await filesUnder(t.dir)).filter((f) => f.startsWith('.') || f.includes('.tmp')),
        [],
      );
    };

    void test('a syntax error is 422 FUNCTION_COMPILE_ERROR with its line and column', async () => {
      const broken = '// line 1\n(event) => {\n  return 1 +;\n};\n';
      const res = await put('keeper', broken);
      assertError(res, 422, 'FUNCTION_COMPILE_ERROR');
      assert.equal(res.body.error.line, 3, res.text);
      assert.equal(typeof res.body.error.column, 'number', res.text);
      assert.ok(res.body.error.column >= 1, res.text);
      assert.match(res.body.error.message, /SyntaxError/);
      await assertOldServes();
    });

    void test('a require of a package not installed is 422 at deploy, naming the call and its line', async () => {
      const source =
        "// the seed said require('nothing') in a comment\n" +
        "const _ = require('lodash');\nmodule.exports = () => _.chunk([1, 2], 1);\n";
      const res = await put('keeper', source);
      assertError(res, 422, 'FUNCTION_COMPILE_ERROR');
      assert.equal(
        res.body.error.message,
        "keeper.js: package 'lodash' is not installed: `require('lodash')` (line 2, column 19); " +
          'run `npm install lodash` in FUNCTIONS_DIR, or make the function a package folder (docs/packages.md)',
      );
      assert.equal(res.body.error.line, 2, res.text);
      assert.equal(res.body.error.column, 19, res.text);
      await assertOldServes();
    });

    void test('a file that defines its own require deploys and runs it', async () => {
      const source = "function require(n) {\n  return 'own ' + n;\n}\n(event) => require('x');\n";
      const res = await put('own-require', source);
      assert.equal(res.status, 201, res.text);
      const run = await t.request.get('/own-require');
      assert.equal(run.status, 200, run.text);
      assert.equal(run.text, 'own x');
    });

    const noFunction = [
      { what: 'a declaration (const x = 1)', source: 'const x = 1;\n' },
      { what: 'a number', source: '42;\n' },
      { what: 'module.exports set to an object', source: 'module.exports = { a: 1 };\n' },
      { what: 'a top level that throws', source: "throw new Error('at load');\n" },
    ];
    for (const { what, source } of noFunction) {
      void test(`a source that yields no function (${what}) is 422`, async () => {
        const res = await put('keeper', source);
        assertError(res, 422, 'FUNCTION_COMPILE_ERROR');
        await assertOldServes();
      });
    }

    void test('a top level that never finishes is refused and writes nothing', async () => {
      const res = await put('keeper', 'while (true) {}\n');
      assert.ok(
        ['FUNCTION_COMPILE_ERROR', 'FUNCTION_TIMEOUT'].includes(res.body.error?.code),
        res.text,
      );
      assert.ok(res.status === 422 || res.status === 504, res.text);
      await assertOldServes();
    });

    void test('a file on disk whose top level throws answers 500 FUNCTION_COMPILE_ERROR', async () => {
      await t.writeFunction('throws-at-load', "throw new Error('at load');\n");
      const res = await t.request.get('/throws-at-load');
      assertError(res, 500, 'FUNCTION_COMPILE_ERROR');
      assert.match(res.body.error.message, /at load/);
    });

    void test('a file on disk that calls require answers 500 FUNCTION_COMPILE_ERROR naming it', async () => {
      await t.writeFunction('requires-on-disk', "(event) => {\n  return require('fs');\n};\n");
      const res = await t.request.get('/requires-on-disk');
      assertError(res, 500, 'FUNCTION_COMPILE_ERROR');
      assert.match(
        res.body.error.message,
        /node:fs is not available in functions: `require\('fs'\)` \(line 2, column 18\); import chain: requires-on-disk\.js → node:fs/,
      );
      assert.equal(res.body.error.line, 2);
    });

    void test('a broken deploy of a new name writes no file', async () => {
      const res = await put('never-born', 'const x = 1;\n');
      assertError(res, 422, 'FUNCTION_COMPILE_ERROR');
      assert.equal(await exists(file('never-born')), false);
      assertError(await t.request.get('/never-born'), 404, 'FUNCTION_NOT_FOUND');
    });
  });

  describe('invalid names are 400 INVALID_FUNCTION_NAME and write nothing', () => {
    const names = ['..%2fx', '.env', 'a..b', '%2e%2e/outside', 'a/.hidden', 'bad%5cname', 'x.js'];
    for (const name of names) {
      void test(`PUT /_/functions/${name}`, async () => {
        const outside = path.join(t.dir, '..', 'x.js');
        const outsideBefore = await exists(outside);
        const before = await filesUnder(t.dir);
        const res = await put(name, "() => 'should never be written';\n");
        assertError(res, 400, 'INVALID_FUNCTION_NAME');
        assert.deepEqual(await filesUnder(t.dir), before);
        assert.equal(await exists(outside), outsideBefore);
        for (const method of ['get', 'delete'] as const) {
          const other = await t.request[method](`/_/functions/${name}`).set('Authorization', AUTH);
          assertError(other, 400, 'INVALID_FUNCTION_NAME');
        }
        assert.deepEqual(await filesUnder(t.dir), before);
      });
    }
  });

  void test('a deploy through a folder that is a symlink out of FUNCTIONS_DIR creates nothing there', async () => {
    const outside = await fs.mkdtemp(path.join(path.dirname(t.dir), 'koa-faas-outside-'));
    try {
      await fs.symlink(outside, path.join(t.dir, 'escape'));
      const res = await put('escape/deeper/x', "() => 'should never be written';\n");
      assertError(res, 400, 'INVALID_FUNCTION_NAME');
      assert.deepEqual(await fs.readdir(outside), [], 'nothing created outside the folder');
    } finally {
      await fs.rm(path.join(t.dir, 'escape'), { force: true });
      await fs.rm(outside, { recursive: true, force: true });
    }
  });

  describe('auth with the token set', () => {
    const guarded = [
      { method: 'put', path: '/_/functions/guarded' },
      { method: 'delete', path: '/_/functions/hello' },
      { method: 'get', path: '/_/functions/hello' },
      { method: 'get', path: '/_/invocations' },
      { method: 'get', path: '/_/invocations/some-id' },
    ] as const;
    for (const { method, path: route } of guarded) {
      void test(`${method.toUpperCase()} ${route}: no header or a wrong token is 401`, async () => {
        const missing = await call(t, method, route);
        assertError(missing, 401, 'UNAUTHORIZED');
        assert.match(String(missing.headers['www-authenticate']), /^Bearer\b/);

        for (const header of [
          `Bearer ${TOKEN}x`,
          `Bearer ${TOKEN.slice(0, -1)}`,
          TOKEN,
          `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
          'Bearer',
        ]) {
          const wrong = await call(t, method, route, header);
          assertError(wrong, 401, 'UNAUTHORIZED');
          assert.ok(wrong.headers['www-authenticate'], header);
        }
      });
    }

    void test('nothing is written or deleted without the token', async () => {
      assert.equal(await exists(file('guarded')), false);
      assert.equal((await t.request.get('/hello')).status, 200);
    });

    void test('the scheme is case-insensitive (RFC 6750): bearer <token> is accepted', async () => {
      const res = await t.request.get('/_/functions/hello').set('Authorization', `bearer ${TOKEN}`);
      assert.equal(res.status, 200, res.text);
    });

    void test('Bearer <token> is accepted', async () => {
      const res = await t.request.get('/_/functions/hello').set('Authorization', AUTH);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.source, HELLO);
      const records = await t.request.get('/_/invocations').set('Authorization', AUTH);
      assert.equal(records.status, 200, records.text);
      assert.ok(Array.isArray(records.body.invocations));
    });

    void test('health, ready, metrics and the function list stay open', async () => {
      const health = await t.request.get('/_/health');
      assert.equal(health.status, 200);
      assert.equal(health.body.status, 'ok');
      const ready = await t.request.get('/_/ready');
      assert.equal(ready.status, 200);
      assert.equal(ready.body.status, 'ready');
      const metrics = await t.request.get('/_/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.text, /^# HELP /m);
      const list = await t.request.get('/_/functions');
      assert.equal(list.status, 200);
      assert.ok(list.body.functions.some((f: { name: string }) => f.name === 'hello'));
    });
  });

  describe('routing', () => {
    void test('GET /_/ready answers 200 {status: ready}', async () => {
      const res = await t.request.get('/_/ready');
      assert.equal(res.status, 200);
      assert.equal(res.body.status, 'ready');
    });

    for (const route of ['/_/nope', '/_/functionsx', '/_/', '/_/health/extra']) {
      void test(`GET ${route} is 404 NOT_FOUND in the JSON shape`, async () => {
        assertError(await t.request.get(route), 404, 'NOT_FOUND');
      });
    }

    const wrongMethods = [
      { method: 'post', route: '/_/health' },
      { method: 'delete', route: '/_/ready' },
      { method: 'put', route: '/_/metrics' },
      { method: 'post', route: '/_/functions' },
      { method: 'post', route: '/_/functions/hello' },
      { method: 'delete', route: '/_/invocations' },
    ] as const;
    for (const { method, route } of wrongMethods) {
      void test(`${method.toUpperCase()} ${route} is 405 METHOD_NOT_ALLOWED`, async () => {
        const res = await t.request[method](route).set('Authorization', AUTH);
        assertError(res, 405, 'METHOD_NOT_ALLOWED');
      });
    }
  });

  test('concurrent deploys of one name never serve a torn file', async () => {
    const name = 'race';
    const count = 20;
    const bodies = Array.from(
      { length: count },
      (_, i) =>
        `deploy-${String(i).padStart(2, '0')}:` + String.fromCharCode(97 + i).repeat(120_000),
    );
    const sources = bodies.map((body) => `module.exports = () => ${JSON.stringify(body)};\n`);
    const bodyByVersion = new Map(sources.map((source, i) => [versionOf(source), bodies[i]]));
    const bodySet = new Set(bodies);

    interface Seen {
      started: number;
      status: number;
      text: string;
      version?: string;
    }
    const seen: Seen[] = [];
    let putsDone = false;
    let firstPutAt = Infinity;
    const puts = Promise.all(
      sources.map(async (source) => {
        const res = await put(name, source);
        firstPutAt = Math.min(firstPutAt, performance.now());
        return res;
      }),
    ).finally(() => {
      putsDone = true;
    });
    const getter = async () => {
      for (let extra = 0; !putsDone || extra < 3; extra += putsDone ? 1 : 0) {
        const started = performance.now();
        const res = await t.request.get(`/${name}`);
        seen.push({
          started,
          status: res.status,
          text: res.text,
          version: res.headers['x-function-version'],
        });
      }
    };
    const [putResults] = await Promise.all([puts, getter(), getter(), getter(), getter()]);

    for (const res of putResults) {
      assert.ok(res.status === 201 || res.status === 200, `${res.status} ${res.text}`);
      assert.ok(bodyByVersion.has(res.body.version));
    }
    assert.ok(putResults.some((res) => res.status === 201));
    assert.ok(seen.filter((s) => s.status === 200).length >= 12, 'too few GETs were served');
    for (const s of seen) {
      if (s.status === 404) {
        assert.ok(s.started < firstPutAt, 'a GET after the first deploy landed answered 404');
        continue;
      }
      assert.equal(s.status, 200, s.text.slice(0, 300));
      assert.ok(bodySet.has(s.text), `torn or unknown body: ${s.text.slice(0, 40)}…`);
      assert.equal(bodyByVersion.get(s.version ?? ''), s.text, 'body and version disagree');
    }

    const onDisk = await fs.readFile(file(name), 'utf8');
    assert.ok(sources.includes(onDisk), 'the file on disk is not one of the deployed sources');
    const last = await t.request.get(`/${name}`);
    assert.equal(last.headers['x-function-version'], versionOf(onDisk));
    assert.equal(last.text, bodyByVersion.get(versionOf(onDisk)));
    const strays = (await filesUnder(t.dir)).filter(
      (f) => !f.endsWith('.js') || f.includes('.tmp'),
    );
    assert.deepEqual(strays, []);
  });

  test('concurrent deploys of a new name: exactly one answers 201 Created', async () => {
    const created: number[] = [];
    for (let round = 0; round < 3; round++) {
      const sources = Array.from(
        { length: 20 },
        (_, i) => `() => ${JSON.stringify(`${round}-${i}-` + 'x'.repeat(50_000))};\n`,
      );
      const results = await Promise.all(sources.map((source) => put(`newborn-${round}`, source)));
      for (const res of results) assert.ok(res.status === 201 || res.status === 200, res.text);
      created.push(results.filter((res) => res.status === 201).length);
    }
    assert.deepEqual(created, [1, 1, 1], '201 answers per round of 20 concurrent creates');
  });

  test('files dropped on disk and deployed through the API are one list', async () => {
    await t.writeFunction('dropped', "() => 'dropped on disk';\n");
    await t.writeFunction('dropped-broken', '(event) => {\n  return 1 +;\n};\n');
    const deployed = "() => 'deployed by API';\n";
    await put('via-api', deployed).expect(201);

    assert.equal((await t.request.get('/dropped')).text, 'dropped on disk');
    for (let i = 0; i < 3; i++) assert.equal((await t.request.get('/via-api')).status, 200);
    assertError(await t.request.get('/dropped-broken'), 500, 'FUNCTION_COMPILE_ERROR');

    const res = await t.request.get('/_/functions');
    assert.equal(res.status, 200);
    const byName = new Map<string, Record<string, unknown>>(
      res.body.functions.map((f: { name: string }) => [f.name, f]),
    );
    const dropped = byName.get('dropped');
    const viaApi = byName.get('via-api');
    const broken = byName.get('dropped-broken');
    assert.ok(dropped && viaApi && broken, JSON.stringify([...byName.keys()]));

    assert.equal(dropped.status, 'ok');
    assert.deepEqual(dropped.invocations, { ok: 1 });
    assert.equal(viaApi.status, 'ok');
    assert.equal(viaApi.version, versionOf(deployed));
    assert.equal(viaApi.bytes, Buffer.byteLength(deployed));
    assert.deepEqual(viaApi.invocations, { ok: 3 });
    assert.equal(typeof viaApi.modified, 'string');
    assert.ok(!Number.isNaN(Date.parse(String(viaApi.modified))));
    assert.equal(broken.status, 'compile_error');
    assert.match(String(broken.error), /SyntaxError/);
    assert.deepEqual(broken.invocations, { FUNCTION_COMPILE_ERROR: 1 });
    const brokenOne = await t.request.get('/_/functions/dropped-broken').set('Authorization', AUTH);
    assert.equal(brokenOne.status, 200, brokenOne.text);
    assert.equal(brokenOne.body.status, 'compile_error');
    assert.match(brokenOne.body.error, /SyntaxError/);
    assert.equal(brokenOne.body.source, '(event) => {\n  return 1 +;\n};\n');

    // The API sees the dropped file, and the folder sees the deployed one.
    const one = await t.request.get('/_/functions/dropped').set('Authorization', AUTH);
    assert.equal(one.body.source, "() => 'dropped on disk';\n");
    assert.equal(await fs.readFile(file('via-api'), 'utf8'), deployed);
    const names: string[] = res.body.functions.map((f: { name: string }) => f.name);
    assert.deepEqual(names, [...names].sort(), 'the list is sorted by name');
  });
});

describe('without ADMIN_TOKEN', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ functions: { hello: HELLO } });
  });
  after(async () => {
    assert.deepEqual(await closeAndReap(t), [], 'worker processes left running after close()');
  });

  const disabled = [
    { method: 'put', path: '/_/functions/hello' },
    { method: 'put', path: '/_/functions/fresh' },
    { method: 'delete', path: '/_/functions/hello' },
    { method: 'get', path: '/_/functions/hello' },
    { method: 'get', path: '/_/invocations' },
    { method: 'get', path: '/_/invocations/some-id' },
  ] as const;
  for (const { method, path: route } of disabled) {
    void test(`${method.toUpperCase()} ${route} is 403 FORBIDDEN, saying how to enable it`, async () => {
      for (const header of [undefined, 'Bearer anything-at-all-0123456789', 'Bearer ']) {
        const res = await call(t, method, route, header);
        assertError(res, 403, 'FORBIDDEN');
        assert.match(res.body.error.message, /ADMIN_TOKEN/);
      }
    });
  }

  void test('nothing changed on disk, and the open routes still answer', async () => {
    assert.deepEqual(await fs.readdir(t.dir), ['hello.js']);
    assert.equal(await fs.readFile(path.join(t.dir, 'hello.js'), 'utf8'), HELLO);
    assert.equal((await t.request.get('/hello')).status, 200);
    for (const route of ['/_/health', '/_/ready', '/_/metrics', '/_/functions']) {
      assert.equal((await t.request.get(route)).status, 200, route);
    }
  });
});

describe('METRICS_AUTH=1', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ env: { ADMIN_TOKEN: TOKEN, METRICS_AUTH: '1' } });
  });
  after(async () => {
    assert.deepEqual(await closeAndReap(t), [], 'worker processes left running after close()');
  });

  void test('/_/metrics needs the token; health, ready and the list do not', async () => {
    const missing = await t.request.get('/_/metrics');
    assertError(missing, 401, 'UNAUTHORIZED');
    assert.ok(missing.headers['www-authenticate']);
    assertError(
      await t.request.get('/_/metrics').set('Authorization', 'Bearer wrong-token-0123456789'),
      401,
      'UNAUTHORIZED',
    );
    const ok = await t.request.get('/_/metrics').set('Authorization', AUTH);
    assert.equal(ok.status, 200);
    assert.match(ok.text, /^# TYPE faas_invocations_total counter$/m);
    for (const route of ['/_/health', '/_/ready', '/_/functions']) {
      assert.equal((await t.request.get(route)).status, 200, route);
    }
  });
});
