/**
 * The async queue (src/async/queue): one suite, run against each backend — SQLite in a
 * temporary DATA_DIR, and BullMQ on a real redis-server this file starts on a loopback port
 * (skipped, saying so, when redis-server is not installed). The handler stands in for the pool:
 * these tests are about delivery (states, attempts, retries, limits, stops), not about running
 * functions (test/http/async.test.ts does that through the whole server).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OverloadedError } from '../../src/errors';
import { createAsyncQueue } from '../../src/async/queue';
import type {
  AsyncJob,
  AsyncQueue,
  AttemptOutcome,
  InvocationState,
  NewInvocation,
  QueueOptions,
} from '../../src/async/queue';
import { eventually, sleep } from '../support/wait';
import { REDIS_MISSING, startRedis } from '../support/redis';
import type { TestRedis } from '../support/redis';

let seq = 0;

function invocation(over: Partial<NewInvocation> = {}): NewInvocation {
  seq += 1;
  return {
    id: `inv-${process.pid}-${seq}-${Math.random().toString(36).slice(2, 8)}`,
    fn: 'f',
    eventJson: JSON.stringify({ method: 'POST', n: seq }),
    source: 'request',
    retries: 2,
    maxAgeSeconds: 3600,
    ...over,
  };
}

const ok = (body: string): AttemptOutcome => ({
  kind: 'succeeded',
  response: { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body },
});
const failure = (retry = true): AttemptOutcome => ({
  kind: 'failed',
  error: { status: 500, code: 'FUNCTION_ERROR', message: 'boom', type: 'Error' },
  retry,
});

/** A handler whose behaviour each test sets per invocation id; records every attempt. */
class Harness {
  readonly attempts: (AsyncJob & { at: number })[] = [];
  readonly finished: InvocationState[] = [];
  readonly plans = new Map<string, (job: AsyncJob) => Promise<AttemptOutcome>>();
  running = 0;
  maxRunning = 0;

  worker(concurrency: number) {
    return {
      concurrency,
      run: async (job: AsyncJob) => {
        this.attempts.push({ ...job, at: Date.now() });
        this.running++;
        this.maxRunning = Math.max(this.maxRunning, this.running);
        try {
          const plan = this.plans.get(job.id);
          return plan ? await plan(job) : ok(`done ${job.id}`);
        } finally {
          this.running--;
        }
      },
      finished: (state: InvocationState) => void this.finished.push(state),
    };
  }

  of(id: string): (AsyncJob & { at: number })[] {
    return this.attempts.filter((a) => a.id === id);
  }
}

async function settled(queue: AsyncQueue, id: string, ms = 10_000): Promise<InvocationState> {
  let state: InvocationState | undefined;
  await eventually(async () => {
    state = await queue.get(id);
    return state?.status === 'succeeded' || state?.status === 'failed';
  }, ms);
  return state as InvocationState;
}

function queueSuite(
  name: string,
  options: () => Omit<QueueOptions, 'maxQueued'>,
  skip: string | false = false,
) {
  describe(`async queue: ${name}`, { skip }, () => {
    let queue: AsyncQueue;
    const h = new Harness();
    before(async () => {
      queue = await createAsyncQueue({ ...options(), maxQueued: 1000, retryBaseMs: 50 });
      queue.start(h.worker(3));
    });
    after(() => queue?.close());

    test('reports its backend', () => {
      assert.equal(queue.backend, name);
    });

    test('enqueue → queued at once, then succeeded with the response; attempt 1, same id', async () => {
      const inv = invocation({ callbackUrl: 'http://127.0.0.1:9/cb' });
      const { created, state } = await queue.enqueue(inv);
      assert.equal(created, true);
      assert.equal(state.status, 'queued');
      assert.equal(state.attempts, 0);
      assert.equal(state.requestId, inv.id);
      assert.deepEqual(state.callback, { url: inv.callbackUrl, status: 'pending', attempts: 0 });
      const done = await settled(queue, inv.id);
      assert.equal(done.status, 'succeeded');
      assert.equal(done.attempts, 1);
      assert.deepEqual(done.response, {
        status: 200,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
        body: `done ${inv.id}`,
      });
      const [attempt] = h.of(inv.id);
      assert.equal(attempt.attempt, 1);
      assert.equal(attempt.eventJson, inv.eventJson);
      assert.ok(done.finishedAt && done.startedAt && done.createdAt <= done.startedAt);
      await eventually(async () => h.finished.some((f) => f.requestId === inv.id));
    });

    test('attempts: failing N times then succeeding, per retries (table)', async () => {
      // [fails before success, retries, final status, attempts]
      const rows: [number, number, 'succeeded' | 'failed', number][] = [
        [1, 2, 'succeeded', 2],
        [2, 2, 'succeeded', 3],
        [3, 2, 'failed', 3],
        [1, 0, 'failed', 1],
        [5, 5, 'succeeded', 6],
      ];
      const ids = await Promise.all(
        rows.map(async ([fails, retries]) => {
          const inv = invocation({ retries });
          h.plans.set(inv.id, async (job) => (job.attempt <= fails ? failure() : ok('finally')));
          await queue.enqueue(inv);
          return inv.id;
        }),
      );
      for (const [i, [, , status, attempts]] of rows.entries()) {
        const done = await settled(queue, ids[i], 20_000);
        assert.equal(done.status, status, `row ${i}`);
        assert.equal(done.attempts, attempts, `row ${i}`);
        assert.deepEqual(
          h.of(ids[i]).map((a) => [a.id, a.attempt]),
          Array.from({ length: attempts }, (_, k) => [ids[i], k + 1]),
          `row ${i}: the same id on every attempt, numbered`,
        );
        if (status === 'failed') {
          assert.equal(done.error?.code, 'FUNCTION_ERROR');
          assert.equal(done.response, undefined);
        } else {
          assert.equal(done.response?.body, 'finally');
          assert.equal(done.error, undefined);
        }
      }
    });

    test('retries wait longer each time (at least 50 ms, 100 ms, 200 ms here)', async () => {
      const inv = invocation({ retries: 3 });
      h.plans.set(inv.id, async () => failure());
      await queue.enqueue(inv);
      const done = await settled(queue, inv.id);
      assert.equal(done.attempts, 4);
      const starts = h.of(inv.id).map((a) => a.at);
      const gaps = starts.slice(1).map((at, i) => at - starts[i]);
      // Lower bounds only: a busy machine may start them later, never sooner.
      for (const [i, least] of [50, 100, 200].entries()) {
        assert.ok(gaps[i] >= least - 5, `gap ${i}: ${gaps.join(', ')} ms`);
      }
    });

    test('a failure that cannot be retried fails at once, whatever retries says', async () => {
      const inv = invocation({ retries: 5 });
      h.plans.set(inv.id, async () => failure(false));
      await queue.enqueue(inv);
      const done = await settled(queue, inv.id);
      assert.equal(done.status, 'failed');
      assert.equal(done.attempts, 1);
    });

    test('a retry that would start after maxAgeSeconds is not made', async () => {
      const inv = invocation({ retries: 10, maxAgeSeconds: 1 });
      h.plans.set(inv.id, async () => {
        await sleep(300);
        return failure();
      });
      await queue.enqueue(inv);
      const done = await settled(queue, inv.id);
      assert.equal(done.status, 'failed');
      // 300 ms each, then 50, 100, 200, 400 ms between: the 4th retry would start past 1 s.
      assert.ok(done.attempts >= 2 && done.attempts <= 3, String(done.attempts));
    });

    test('failed ones are listed newest first, by function, bounded by limit', async () => {
      const fns = ['list/a', 'list/b', 'list/a'];
      const ids: string[] = [];
      for (const fn of fns) {
        const inv = invocation({ fn, retries: 0 });
        h.plans.set(inv.id, async () => failure());
        await queue.enqueue(inv);
        await settled(queue, inv.id);
        ids.push(inv.id);
        await sleep(5);
      }
      const all = await queue.list({ status: 'failed', limit: 100 });
      const listed = all.map((s) => s.requestId).filter((id) => ids.includes(id));
      assert.deepEqual(listed, [ids[2], ids[1], ids[0]]);
      assert.ok(all.every((s) => s.status === 'failed'));
      const a = await queue.list({ status: 'failed', fn: 'list/a', limit: 100 });
      assert.deepEqual(
        a.map((s) => s.requestId),
        [ids[2], ids[0]],
      );
      assert.equal((await queue.list({ status: 'failed', fn: 'list/a', limit: 1 })).length, 1);
      const succeeded = await queue.list({ status: 'succeeded', limit: 1000 });
      assert.ok(succeeded.length > 0 && succeeded.every((s) => s.status === 'succeeded'));
      assert.deepEqual(await queue.list({ status: 'failed', fn: 'list/none', limit: 10 }), []);
    });

    test('an id the queue knows is not queued again', async () => {
      const inv = invocation();
      assert.equal((await queue.enqueue(inv)).created, true);
      const again = await queue.enqueue({ ...inv, eventJson: '{"other":true}' });
      assert.equal(again.created, false);
      assert.equal(again.state.requestId, inv.id);
      await settled(queue, inv.id);
      assert.equal((await queue.enqueue(inv)).created, false);
      await sleep(200);
      assert.equal(h.of(inv.id).length, 1);
      assert.equal(h.of(inv.id)[0].eventJson, inv.eventJson);
    });

    test('at most `concurrency` attempts run at once', async () => {
      h.maxRunning = 0;
      const invs = Array.from({ length: 9 }, () => invocation());
      for (const inv of invs) {
        h.plans.set(inv.id, async () => {
          await sleep(100);
          return ok('slow');
        });
        await queue.enqueue(inv);
      }
      for (const inv of invs) await settled(queue, inv.id);
      assert.equal(h.maxRunning, 3);
    });

    test('a released attempt is not counted and runs again', async () => {
      const inv = invocation({ retries: 0 });
      let released = false;
      h.plans.set(inv.id, async () => {
        if (!released) {
          released = true;
          return { kind: 'released' };
        }
        return ok('second delivery');
      });
      await queue.enqueue(inv);
      const done = await settled(queue, inv.id);
      assert.equal(done.status, 'succeeded');
      assert.equal(done.attempts, 1);
      assert.deepEqual(
        h.of(inv.id).map((a) => a.attempt),
        [1, 1],
      );
    });

    test('unknown ids: get is undefined; setCallback records a callback', async () => {
      assert.equal(await queue.get('no-such-invocation'), undefined);
      const inv = invocation({ callbackUrl: 'http://127.0.0.1:9/x' });
      await queue.enqueue(inv);
      await settled(queue, inv.id);
      const callback = {
        url: 'http://127.0.0.1:9/x',
        status: 'delivered' as const,
        attempts: 2,
        lastStatus: 204,
        deliveredAt: new Date().toISOString(),
      };
      await queue.setCallback(inv.id, callback);
      assert.deepEqual((await queue.get(inv.id))?.callback, callback);
    });
  });

  describe(`async queue: ${name}: limits and restarts`, { skip }, () => {
    test('a full queue refuses with OVERLOADED and Retry-After; room comes back', async () => {
      const queue = await createAsyncQueue({ ...options(), maxQueued: 3 });
      try {
        // Nothing runs (not started): queued ones stay.
        const invs = Array.from({ length: 3 }, () => invocation());
        for (const inv of invs) await queue.enqueue(inv);
        assert.equal(await queue.depth(), 3);
        for (let i = 0; i < 3; i++) {
          await assert.rejects(queue.enqueue(invocation()), (err: unknown) => {
            assert.ok(err instanceof OverloadedError);
            assert.equal(err.statusCode, 503);
            assert.match(err.message, /MAX_ASYNC_QUEUE/);
            assert.ok(Number(err.headers?.['Retry-After']) > 0);
            return true;
          });
        }
        // A known id is answered, full or not.
        assert.equal((await queue.enqueue(invs[0])).created, false);
        const h = new Harness();
        queue.start(h.worker(2));
        for (const inv of invs) await settled(queue, inv.id);
        assert.equal(await queue.depth(), 0);
        const more = invocation();
        assert.equal((await queue.enqueue(more)).created, true);
        await settled(queue, more.id);
      } finally {
        await queue.close();
      }
    });

    test('queued and interrupted invocations survive a stop and a new queue runs them', async () => {
      const first = await createAsyncQueue({ ...options(), maxQueued: 100 });
      const h1 = new Harness();
      const invs = Array.from({ length: 12 }, () => invocation({ retries: 0 }));
      let stopping = false;
      for (const inv of invs) {
        // Running ones are interrupted by the stop (as the pool's close ends them): released.
        h1.plans.set(inv.id, async () => {
          while (!stopping) await sleep(10);
          return { kind: 'released' };
        });
        await first.enqueue(inv);
      }
      first.start(h1.worker(2));
      await eventually(async () => h1.running === 2);
      const stopped = first.stop();
      stopping = true;
      await stopped;
      await first.close();
      assert.equal(h1.attempts.length, 2, 'only the two running ones had started');

      const second = await createAsyncQueue({ ...options(), maxQueued: 100 });
      const h2 = new Harness();
      second.start(h2.worker(4));
      try {
        for (const inv of invs) {
          const done = await settled(second, inv.id, 20_000);
          assert.equal(done.status, 'succeeded');
          // Released attempts do not count: retries 0 and still one attempt.
          assert.equal(done.attempts, 1);
        }
        assert.equal(h2.attempts.length, invs.length);
      } finally {
        await second.close();
      }
    });

    test('an invocation older than maxAgeSeconds when taken is not started', async () => {
      const queue = await createAsyncQueue({ ...options(), maxQueued: 100 });
      const h = new Harness();
      try {
        const inv = invocation({ maxAgeSeconds: 1 });
        await queue.enqueue(inv);
        await sleep(1100);
        queue.start(h.worker(1));
        const done = await settled(queue, inv.id);
        assert.equal(done.status, 'failed');
        assert.equal(done.error?.code, 'INVOCATION_EXPIRED');
        assert.equal(done.error?.status, 504);
        assert.equal(h.of(inv.id).length, 0, 'the handler never ran it');
      } finally {
        await queue.close();
      }
    });
  });
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-queue-'));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
queueSuite('sqlite', () => ({ dataDir }));

let redis: TestRedis | undefined;
if (!REDIS_MISSING) {
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis?.close());
}
queueSuite('redis', () => ({ dataDir, redisUrl: (redis as TestRedis).url }), REDIS_MISSING);
