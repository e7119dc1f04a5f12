/**
 * Function config end to end (docs/spec.md §7): timeoutMs, methods, rawBody and cors through the real
 * server, workers and files; invalid configs on disk (500) and on deploy (422); the config shown
 * by the admin API.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const TOKEN = 'a-test-admin-token-0123456789';
const SLEEP = (ms: number) =>
  `async () => { await new Promise((r) => setTimeout(r, ${ms})); return 'slept'; }`;

void describe('function config', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      env: { ADMIN_TOKEN: TOKEN, FUNCTION_TIMEOUT_MS: '1000', MAX_TIMEOUT_MS: '5000' },
      functions: {
        'short-sleep': `module.exports = ${SLEEP(500)};\nmodule.exports.config = { timeoutMs: 200 };\n`,
        'plain-sleep': `module.exports = ${SLEEP(500)};\n`,
        'long-sleep': `module.exports = ${SLEEP(1500)};\nmodule.exports.config = { timeoutMs: 3000 };\n`,
        'short-loop': `exports.handler = () => { for (;;) {} };\nexports.config = { timeoutMs: 200 };\n`,
        'post-only': `module.exports = (e) => e.method;\nmodule.exports.config = { methods: ['post', 'PUT'] };\n`,
        'get-only': `module.exports = (e) => e.method;\nmodule.exports.config = { methods: ['GET'] };\n`,
        raw: `module.exports = (e) => ({ raw: e.rawBody, body: e.body });\nmodule.exports.config = { rawBody: true };\n`,
        'not-raw': `module.exports = (e) => ({ hasRaw: 'rawBody' in e });\n`,
        // A webhook: HMAC-SHA256 over the exact bytes, computed inside the sandbox.
        webhook: `export const config = { rawBody: true, methods: ['POST'] };
export default async (event) => {
  const bytes = Uint8Array.from(atob(event.rawBody), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode('whsec_test'),
    { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, bytes));
  const hex = Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join('');
  return { hex, valid: hex === event.headers['x-signature'], amount: event.body.amount };
};
`,
        'own-cors': `module.exports = (e) => ({
  statusCode: e.method === 'OPTIONS' ? 204 : 200,
  headers: {
    'Access-Control-Allow-Origin': 'https://app.example',
    'Access-Control-Allow-Credentials': 'true',
    'Access-Control-Allow-Methods': 'POST',
    'X-Seen-Method': e.method,
  },
  body: e.method === 'OPTIONS' ? undefined : 'own',
});
module.exports.config = { cors: 'function' };
`,
        'bad-key': `module.exports = () => 1;\nmodule.exports.config = { timeout: 5 };\n`,
        'bad-value': `module.exports = () => 1;\nmodule.exports.config = { timeoutMs: 999999 };\n`,
        'bad-type': `module.exports = () => 1;\nmodule.exports.config = { methods: () => ['GET'] };\n`,
        'bad-schedule': `module.exports = () => 1;\nmodule.exports.config = { schedule: '* * *' };\n`,
      },
    });
  });
  after(() => t.close());

  void test('timeoutMs below the default: a 500 ms sleep with timeoutMs 200 answers 504', async () => {
    const started = Date.now();
    const res = await t.request.get('/short-sleep');
    const elapsed = Date.now() - started;
    assert.equal(res.status, 504, res.text);
    assert.equal(res.body.error.code, 'FUNCTION_TIMEOUT');
    assert.match(res.body.error.message, /exceeded its 200 ms timeout/);
    // The default (1000 ms) would have let it finish: the 504 proves the config applied.
    assert.ok(elapsed < 1000, `answered after ${elapsed} ms`);
    const control = await t.request.get('/plain-sleep');
    assert.equal(control.status, 200);
    assert.equal(control.text, 'slept');
  });

  void test('timeoutMs above the default: a 1500 ms sleep with timeoutMs 3000 succeeds', async () => {
    const res = await t.request.get('/long-sleep');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, 'slept');
  });

  void test('timeoutMs stops a synchronous loop at its own deadline', async () => {
    const res = await t.request.get('/short-loop');
    assert.equal(res.status, 504);
    assert.match(res.body.error.message, /exceeded its 200 ms timeout/);
    const again = await t.request.get('/plain-sleep');
    assert.equal(again.status, 200, 'the worker still serves');
  });

  void test('methods: others answer 405 with Allow; listed ones (any case) run', async () => {
    for (const method of ['get', 'delete', 'patch'] as const) {
      const res = await t.request[method]('/post-only');
      assert.equal(res.status, 405, method);
      assert.equal(res.body.error.code, 'METHOD_NOT_ALLOWED');
      assert.equal(res.headers.allow, 'POST, PUT');
    }
    assert.equal((await t.request.post('/post-only')).text, 'POST');
    assert.equal((await t.request.put('/post-only')).text, 'PUT');
  });

  void test('methods: HEAD goes with GET', async () => {
    const head = await t.request.head('/get-only');
    assert.equal(head.status, 200);
    const post = await t.request.post('/get-only');
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET');
  });

  void test('rawBody: the exact bytes as base64, beside the parsed body', async () => {
    const payloads: [string, string][] = [
      ['application/json', '{ "amount": 10.50,\n  "x": [1, 2 ] }'],
      ['text/plain; charset=utf-8', 'caf\u00e9 \u2603'],
      ['application/x-www-form-urlencoded', 'a=1&a=2&b=%20'],
      ['application/octet-stream', '\u0000\u0001binary'],
    ];
    for (const [type, text] of payloads) {
      const bytes = Buffer.from(text, 'utf8');
      // A string is sent as is (superagent would JSON-encode a Buffer under a JSON type).
      const res = await t.request.post('/raw').set('Content-Type', type).send(text);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.raw, bytes.toString('base64'), type);
    }
    const res = await t.request.post('/not-raw').set('Content-Type', 'text/plain').send('x');
    assert.deepEqual(res.body, { hasRaw: false });
  });

  void test('rawBody: an HMAC over the exact bytes, computed inside the function, equals the one outside', async () => {
    const bodies = [
      '{ "amount": 10.50 }',
      '{"amount":10.5}',
      '{\n  "amount" : 1e1, "note": "caf\u00e9 \\u00e9"\n}',
      '\ufeff{"amount": 0.10}',
    ];
    for (const text of bodies) {
      const expected = createHmac('sha256', 'whsec_test')
        .update(Buffer.from(text, 'utf8'))
        .digest('hex');
      const res = await t.request
        .post('/webhook')
        .set('Content-Type', 'application/json')
        .set('X-Signature', expected)
        .send(text);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.hex, expected, text);
      assert.equal(res.body.valid, true);
      assert.equal(res.body.amount, JSON.parse(text.replace(/^\ufeff/, '')).amount);
    }
  });

  void test('cors "function": its preflight reaches it, and the server adds no CORS header', async () => {
    const preflight = await t.request
      .options('/own-cors')
      .set('Origin', 'https://app.example')
      .set('Access-Control-Request-Method', 'POST');
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['x-seen-method'], 'OPTIONS');
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(preflight.headers['access-control-allow-credentials'], 'true');
    assert.equal(preflight.headers['access-control-max-age'], undefined);
    const post = await t.request.post('/own-cors').set('Origin', 'https://app.example');
    assert.equal(post.text, 'own');
    assert.equal(post.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(post.headers['access-control-expose-headers'], undefined);
    // Any other function keeps the server's CORS.
    const other = await t.request
      .options('/plain-sleep')
      .set('Origin', 'https://app.example')
      .set('Access-Control-Request-Method', 'POST');
    assert.equal(other.status, 204);
    assert.equal(other.headers['access-control-allow-origin'], '*');
  });

  void test('an invalid config on disk answers 500 FUNCTION_COMPILE_ERROR naming the key', async () => {
    const cases: [string, RegExp][] = [
      ['bad-key', /unknown key config\.timeout/],
      ['bad-value', /config\.timeoutMs must be a whole number of ms from 10 to 5000/],
      ['bad-type', /config\.methods is a function; config must be plain JSON data/],
      ['bad-schedule', /config\.schedule holds "\* \* \*": .*5 fields/],
    ];
    for (const [name, message] of cases) {
      const res = await t.request.get(`/${name}`);
      assert.equal(res.status, 500, name);
      assert.equal(res.body.error.code, 'FUNCTION_COMPILE_ERROR');
      assert.match(res.body.error.message, message);
    }
  });

  void test('a deploy with an invalid config is 422; a valid one shows its config', async () => {
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const bad = await t.request
      .put('/_/functions/deployed')
      .set(auth)
      .set('Content-Type', 'application/javascript')
      .send('module.exports = () => 1;\nmodule.exports.config = { methods: ["FETCH"] };\n');
    assert.equal(bad.status, 422, bad.text);
    assert.match(bad.body.error.message, /config\.methods holds "FETCH"/);
    const missing = await t.request.get('/deployed');
    assert.equal(missing.status, 404, 'a refused deploy writes nothing');

    const good = await t.request
      .put('/_/functions/deployed')
      .set(auth)
      .set('Content-Type', 'application/javascript')
      .send(
        'module.exports = (e) => e.method;\nmodule.exports.config = { methods: ["post"], timeoutMs: 300 };\n',
      );
    assert.equal(good.status, 201, good.text);
    assert.deepEqual(good.body.config, { methods: ['POST'], timeoutMs: 300 });
    const info = await t.request.get('/_/functions/deployed').set(auth);
    assert.equal(info.status, 200);
    assert.deepEqual(info.body.config, { methods: ['POST'], timeoutMs: 300 });
    assert.equal(info.body.file, 'deployed.js');
    assert.equal((await t.request.get('/deployed')).status, 405);
    assert.equal((await t.request.post('/deployed')).text, 'POST');
  });

  void test('a new version on disk brings its new config with it', async () => {
    await t.writeFunction(
      'changing',
      `module.exports = () => 'v1';\nmodule.exports.config = { methods: ['GET'] };\n`,
    );
    assert.equal((await t.request.get('/changing')).text, 'v1');
    await t.writeFunction(
      'changing',
      `module.exports = () => 'v2';\nmodule.exports.config = { methods: ['POST'] };\n`,
    );
    let res = await t.request.get('/changing');
    for (let i = 0; i < 40 && res.status !== 405; i++) {
      await new Promise((r) => setTimeout(r, 50));
      res = await t.request.get('/changing');
    }
    assert.equal(res.status, 405);
    assert.equal((await t.request.post('/changing')).text, 'v2');
  });
});
