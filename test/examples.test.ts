/**
 * The example functions shipped in functions/, run as they are (copied to a temp folder): the
 * KV visit counter, the URL shortener and the signed webhook receiver.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startServer } from './support/server';
import type { TestServer } from './support/server';

const TOKEN = 'a-test-admin-token-0123456789';
const EXAMPLES = path.join(__dirname, '..', '..', 'functions');

let t: TestServer;
before(async () => {
  const functions: Record<string, string> = {};
  for (const file of await fs.readdir(EXAMPLES)) {
    if (file.endsWith('.js')) {
      functions[file.slice(0, -3)] = await fs.readFile(path.join(EXAMPLES, file), 'utf8');
    }
  }
  t = await startServer({ functions, env: { ADMIN_TOKEN: TOKEN } });
});
after(() => t.close());

test('every example loads', async () => {
  const list = await t.request.get('/_/functions');
  for (const fn of list.body.functions as { name: string; status: string }[]) {
    assert.equal(fn.status, 'ok', fn.name);
  }
  assert.ok((list.body.functions as unknown[]).length >= 8);
});

test('visits counts across workers', async () => {
  const answers = await Promise.all([1, 2, 3, 4].map(() => t.request.get('/visits')));
  const counts = answers.map((r) => (r.body as { visits: number }).visits).sort();
  assert.deepEqual(counts, [1, 2, 3, 4]);
});

test('shorten: POST a URL, GET its code → 302 to it; an unknown code → 404', async () => {
  const created = await t.request
    .post('/shorten')
    .send({ url: 'https://example.com/a/long/path?x=1' });
  assert.equal(created.status, 201, created.text);
  const { code, short } = created.body as { code: string; short: string };
  assert.match(code, /^[0-9a-f]{8}$/);
  const followed = await t.request.get(short).redirects(0);
  assert.equal(followed.status, 302);
  assert.equal(followed.headers.location, 'https://example.com/a/long/path?x=1');
  assert.equal((await t.request.get('/shorten/nope')).status, 404);
  assert.equal((await t.request.post('/shorten').send({ url: 'javascript:alert(1)' })).status, 400);
  assert.equal((await t.request.delete('/shorten/x')).status, 405);
});

test('webhook: a valid signature over the exact bytes is accepted, any other refused', async () => {
  const secret = 'whsec_example_0123';
  assert.equal(
    (
      await t.request
        .put('/_/secrets/WEBHOOK_SECRET')
        .set('Authorization', `Bearer ${TOKEN}`)
        .send(secret)
    ).status,
    201,
  );
  const body = '{ "event": "paid", "amount": 10.50 }';
  const sign = (text: string) =>
    `sha256=${createHmac('sha256', secret).update(text).digest('hex')}`;
  const post = (signature: string) =>
    t.request
      .post('/webhook')
      .set('Content-Type', 'application/json')
      .set('X-Signature-256', signature)
      .send(body);
  const ok = await post(sign(body));
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.body, { received: 'paid' });
  // Signed over the re-serialised JSON, not the bytes sent: refused.
  assert.equal((await post(sign(JSON.stringify(JSON.parse(body))))).status, 401);
  assert.equal((await post('sha256=' + '0'.repeat(64))).status, 401);
  assert.equal((await post('nonsense')).status, 401);
});
