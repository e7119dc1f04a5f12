/**
 * Every answer for a function path carries the sandbox (src/http/function-sandbox.ts, docs/spec.md
 * §4): `Content-Security-Policy: sandbox …` without allow-same-origin and `nosniff`, whatever the
 * function answered, whatever error the server answered for it, and beside (never instead of) a
 * policy the function sets itself. The admin API and the console keep their own headers.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CONTENT_SECURITY_POLICY } from '../../src/http/admin/console';
import { ADMIN_CSP, FUNCTION_CSP, withSandbox } from '../../src/http/function-sandbox';
import type { Response } from 'supertest';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const TOKEN = 'sandbox-test-token-0123456789';

const FUNCTIONS: Record<string, string> = {
  html: `module.exports = async () => ({
    statusCode: 200,
    headers: { 'content-type': 'text/html' },
    body: '<script>parent.postMessage(sessionStorage.length, "*")</script>',
  });`,
  json: `module.exports = async () => ({ ok: true });`,
  empty: `module.exports = async () => undefined;`,
  throws: `module.exports = async () => { throw new Error('boom'); };`,
  invalid: `module.exports = async () => ({ statusCode: 200, headers: { 'x-a': 'b\\nc' } });`,
  'get-only': `module.exports = async () => 'hi';
module.exports.config = { methods: ['GET'] };`,
  'own-csp': `module.exports = async () => ({
    statusCode: 200,
    headers: {
      'Content-Type': 'text/html',
      'Content-Security-Policy': "sandbox allow-scripts allow-same-origin; default-src *",
      'X-Content-Type-Options': 'nosniff',
    },
    body: '<p>hi</p>',
  });`,
  'own-csp-list': `module.exports = async () => ({
    statusCode: 200,
    headers: { 'content-security-policy': ["default-src 'self'", "img-src *"] },
    body: 'x',
  });`,
  'cors-itself': `module.exports = async (event) => ({ statusCode: 204, headers: { 'access-control-allow-origin': '*' } });
module.exports.config = { cors: 'function' };`,
  broken: `module.exports = async () => { return ( ;`,
};

let t: TestServer;
before(async () => {
  t = await startServer({
    functions: FUNCTIONS,
    env: { ADMIN_TOKEN: TOKEN, MAX_BODY: '1kb' },
  });
});
after(() => t.close());

/** The policies of an answer (Node joins several header lines with ", "). */
function policies(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  return (Array.isArray(header) ? header : [header]).flatMap((h) => h.split(/,\s*/));
}

function assertSandboxed(res: Response) {
  const csp = policies(res.headers['content-security-policy']);
  assert.ok(csp.includes(FUNCTION_CSP), `no sandbox policy in ${JSON.stringify(csp)}`);
  assert.equal(res.headers['x-content-type-options'], 'nosniff');
  assert.doesNotMatch(FUNCTION_CSP, /allow-same-origin|allow-top-navigation|escape-sandbox/);
}

describe('every answer for a function path is sandboxed', () => {
  const cases: [string, () => PromiseLike<Response>, number][] = [
    ['text/html from the function', () => t.request.get('/html'), 200],
    ['JSON', () => t.request.get('/json'), 200],
    ['204 (undefined)', () => t.request.get('/empty'), 204],
    ['HEAD', () => t.request.head('/html'), 200],
    ['a sub-path', () => t.request.get('/json/a/b?c=d'), 200],
    ['500 FUNCTION_ERROR', () => t.request.get('/throws'), 500],
    ['500 INVALID_RESULT', () => t.request.get('/invalid'), 500],
    ['405 METHOD_NOT_ALLOWED', () => t.request.post('/get-only').send({}), 405],
    ['404 FUNCTION_NOT_FOUND', () => t.request.get('/nobody-here'), 404],
    ['400 INVALID_FUNCTION_NAME', () => t.request.get('/bad%20name'), 400],
    ['500 FUNCTION_COMPILE_ERROR', () => t.request.get('/broken'), 500],
    [
      '413 body over MAX_BODY',
      () => t.request.post('/json').set('Content-Type', 'text/plain').send('x'.repeat(4096)),
      413,
    ],
    [
      '400 malformed JSON body',
      () => t.request.post('/json').set('Content-Type', 'application/json').send('{'),
      400,
    ],
    [
      '204 preflight answered by the server',
      () =>
        t.request
          .options('/json')
          .set('Origin', 'https://elsewhere.example')
          .set('Access-Control-Request-Method', 'POST'),
      204,
    ],
    [
      'a preflight the function answers itself',
      () =>
        t.request
          .options('/cors-itself')
          .set('Origin', 'https://elsewhere.example')
          .set('Access-Control-Request-Method', 'POST'),
      204,
    ],
    [
      '202 of an async call',
      () => t.request.post('/json').set('Prefer', 'respond-async').send({}),
      202,
    ],
  ];
  for (const [name, send, status] of cases) {
    test(name, async () => {
      const res = await send();
      assert.equal(res.status, status);
      assertSandboxed(res);
    });
  }

  test("a function's own policy is sent beside the sandbox, never instead of it", async () => {
    const res = await t.request.get('/own-csp');
    assert.equal(res.status, 200);
    assert.deepEqual(res.headers['content-security-policy'].split(/,\s*/), [
      'sandbox allow-scripts allow-same-origin; default-src *',
      FUNCTION_CSP,
    ]);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    const list = await t.request.get('/own-csp-list');
    assert.deepEqual(list.headers['content-security-policy'].split(/,\s*/), [
      "default-src 'self'",
      'img-src *',
      FUNCTION_CSP,
    ]);
  });

  test('withSandbox keeps the policies a function sets and adds the sandbox last', () => {
    assert.deepEqual(withSandbox(undefined), [FUNCTION_CSP]);
    assert.deepEqual(withSandbox(''), [FUNCTION_CSP]);
    assert.deepEqual(withSandbox("default-src 'none'"), ["default-src 'none'", FUNCTION_CSP]);
  });

  test('417 for an unknown Expect on a function path (answered before Koa)', async () => {
    const { port } = new URL(t.url);
    const head = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => {
        socket.write(
          'POST /json HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\n',
        );
      });
      let text = '';
      socket.on('data', (chunk) => {
        text += chunk.toString();
        if (text.includes('\r\n\r\n')) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.on('error', reject);
    });
    assert.match(head, /^HTTP\/1\.1 417 /);
    assert.ok(head.includes(`Content-Security-Policy: ${FUNCTION_CSP}\r\n`), head);
    assert.match(head, /X-Content-Type-Options: nosniff\r\n/);
  });
});

describe('the admin API and the console keep their own headers', () => {
  test('the console page: its own strict policy, not the sandbox', async () => {
    const res = await t.request.get('/_/ui/');
    assert.equal(res.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
  });

  // Admin answers quote function output (a record, a draft's body): never a page of the origin.
  const admin: [string, () => PromiseLike<Response>, number][] = [
    ['a draft run answering HTML', () => draft(), 200],
    [
      'a source',
      () => t.request.get('/_/functions/html').set('Authorization', `Bearer ${TOKEN}`),
      200,
    ],
    ['401 without the token', () => t.request.get('/_/secrets'), 401],
    ['open /_/health', () => t.request.get('/_/health'), 200],
    ['404 under /_/ui/', () => t.request.get('/_/ui/nothing.html'), 404],
  ];
  function draft() {
    return t.request
      .post('/_/drafts/html')
      .set('Authorization', `Bearer ${TOKEN}`)
      .send({ source: FUNCTIONS.html });
  }
  for (const [name, send, status] of admin) {
    test(`admin: ${name}`, async () => {
      const res = await send();
      assert.equal(res.status, status);
      assert.equal(res.headers['content-security-policy'], ADMIN_CSP);
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
    });
  }
});
