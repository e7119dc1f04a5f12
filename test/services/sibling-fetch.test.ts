/**
 * A function that fetches another function on its own server (docs/spec.md §8): refused by default, with
 * a message that names the exact EGRESS_ALLOW entry that opens it and how to call a function; a
 * server restarted on that port with that setting lets the call through. Loopback only.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const FUNCTIONS = {
  // Calls `target` on the server that runs it, at the origin the request came in by.
  caller: `module.exports = async (event) => {
  const origin = 'http://' + (event.query.host || event.headers.host);
  try {
    const res = await fetch(origin + '/' + event.query.target);
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return { error: err.name, message: err.message };
  }
};
`,
  sibling: `() => 'hello from the sibling';\n`,
};

void describe('a fetch to a sibling function on the same server', () => {
  let t: TestServer | undefined;
  after(async () => {
    await t?.close();
  });

  void test('is refused with the setting that allows it and how to call the function', async () => {
    t = await startServer({ functions: FUNCTIONS });
    const port = new URL(t.url).port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
      const res = await t.request.get('/caller').query({ target: 'sibling', host });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.error, 'TypeError', res.text);
      const message = res.body.message as string;
      assert.ok(message.startsWith(`fetch failed: fetch to http://${host} refused: `), message);
      assert.ok(
        message.includes(
          `only an EGRESS_ALLOW entry with that port opens it: set EGRESS_ALLOW=${host} ` +
            `(to call another function of this server from a function: ` +
            `fetch('http://${host}/<function name>'), which holds a worker while it waits)`,
        ),
        message,
      );
    }
  });

  void test('the named setting, on the same port, lets the call through', async () => {
    assert.ok(t, 'the first test started the server');
    const port = new URL(t.url).port;
    const refused = await t.request.get('/caller').query({ target: 'sibling' });
    const entry = /EGRESS_ALLOW=(\S+) \(/.exec(refused.body.message as string)?.[1];
    assert.equal(entry, `127.0.0.1:${port}`, refused.text);
    // Restarted as the message says: same port (just freed), that EGRESS_ALLOW.
    await t.close();
    t = undefined;
    t = await startServer({ functions: FUNCTIONS, env: { PORT: port, EGRESS_ALLOW: entry } });
    const res = await t.request.get('/caller').query({ target: 'sibling' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { status: 200, body: 'hello from the sibling' });
  });
});
