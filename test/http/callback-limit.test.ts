/**
 * Callbacks of many async invocations through the real server (docs/spec.md §9): at most
 * CALLBACK_PER_ORIGIN connections at once to one receiver, every callback delivered, and the
 * invocations themselves never held up by a slow receiver. Loopback only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';
import { startReceiver, stopReceiver } from '../async/callback-receiver';
import type { Receiver } from '../async/callback-receiver';

const TOKEN = 'a-test-admin-token-0123456789';
const CAP = 3;

void describe('callbacks of 100 async invocations to one receiver', () => {
  let t: TestServer | undefined;
  let receiver: Receiver | undefined;
  before(async () => {
    // Each callback is held 100 ms: without a limit they pile up side by side.
    receiver = await startReceiver(100);
    t = await startServer({
      functions: { quick: `module.exports = (e, c) => ({ id: c.requestId });\n` },
      env: {
        ADMIN_TOKEN: TOKEN,
        EGRESS_ALLOW: new URL(receiver.url).host,
        CALLBACK_PER_ORIGIN: String(CAP),
        WORKERS: '3',
        ASYNC_CONCURRENCY: '2',
      },
    });
  });
  after(async () => {
    await t?.close();
    await stopReceiver(receiver);
  });

  void test(`at most CALLBACK_PER_ORIGIN (${CAP}) connections at once, all delivered`, async () => {
    assert.ok(t && receiver);
    const server = t;
    const r = receiver;
    const ids = Array.from({ length: 100 }, (_, i) => `limit-${i}`);
    for (const id of ids) {
      const res: { status: number; text: string; body: unknown } = await server.request
        .post('/quick')
        .set({ Prefer: 'respond-async', 'X-Request-Id': id, 'X-Callback-Url': r.url });
      assert.equal(res.status, 202, res.text);
    }
    await eventually(async () => ids.every((id) => r.delivered.has(id)), 180_000);
    assert.ok(r.maxOpen <= CAP, `${r.maxOpen} connections at once`);
    // Each invocation records its callback as delivered, on the first try.
    for (const id of [ids[0], ids[50], ids[99]]) {
      await eventually(async () => {
        const res: { status: number; text: string; body: unknown } = await server.request
          .get(`/_/invocations/${id}`)
          .set({ Authorization: `Bearer ${TOKEN}` });
        return (res.body as { callback?: { status?: string } }).callback?.status === 'delivered';
      }, 30_000);
    }
    for (const id of ids) assert.equal(r.arrivals.get(id)?.length, 1, id);
  });
});
