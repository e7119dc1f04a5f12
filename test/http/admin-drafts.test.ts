/**
 * Draft runs (src/http/admin/drafts.ts): POST /_/drafts/<name> runs a source through the real
 * pool without deploying it, and stays private: the live version, its records, its KV data and
 * every listing are untouched, and the draft's own KV namespace is reachable by nothing and
 * cleared after the run.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { DB_FILE } from '../../src/storage/sqlite';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

const TOKEN = 'draft-test-token-0123456789';
const LIVE = `module.exports = async (event, context) => {
  await context.kv.put('owner', 'live');
  return { version: 'live' };
};
`;
const ECHO = `module.exports = (event) => event;\n`;

let t: TestServer;
const auth = (req: ReturnType<TestServer['request']['post']>) =>
  req.set('Authorization', `Bearer ${TOKEN}`);
const draft = (name: string, payload: unknown) =>
  auth(t.request.post(`/_/drafts/${name}`)).send(payload as object);

/** The rows of the SQLite KV table whose namespace is a draft's. */
function draftRows(): number {
  const db = new Database(path.join(t.config.dataDir, DB_FILE), { readonly: true });
  try {
    return (
      db.prepare("SELECT count(*) AS n FROM kv WHERE ns LIKE '%~draft-%'").get() as { n: number }
    ).n;
  } finally {
    db.close();
  }
}

before(async () => {
  t = await startServer({
    env: { ADMIN_TOKEN: TOKEN },
    functions: { live: LIVE, echo: ECHO },
  });
});
after(() => t.close());

describe('auth', () => {
  test('needs the bearer token; a server without ADMIN_TOKEN refuses with 403', async () => {
    const payload = { source: ECHO };
    for (const [header, status] of [
      [undefined, 401],
      ['Bearer wrong-token-wrong-token', 401],
      [`Bearer ${TOKEN}`, 200],
    ] as const) {
      const req = t.request.post('/_/drafts/echo');
      if (header) req.set('Authorization', header);
      assert.equal((await req.send(payload)).status, status, String(header));
    }
    const off = await startServer({});
    try {
      const res = await off.request.post('/_/drafts/echo').send(payload);
      assert.equal(res.status, 403);
      assert.equal(res.body.error.code, 'FORBIDDEN');
    } finally {
      await off.close();
    }
  });
});

describe('the event', () => {
  const cases: {
    name: string;
    request: Record<string, unknown>;
    expect: Record<string, unknown>;
  }[] = [
    {
      name: 'defaults: GET, no sub-path, no query, no body',
      request: {},
      expect: { method: 'GET', path: '/echo', subpath: '', query: {}, headers: {} },
    },
    {
      name: 'method, sub-path, query with a repeated key, headers lower-cased',
      request: {
        method: 'patch',
        subpath: '/users/42',
        query: '?a=1&a=2&b=x%20y',
        headers: { 'X-Caller': 'me' },
      },
      expect: {
        method: 'PATCH',
        path: '/echo/users/42',
        subpath: '/users/42',
        query: { a: ['1', '2'], b: 'x y' },
        headers: { 'x-caller': 'me' },
      },
    },
    {
      name: 'a JSON body is parsed',
      request: {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{"n":1,"a":[true]}',
      },
      expect: {
        method: 'POST',
        body: { n: 1, a: [true] },
        headers: { 'content-type': 'application/json', 'content-length': '18' },
      },
    },
    {
      name: 'a form body is parsed, repeated keys as arrays',
      request: {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'x=1&x=2&y=%C3%A9',
      },
      expect: { body: { x: ['1', '2'], y: 'é' } },
    },
    {
      name: 'a text body is text',
      request: { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'héllo' },
      expect: { body: 'héllo' },
    },
    {
      name: 'any other type arrives base64, flagged',
      request: {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: Buffer.from([0, 1, 2, 255]).toString('base64'),
        bodyBase64: true,
      },
      expect: { body: 'AAEC/w==', isBase64Encoded: true },
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const res = await draft('echo', { source: ECHO, request: c.request });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.status, 200);
      assert.equal(res.body.bodyEncoding, 'utf8');
      const event = JSON.parse(res.body.body as string) as Record<string, unknown>;
      for (const [key, value] of Object.entries(c.expect)) {
        assert.deepEqual(event[key], value, key);
      }
    });
  }

  test('a body that does not parse as its type is a 400, as on a real request', async () => {
    const res = await draft('echo', {
      source: ECHO,
      request: { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' },
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'INVALID_BODY');
  });
});

describe('bad drafts', () => {
  const cases: [string, string, unknown, number][] = [
    ['a body that is not an object', 'echo', ['x'], 400],
    ['no source', 'echo', { language: 'js' }, 400],
    ['an unknown language', 'echo', { source: ECHO, language: 'py' }, 400],
    ['a method that is not a token', 'echo', { source: ECHO, request: { method: 'GE T' } }, 400],
    ['a sub-path without its slash', 'echo', { source: ECHO, request: { subpath: 'x' } }, 400],
    [
      'a sub-path with a query in it',
      'echo',
      { source: ECHO, request: { subpath: '/x?y=1' } },
      400,
    ],
    [
      'a header value with a line break',
      'echo',
      { source: ECHO, request: { headers: { a: 'b\r\nc: d' } } },
      400,
    ],
    [
      'a header name that is not a token',
      'echo',
      { source: ECHO, request: { headers: { 'a b': 'c' } } },
      400,
    ],
    ['a body that is not text', 'echo', { source: ECHO, request: { body: { a: 1 } } }, 400],
    ['a name that is not a name', '..%2fetc', { source: ECHO }, 400],
    ['a reserved name', '_x', { source: ECHO }, 400],
  ];
  for (const [name, fn, payload, status] of cases) {
    test(name, async () => {
      const res = await draft(fn, payload);
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(typeof res.body.error.code, 'string');
    });
  }
});

describe('compile errors are a 422 with the line, as a deploy', () => {
  const cases: [string, string, 'js' | 'ts', number | undefined, RegExp][] = [
    ['a syntax error', 'module.exports = (e) => {\n  return { a: ;\n};\n', 'js', 2, /SyntaxError/],
    ['an import', "import fs from 'fs';\nexport default () => 1;\n", 'js', 1, /import/i],
    [
      'a TypeScript syntax error',
      'export default (e: any) => {\n\n  let x: = 1;\n};\n',
      'ts',
      3,
      /./,
    ],
    [
      'an unknown config key',
      'module.exports = () => 1;\nmodule.exports.config = { nope: 1 };\n',
      'js',
      undefined,
      /nope/,
    ],
    ['no function', 'module.exports = 42;\n', 'js', undefined, /function/],
  ];
  for (const [name, source, language, line, message] of cases) {
    test(name, async () => {
      const res = await draft('echo', { source, language });
      assert.equal(res.status, 422, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'FUNCTION_COMPILE_ERROR');
      assert.match(res.body.error.message, message);
      if (line !== undefined) assert.equal(res.body.error.line, line);
      // The throwaway name never shows; the user knows it as their function's draft.
      assert.doesNotMatch(JSON.stringify(res.body), /~draft-/);
    });
  }
});

describe('what a run answers', () => {
  test('a function error, an invalid result and a timeout are the answer, not errors of the route', async () => {
    const cases: [string, number, string][] = [
      ["module.exports = () => { throw new TypeError('boom'); };", 500, 'FUNCTION_ERROR'],
      ['module.exports = () => () => 1;', 500, 'INVALID_RESULT'],
      [
        'module.exports = () => new Promise(() => {});\nmodule.exports.config = { timeoutMs: 200 };',
        504,
        'FUNCTION_TIMEOUT',
      ],
    ];
    for (const [source, status, code] of cases) {
      const res = await draft('echo', { source });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.status, status);
      const answer = JSON.parse(res.body.body as string) as {
        error: { code: string; message: string };
      };
      assert.equal(answer.error.code, code);
      assert.doesNotMatch(res.body.body as string, /~draft-/);
    }
  });

  test('a draft that breaks its worker answers 502/504 and leaves no quarantine behind', async () => {
    const cases: [string, number, string][] = [
      [
        // Time enough to reach the heap limit on a loaded machine (the default 1 s is not).
        'module.exports = () => { const a = []; for (;;) a.push(new Array(1e6).fill(1)); };\n' +
          'module.exports.config = { timeoutMs: 20000 };',
        502,
        'WORKER_CRASHED',
      ],
      [
        'module.exports = async () => { await null; for (;;); };\nmodule.exports.config = { timeoutMs: 300 };',
        504,
        'FUNCTION_TIMEOUT',
      ],
    ];
    for (const [source, status, code] of cases) {
      const res = await draft('echo', { source });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.status, status, res.body.body as string);
      assert.equal(
        (JSON.parse(res.body.body as string) as { error: { code: string } }).error.code,
        code,
      );
      assert.equal(t.server.pool.stats().quarantined, 0, 'no quarantine under a throwaway name');
      // The live function is untouched and answers at once.
      assert.equal((await t.request.get('/echo')).status, 200);
    }
  });

  test('status, headers, console output, timings and a binary body as base64', async () => {
    const source = `module.exports = () => {
      console.log('one');
      console.warn('two');
      return { statusCode: 201, headers: { 'x-a': 'b', 'content-type': 'image/png' },
        body: 'iVBORw0KGgo=', isBase64Encoded: true };
    };`;
    const res = await draft('echo', { source });
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 201);
    assert.equal(res.body.headers['x-a'], 'b');
    assert.equal(res.body.bodyEncoding, 'base64');
    assert.equal(res.body.body, 'iVBORw0KGgo=');
    assert.deepEqual(res.body.logs, ['info\tone', 'warn\ttwo']);
    assert.equal(typeof res.body.durationMs.total, 'number');
    assert.equal(typeof res.body.durationMs.exec, 'number');
    assert.match(res.body.version, /^[0-9a-f]{16}$/);
  });
});

describe('privacy and isolation', () => {
  test('never changes the live version, its listing, its records or its data', async () => {
    assert.equal((await t.request.get('/live')).body.version, 'live');
    const before = await auth(t.request.get('/_/functions/live'));
    const recordsBefore = (await auth(t.request.get('/_/invocations?limit=1000'))).body.invocations
      .length;

    const source = `module.exports = async (event, context) => {
      const seen = await context.kv.get('owner');
      await context.kv.put('owner', 'draft');
      await context.kv.put('draft-only', 1);
      return { version: 'draft', seen, listed: (await context.kv.list()).keys.map((k) => k.key) };
    };`;
    const res = await draft('live', { source });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    // An empty namespace of its own: it reads nothing of the function's data.
    assert.deepEqual(JSON.parse(res.body.body as string), {
      version: 'draft',
      seen: null,
      listed: ['draft-only', 'owner'],
    });

    const after = await auth(t.request.get('/_/functions/live'));
    assert.equal(after.body.version, before.body.version);
    assert.equal(after.body.source, LIVE);
    assert.equal((await t.request.get('/live')).body.version, 'live');
    const value = await auth(t.request.get('/_/kv/live/owner'));
    assert.equal(value.body, 'live');
    assert.equal((await auth(t.request.get('/_/kv/live/draft-only'))).status, 404);
    const names = (await t.request.get('/_/functions')).body.functions.map(
      (f: { name: string }) => f.name,
    );
    assert.deepEqual(names, ['echo', 'live']);
    const records = (await auth(t.request.get('/_/invocations?limit=1000'))).body.invocations as {
      function: string;
    }[];
    // Only the one real GET /live above was recorded.
    assert.equal(records.length, recordsBefore + 1);
    assert.ok(records.every((r) => !r.function.includes('draft')));
    // The draft's namespace is gone.
    await eventually(async () => draftRows() === 0);
  });

  test('a draft of a name that does not exist runs, and the name still does not exist', async () => {
    const res = await draft('ghost', { source: "module.exports = () => 'boo';" });
    assert.equal(res.status, 200);
    assert.equal(res.body.body, 'boo');
    assert.equal((await t.request.get('/ghost')).status, 404);
    assert.equal((await auth(t.request.get('/_/functions/ghost'))).status, 404);
  });

  test("no admin route reaches a draft's namespace", async () => {
    for (const url of ['/_/kv/live~draft-x', '/_/kv/live~draft-x/owner', '/_/kv/live%7Edraft-x']) {
      assert.equal((await auth(t.request.get(url))).status, 400, url);
    }
  });

  test('a write left in flight is cleared too', async () => {
    const source = `module.exports = (event, context) => {
      context.kv.put('late', 1);
      return 'gone';
    };
    module.exports.config = { timeoutMs: 200 };`;
    const res = await draft('live', { source });
    assert.equal(res.status, 200);
    await eventually(async () => draftRows() === 0, 3000);
  });

  test('gets the secrets its config names, masked in its output, and no others', async () => {
    await auth(t.request.put('/_/secrets/DRAFT_SECRET')).type('text/plain').send('hunter2-secret');
    await auth(t.request.put('/_/secrets/OTHER_SECRET')).type('text/plain').send('other-value');
    const source = `module.exports = (event, context) => {
      console.log('secret is', context.secrets.DRAFT_SECRET);
      return Object.keys(context.secrets);
    };
    module.exports.config = { secrets: ['DRAFT_SECRET'] };`;
    const res = await draft('echo', { source });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body.body as string), ['DRAFT_SECRET']);
    assert.deepEqual(res.body.logs, ['info\tsecret is [secret]']);
  });

  test('the sandbox is the same: no process, require or host globals', async () => {
    const source = `module.exports = () => [typeof process, typeof require, typeof Buffer,
      typeof globalThis.__dirname, (() => { try { return this.constructor.constructor('return process')() ? 'escaped' : 'no'; } catch (e) { return 'refused'; } })()];`;
    const res = await draft('echo', { source });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const [proc, req, buf, dirname, escape] = JSON.parse(res.body.body as string) as string[];
    assert.deepEqual(
      [proc, req, buf, dirname],
      ['undefined', 'undefined', 'undefined', 'undefined'],
    );
    assert.notEqual(escape, 'escaped');
  });
});
