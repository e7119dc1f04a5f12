/**
 * Callback delivery (src/async/callbacks.ts, docs/spec.md §9): the real CallbackSender, the real
 * egress policy and outbound fetch, to real HTTP receivers on 127.0.0.1 that count the
 * connections they hold at once. Per receiver (URL origin) at most `perOrigin` tries are in
 * flight; the rest wait their turn, none dropped silently; retry delays have full jitter.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  CALLBACK_PER_ORIGIN,
  CALLBACK_DELAYS_MS,
  CallbackSender,
  jitteredDelayMs,
} from '../../src/async/callbacks';
import type { CallbackParts } from '../../src/async/callbacks';
import { createEgressPolicy, parseEgressAllow } from '../../src/services/egress';
import type { CallbackState, InvocationState } from '../../src/async/queue/async-queue';
import { createLogger } from '../../src/observe/logger';
import { eventually } from '../support/wait';
import { startReceiver, stopReceiver } from './callback-receiver';
import type { Receiver } from './callback-receiver';

describe('jitteredDelayMs (full jitter)', () => {
  test('stays in [0, ceiling) for the extremes of random', () => {
    for (const ceiling of [0, 1, 1000, 5000, 25_000]) {
      assert.equal(
        jitteredDelayMs(ceiling, () => 0),
        0,
      );
      const top = jitteredDelayMs(ceiling, () => 0.999_999_999);
      assert.equal(top, Math.max(0, ceiling - 1), `ceiling ${ceiling}`);
      // A random source that (wrongly) returns 1 still stays below the ceiling.
      assert.ok(jitteredDelayMs(ceiling, () => 1) <= Math.max(0, ceiling - 1));
      assert.equal(
        jitteredDelayMs(ceiling, () => 0.5),
        Math.floor(ceiling / 2),
      );
    }
  });

  test('is uniform over [0, ceiling): mean, deciles, spread', () => {
    for (const ceiling of CALLBACK_DELAYS_MS) {
      const n = 20_000;
      const samples = Array.from({ length: n }, () => jitteredDelayMs(ceiling));
      for (const d of samples) {
        assert.ok(Number.isInteger(d) && d >= 0 && d < ceiling, `${d} of ${ceiling}`);
      }
      const mean = samples.reduce((a, b) => a + b, 0) / n;
      // The mean of U[0, c) is c/2; its standard error here is about 0.2 % of c.
      assert.ok(Math.abs(mean - ceiling / 2) < ceiling * 0.02, `mean ${mean} of ${ceiling}`);
      const deciles = new Array<number>(10).fill(0);
      for (const d of samples) deciles[Math.floor((d / ceiling) * 10)]++;
      for (const count of deciles) {
        // Each decile expects 2000 (sd ≈ 42): 1700–2300 is over 7 standard deviations wide.
        assert.ok(count > 1700 && count < 2300, `deciles ${deciles.join(',')} of ${ceiling}`);
      }
      assert.ok(new Set(samples).size > ceiling * 0.5, 'many distinct delays');
    }
  });
});

/** A finished invocation whose callback goes to `url`. */
function finished(id: string, url: string): InvocationState {
  return {
    requestId: id,
    function: 'hooked',
    status: 'succeeded',
    source: 'request',
    attempts: 1,
    retries: 0,
    maxAgeSeconds: 3600,
    createdAt: new Date().toISOString(),
    response: { status: 200, headers: { 'content-type': 'text/plain' }, body: id },
    callback: { url, status: 'pending', attempts: 0 },
  };
}

/** A sender whose records land in `records` (the last one per id). */
function sender(
  records: Map<string, CallbackState>,
  extra: Partial<CallbackParts> = {},
): CallbackSender {
  return new CallbackSender({
    policy: createEgressPolicy({
      mode: 'on',
      allow: parseEgressAllow(['127.0.0.1']),
      localAddresses: [],
    }),
    maxBytes: 1024 * 1024,
    logger: createLogger({ level: 'silent' }),
    record: async (id, state) => {
      records.set(id, { ...state });
    },
    ...extra,
  });
}

const ids = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}`);

describe('CallbackSender: per-receiver limit', () => {
  let a: Receiver | undefined;
  let b: Receiver | undefined;
  const senders: CallbackSender[] = [];
  before(async () => {
    a = await startReceiver(40);
    b = await startReceiver(0);
  });
  after(async () => {
    for (const s of senders) s.close();
    await stopReceiver(a);
    await stopReceiver(b);
  });

  test(`100 callbacks to one receiver: at most ${CALLBACK_PER_ORIGIN} connections at once, all delivered`, async () => {
    assert.ok(a);
    const records = new Map<string, CallbackState>();
    const s = sender(records, { timeoutMs: 60_000 });
    senders.push(s);
    const all = ids(100, 'cap');
    for (const id of all) s.deliver(finished(id, a.url));
    await eventually(async () => a?.delivered.size === 100, 120_000);
    // The receiver counts a body before the sender records the try: wait for all 100 records.
    await eventually(
      async () =>
        records.size === 100 && [...records.values()].every((r) => r.status === 'delivered'),
    );
    assert.equal(records.size, 100);
    for (const id of all) {
      assert.equal(records.get(id)?.status, 'delivered', id);
      assert.equal(records.get(id)?.attempts, 1, `${id}: delivered on its first try`);
    }
    assert.ok(a.maxOpen <= CALLBACK_PER_ORIGIN, `${a.maxOpen} connections at once`);
    assert.ok(a.maxOpen > 1, `tries ran side by side (${a.maxOpen} at most)`);
  });

  test('the limit is per receiver: a busy one does not hold up another', async () => {
    assert.ok(a && b);
    const records = new Map<string, CallbackState>();
    const slow = await startReceiver(60_000);
    try {
      const s = sender(records, { perOrigin: 2, timeoutMs: 60_000 });
      senders.push(s);
      // The slow receiver's two turns are taken for a minute; its third try waits.
      for (const id of ids(3, 'stuck')) s.deliver(finished(id, slow.url));
      for (const id of ids(5, 'free')) s.deliver(finished(id, b.url));
      await eventually(async () => ids(5, 'free').every((id) => b?.delivered.has(id)), 30_000);
      await eventually(async () => slow.arrivals.size === 2, 30_000);
      assert.equal(slow.maxOpen, 2);
      assert.equal(records.get('stuck-002'), undefined, 'the third waits for a turn, not tried');
      s.close();
    } finally {
      await stopReceiver(slow);
    }
  });

  test('past the waiting bound a try fails at once, recorded with why, never silently', async () => {
    assert.ok(a);
    const records = new Map<string, CallbackState>();
    const slow = await startReceiver(300);
    try {
      const s = sender(records, { perOrigin: 1, waiting: 3, delaysMs: [], timeoutMs: 60_000 });
      senders.push(s);
      const all = ids(10, 'over');
      for (const id of all) s.deliver(finished(id, slow.url));
      await eventually(async () => records.size === 10 && slow.delivered.size === 4, 30_000);
      const origin = new URL(slow.url).origin;
      for (const id of all.slice(0, 4)) assert.equal(records.get(id)?.status, 'delivered', id);
      for (const id of all.slice(4)) {
        assert.deepEqual(records.get(id), {
          url: slow.url,
          status: 'failed',
          attempts: 1,
          lastError: `not sent: 3 callbacks to ${origin} were already waiting for a turn`,
        });
      }
      assert.equal(slow.maxOpen, 1);
    } finally {
      await stopReceiver(slow);
    }
  });
});

describe('CallbackSender: retries with jitter', () => {
  let r: Receiver | undefined;
  after(() => stopReceiver(r));

  test('failed callbacks come back spread over the delay, not as one wave', async () => {
    // Every first try is answered 500, every second one 200.
    r = await startReceiver(0, (_id, attempt) => (attempt === 1 ? 500 : 200));
    const records = new Map<string, CallbackState>();
    const s = sender(records, { delaysMs: [2000], perOrigin: 100, timeoutMs: 60_000 });
    const all = ids(30, 'jitter');
    for (const id of all) s.deliver(finished(id, r.url));
    await eventually(async () => r?.delivered.size === 30, 60_000);
    // The receiver counts a body before the sender records the try: wait for the 30 records.
    await eventually(async () => all.every((id) => records.get(id)?.status === 'delivered'));
    s.close();
    const gaps = all.map((id) => {
      const [first, second] = r?.arrivals.get(id) ?? [];
      return second - first;
    });
    for (const id of all) assert.equal(records.get(id)?.attempts, 2, id);
    // Fixed delays: every gap would be 2000 ms plus the same small overhead. Uniform ones over
    // [0, 2000): the chance that 30 of them fall within 500 ms of each other is below 1e-15.
    const spread = Math.max(...gaps) - Math.min(...gaps);
    assert.ok(spread > 500, `gaps ${gaps.join(', ')} ms`);
  });
});
