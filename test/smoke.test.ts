import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer } from './support/server';
import type { TestServer } from './support/server';

let t: TestServer;
before(async () => {
  t = await startServer({
    functions: {
      hello: "(event, context) => {\n  return { message: 'it works!', status: 'ok' };\n};\n",
    },
  });
});
after(() => t.close());

test('hello answers the seed body', async () => {
  const res = await t.request.get('/hello');
  assert.equal(res.status, 200);
  assert.equal(res.text, '{"message":"it works!","status":"ok"}');
  assert.match(res.headers['content-type'], /^application\/json/);
  assert.ok(res.headers['x-request-id']);
});
