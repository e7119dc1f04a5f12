/**
 * Blast radius (docs/spec.md §3 "At most once, unless it cannot matter"), against real workers: a broken
 * function never costs another function its answer. Memory bombs and blocked event loops next to
 * 20 healthy calls, kills from outside, an effectful call on a killed worker, a synchronous loop's
 * neighbours, quarantine (alone, its own queue, lifted by clean runs or a new version), and the
 * bulkheads (maxConcurrency, a fair share of the queue).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { startServer } from '../support/server';
import { eventually, sleep } from '../support/wait';
import type { TestServer } from '../support/server';

const SLEEP = 'const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));\n';

const FUNCTIONS: Record<string, string> = {
  slow: `${SLEEP}module.exports = async (event, context) => {
    await sleep(Number(event.query.ms || 600));
    console.log('ran ' + context.requestId);
    return { id: context.requestId, n: Number(event.query.n) };
  };`,
  // Allocates until its 64 MB heap is gone (V8 aborts the worker).
  bomb: `module.exports = () => { const keep = []; for (;;) keep.push(new Array(1e6).fill(1)); };`,
  // Leaves an endless microtask chain and never settles: its worker's event loop is blocked.
  microloop: `module.exports = async () => {
    const loop = () => Promise.resolve().then(loop);
    loop();
    await new Promise(() => {});
  };`,
  syncloop: `module.exports = () => { for (;;) {} };`,
  // An effect outside the sandbox (a KV write), then a wait: it must never run twice.
  kvwrite: `${SLEEP}module.exports = async (event, context) => {
    if (event.query.read) return { runs: await context.kv.get('runs:' + event.query.read) };
    const runs = await context.kv.incr('runs:' + context.requestId);
    console.log('wrote ' + context.requestId);
    await sleep(Number(event.query.ms || 600));
    return { runs };
  };`,
  // Two timer waits inside a 700 ms timeout: a neighbour's loop that holds the worker past its
  // deadline leaves it no time for the second.
  twostep: `${SLEEP}module.exports = async (event, context) => {
    await sleep(300);
    await sleep(300);
    return { id: context.requestId };
  };
  module.exports.config = { timeoutMs: 700 };`,
  'twostep-kv': `${SLEEP}module.exports = async (event, context) => {
    if (event.query.read) return { runs: await context.kv.get('runs:' + event.query.read) };
    const runs = await context.kv.incr('runs:' + context.requestId);
    await sleep(300);
    await sleep(300);
    return { runs };
  };
  module.exports.config = { timeoutMs: 700 };`,
  limited: `${SLEEP}module.exports = async () => { await sleep(400); return 'done'; };
  module.exports.config = { maxConcurrency: 2 };`,
  // Breaks its worker when asked to (?bomb=1), runs cleanly otherwise.
  flaky: `${SLEEP}module.exports = async (event) => {
    if (event.query.bomb) { const keep = []; for (;;) keep.push(new Array(1e6).fill(1)); }
    await sleep(Number(event.query.ms || 10));
    return 'clean';
  };`,
};

let t: TestServer;

/** GET with a request id; the response (supertest sends on then()). */
function get(path: string, id: string) {
  return t.request
    .get(path)
    .set('X-Request-Id', id)
    .then((res) => res);
}

function consoleLines(reqId: string, text: string) {
  return t.logs.filter(
    (l) => l.msg === 'function console' && l.reqId === reqId && String(l.console).startsWith(text),
  );
}

/** The pool's live shared worker processes. */
const sharedPids = () => t.server.pool.pids('shared');

before(async () => {
  t = await startServer({
    functions: FUNCTIONS,
    env: { WORKERS: '2', FUNCTION_TIMEOUT_MS: '1000', WORKER_MEMORY_MB: '64' },
  });
  // Load every version first: the timings below are the invocations' own.
  await Promise.all(Object.keys(FUNCTIONS).map((name) => t.server.store.get(name)));
});
after(() => t.close());

// Every test starts from a full pool.
beforeEach(() => eventually(async () => t.server.pool.stats().workers === 2, 5000));

/**
 * 20 healthy calls spread over both workers, then `hostile` lands among them: every healthy one
 * must answer 200 with its own body, exactly once.
 */
async function twentyAnd(hostile: string, tag: string) {
  const ids = Array.from({ length: 20 }, (_, i) => `${tag}-${i}-${Date.now()}`);
  const healthy = ids.map((id, n) => get(`/slow?ms=600&n=${n}`, id));
  await sleep(150);
  const culprit = await get(`/${hostile}`, `${tag}-culprit-${Date.now()}`);
  const answers = await Promise.all(healthy);
  const report = answers.map((res, i) => `${i}:${res.status}`).join(' ');
  answers.forEach((res, n) => {
    assert.equal(res.status, 200, `${ids[n]}: ${res.text} (${report})`);
    assert.deepEqual(res.body, { id: ids[n], n });
    assert.equal(consoleLines(ids[n], 'ran ').length, 1, `${ids[n]} answered once`);
  });
  const rerun = ids.filter((id) => t.server.records.get(id)?.reruns === 1);
  return { culprit, rerun };
}

void describe('a broken neighbour costs healthy calls nothing', () => {
  void test('a memory bomb among 20 slow healthy calls: all 20 answer 200; the bomb 502, quarantined', async () => {
    const { culprit, rerun } = await twentyAnd('bomb', 'mem');
    assert.equal(culprit.status, 502, culprit.text);
    assert.equal(culprit.body.error.code, 'WORKER_CRASHED');
    assert.match(culprit.body.error.message, /out of memory.*quarantined/);
    // The healthy calls that shared its worker ran again, alone, and said so in their records.
    assert.ok(rerun.length >= 1, 'no healthy call shared the bomb’s worker');
    for (const id of rerun) assert.equal(t.server.records.get(id)?.solo, true);
    const entry = t.server.pool.quarantineOf('bomb');
    assert.equal(entry?.strikes, 1);
    const listed = await t.request.get('/_/functions');
    const bomb = (listed.body.functions as { name: string; quarantined: boolean }[]).find(
      (fn) => fn.name === 'bomb',
    );
    assert.equal(bomb?.quarantined, true);
  });

  void test('an endless microtask chain among 20 slow healthy calls: all 20 answer 200; it 504 (or 502), quarantined', async () => {
    const { culprit } = await twentyAnd('microloop', 'micro');
    // Its chain of pending promises also grows without end: on a fast machine it fills the 64 MB
    // heap before the pool hears the silence of the blocked loop. Either way it is the culprit,
    // alone: 504 for the blocked loop, or 502 for the memory it took.
    if (culprit.status === 502) {
      assert.equal(culprit.body.error.code, 'WORKER_CRASHED');
      assert.match(culprit.body.error.message, /'microloop'.*out of memory.*alone.*quarantined/);
    } else {
      assert.equal(culprit.status, 504, culprit.text);
      assert.equal(culprit.body.error.code, 'FUNCTION_TIMEOUT');
      assert.match(culprit.body.error.message, /event loop.*quarantined/);
    }
    assert.equal(t.server.pool.quarantineOf('microloop')?.strikes, 1);
  });

  void test('a quarantined function never shares a worker again: its calls run alone, the shared workers live on', async () => {
    await eventually(async () => t.server.pool.quarantineOf('bomb') !== undefined);
    const pids = sharedPids();
    const restarts = t.server.pool.stats().restarts;
    const ids = Array.from({ length: 8 }, (_, i) => `after-${i}-${Date.now()}`);
    const healthy = ids.map((id, n) => get(`/slow?ms=300&n=${n}`, id));
    const bombs = await Promise.all([
      get('/bomb', `b1-${Date.now()}`),
      get('/bomb', `b2-${Date.now()}`),
    ]);
    for (const res of bombs) {
      assert.equal(res.status, 502, res.text);
      const record = t.server.records.get(String(res.headers['x-request-id']));
      assert.equal(record?.solo, true);
      assert.equal(record?.reruns, undefined);
    }
    for (const res of await Promise.all(healthy)) assert.equal(res.status, 200);
    // No shared worker died: the bombs only ever took solo workers down.
    assert.deepEqual(sharedPids(), pids);
    assert.equal(t.server.pool.stats().restarts, restarts);
    assert.equal(t.server.pool.quarantineOf('bomb')?.strikes, 3);
  });

  void test('a kill from outside costs no effect-free call its answer, and blames no one', async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `kill-${i}-${Date.now()}`);
    const calls = ids.map((id, n) => get(`/slow?ms=500&n=${n}`, id));
    await sleep(200);
    for (const pid of sharedPids()) process.kill(pid, 'SIGKILL');
    const answers = await Promise.all(calls);
    answers.forEach((res, n) => {
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, { id: ids[n], n });
      assert.equal(t.server.records.get(ids[n])?.reruns, 1);
    });
    assert.equal(t.server.pool.quarantineOf('slow'), undefined);
  });

  void test('an effectful call on a killed worker answers 502 and never runs twice; its effect-free neighbour 200', async () => {
    const id = `eff-${Date.now()}`;
    const neighbour = `eff-neighbour-${Date.now()}`;
    const calls = [get('/kvwrite?ms=600', id), get('/slow?ms=600&n=1', neighbour)];
    await sleep(250);
    for (const pid of sharedPids()) process.kill(pid, 'SIGKILL');
    const [effectful, free] = await Promise.all(calls);
    assert.equal(effectful.status, 502, effectful.text);
    assert.equal(effectful.body.error.code, 'WORKER_CRASHED');
    assert.equal(free.status, 200, free.text);
    // Wait past when a second run would have written, then count the writes.
    await sleep(800);
    const runs = await get(`/kvwrite?read=${id}`, `read-${id}`);
    assert.deepEqual(runs.body, { runs: 1 });
    assert.equal(consoleLines(id, 'wrote ').length, 0, 'the killed run’s console died with it');
    assert.equal(t.server.records.get(id)?.effects, true);
  });
});

void describe('the neighbours of a synchronous loop', () => {
  // Each neighbour needs 600 ms of its 700; the loop holds one worker for 1000 ms. The neighbours on
  // that worker see their deadline pass inside the loop's block: they get the time they lost back,
  // and answer as if nothing had happened, effectful ones included (nothing runs twice).
  void test('are not charged its timeout: they get their lost time back and answer 200, effectful ones too', async () => {
    const stamp = Date.now();
    const free = Array.from({ length: 8 }, (_, i) => `two-${i}-${stamp}`);
    const effectful = Array.from({ length: 4 }, (_, i) => `two-kv-${i}-${stamp}`);
    const calls = [
      ...free.map((id) => get('/twostep', id)),
      ...effectful.map((id) => get('/twostep-kv', id)),
    ];
    await sleep(100);
    const loop = await get('/syncloop', `loop-${stamp}`);
    const answers = await Promise.all(calls);
    assert.equal(loop.status, 504, loop.text);
    // The watchdog stopped it: it names itself, and is quarantined at once.
    assert.equal(t.server.pool.quarantineOf('syncloop')?.strikes, 1);

    answers.slice(0, free.length).forEach((res, i) => {
      assert.equal(res.status, 200, `${free[i]}: ${res.text}`);
      assert.deepEqual(res.body, { id: free[i] });
    });
    for (const [i, res] of answers.slice(free.length).entries()) {
      assert.equal(res.status, 200, `${effectful[i]}: ${res.text}`);
      assert.deepEqual(res.body, { runs: 1 });
      const runs = await get(`/twostep-kv?read=${effectful[i]}`, `read-${effectful[i]}`);
      assert.deepEqual(runs.body, { runs: 1 });
    }
    // Some of them shared the loop's worker: past their 700 ms, answered 200, never run again.
    const ids = [...free, ...effectful];
    const late = ids.filter((id) => (t.server.records.get(id)?.durationMs.total ?? 0) > 1000);
    assert.ok(late.length >= 1, 'no neighbour shared the loop’s worker');
    for (const id of ids) assert.equal(t.server.records.get(id)?.reruns, undefined, id);
  });
});

void describe('quarantine', () => {
  void test('a quarantined function waits its turn in a queue of its own: past it, 429 for it alone', async () => {
    const stamp = Date.now();
    await get('/flaky?bomb=1', `flaky-bomb-${stamp}`);
    await eventually(async () => t.server.pool.quarantineOf('flaky') !== undefined);
    // Ten wait (one more runs, when a solo worker is up already), the rest are refused; another
    // function is not affected.
    const calls = Array.from({ length: 14 }, (_, i) =>
      get('/flaky?ms=100', `flaky-q-${i}-${stamp}`),
    );
    const other = await get('/slow?ms=10&n=0', `other-${stamp}`);
    assert.equal(other.status, 200);
    const answers = await Promise.all(calls);
    const statuses = answers.map((res) => res.status);
    const ran = statuses.filter((s) => s === 200).length;
    assert.ok(ran === 10 || ran === 11, statuses.join(' '));
    assert.equal(statuses.filter((s) => s === 429).length, 14 - ran, statuses.join(' '));
    for (const res of answers.filter((r) => r.status === 429)) {
      assert.equal(res.body.error.code, 'TOO_MANY_REQUESTS');
      assert.equal(res.headers['retry-after'], '1');
      assert.match(res.body.error.message, /quarantined/);
    }
    // Five clean runs in a row lifted it: flaky runs on the shared workers again.
    await eventually(async () => t.server.pool.quarantineOf('flaky') === undefined);
    const back = await get('/flaky', `flaky-back-${stamp}`);
    assert.equal(back.status, 200);
    assert.equal(t.server.records.get(`flaky-back-${stamp}`)?.solo, undefined);
    const metrics = await t.request.get('/_/metrics');
    assert.match(metrics.text, /faas_quarantine_events_total\{event="lifted"\} [1-9]/);
    assert.match(metrics.text, /faas_reruns_total\{reason="suspect"\} [1-9]/);
  });

  void test('a quarantined call that waits past the solo allowance: 503 saying how long and why', async () => {
    const stamp = Date.now();
    await get('/flaky?bomb=1', `flaky-bomb2-${stamp}`);
    await eventually(async () => t.server.pool.quarantineOf('flaky') !== undefined);
    // One at a time, 900 ms each: the allowance (6 × 1000 ms) ends before the tenth starts.
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => get('/flaky?ms=900', `flaky-wait-${i}-${stamp}`)),
    );
    const expired = answers.filter((res) => res.status === 503);
    assert.ok(expired.length >= 1, answers.map((res) => res.status).join(' '));
    for (const res of expired) {
      assert.equal(res.body.error.code, 'OVERLOADED');
      assert.equal(res.headers['retry-after'], '1');
      assert.equal(
        res.body.error.message,
        "no solo worker was free within 6000 ms: function 'flaky' is quarantined and runs one invocation at a time",
      );
    }
    await eventually(async () => t.server.pool.quarantineOf('flaky') === undefined, 10_000);
  });

  void test('a new version of a quarantined function is not quarantined', async () => {
    assert.ok(t.server.pool.quarantineOf('syncloop'));
    await t.writeFunction('syncloop', 'module.exports = () => "fixed";');
    await eventually(async () => (await t.request.get('/syncloop')).text === 'fixed');
    assert.equal(t.server.pool.quarantineOf('syncloop'), undefined);
  });
});

void describe('bulkheads', () => {
  void test('config.maxConcurrency: past it, 429 TOO_MANY_REQUESTS with Retry-After', async () => {
    const stamp = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 5 }, (_, i) => get('/limited', `lim-${i}-${stamp}`)),
    );
    const statuses = answers.map((res) => res.status).sort();
    assert.deepEqual(statuses, [200, 200, 429, 429, 429]);
    for (const res of answers.filter((r) => r.status === 429)) {
      assert.equal(res.body.error.code, 'TOO_MANY_REQUESTS');
      assert.equal(res.headers['retry-after'], '1');
      assert.match(res.body.error.message, /maxConcurrency: 2/);
    }
    // The slots come back.
    const later = await Promise.all([
      get('/limited', `lim-a-${stamp}`),
      get('/limited', `lim-b-${stamp}`),
    ]);
    assert.deepEqual(
      later.map((res) => res.status),
      [200, 200],
    );
  });

  void test('config.maxConcurrency is validated: a bad value is a compile error naming the key', async () => {
    for (const bad of ['0', '1.5', '"2"', '-1', '1e9']) {
      await t.writeFunction(
        'badlimit',
        `module.exports = () => 1;\nmodule.exports.config = { maxConcurrency: ${bad} };`,
      );
      const res = await t.request.get('/badlimit');
      assert.equal(res.status, 500, `${bad}: ${res.text}`);
      assert.equal(res.body.error.code, 'FUNCTION_COMPILE_ERROR');
      assert.match(res.body.error.message, /config\.maxConcurrency must be a whole number from 1/);
    }
  });
});

void describe('a fair share of the queue', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({
      functions: { flood: FUNCTIONS.slow, other: FUNCTIONS.slow },
      env: { WORKERS: '2', MAX_QUEUE: '8' },
    });
    await Promise.all([s.server.store.get('flood'), s.server.store.get('other')]);
  });
  after(() => s.close());

  void test('one function flooding the pool holds at most half the queue; another still gets in', async () => {
    await eventually(async () => s.server.pool.stats().workers === 2, 5000);
    // 64 run (32 per worker), 4 wait (half of MAX_QUEUE=8), the last 2 are refused.
    const flood = Array.from({ length: 70 }, (_, n) =>
      s.request.get(`/flood?ms=800&n=${n}`).then((res) => res),
    );
    await eventually(async () => s.server.pool.stats().queued === 4, 5000);
    const other = await s.request.get('/other?ms=10&n=7');
    assert.equal(other.status, 200, other.text);
    const answers = await Promise.all(flood);
    const refused = answers.filter((res) => res.status === 429);
    assert.equal(refused.length, 2, answers.map((r) => r.status).join(' '));
    for (const res of refused)
      assert.match(res.body.error.message, /fair share of the queue: 4 of 8/);
    assert.equal(answers.filter((res) => res.status === 200).length, 68);
  });
});

void describe('memory a neighbour keeps', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({
      functions: {
        // Legal but greedy: its warm context keeps 28 MB (under half the heap, so no eviction).
        hoard: `let keep; module.exports = async () => { keep ??= new Array(3.5e6).fill(1.5); await new Promise((r) => setTimeout(r, 200)); return keep.length; };`,
        // Healthy: 40 MB for the length of one call (fits a worker alone), then garbage.
        alloc: `module.exports = () => new Array(5e6).fill(2.5).length;`,
        // The same, effectful first: it cannot run again.
        'alloc-kv': `module.exports = async (e, c) => { await c.kv.incr('n'); return new Array(5e6).fill(2.5).length; };`,
      },
      env: { WORKERS: '2', FUNCTION_TIMEOUT_MS: '2000', WORKER_MEMORY_MB: '64' },
    });
  });
  after(() => s.close());

  void test('does not make the call that meets the limit a culprit: it runs again alone, or answers 502 unquarantined', async () => {
    const restarts = s.server.pool.stats().restarts;
    const answers: Record<string, number[]> = { alloc: [], 'alloc-kv': [] };
    // Until a worker has run out of memory (else this test proves nothing): hoards at once fill
    // both workers, then the allocation, alone in flight, meets the limit.
    for (let round = 0; round < 40 && s.server.pool.stats().restarts < restarts + 1; round++) {
      const name = round % 2 === 0 ? 'alloc' : 'alloc-kv';
      const hoards = await Promise.all([1, 2, 3, 4].map(() => s.request.get('/hoard')));
      for (const res of hoards) assert.equal(res.status, 200, res.text);
      const res = await s.request.get(`/${name}`);
      answers[name].push(res.status);
      if (res.status !== 200) {
        assert.equal(name, 'alloc-kv', `${name}: ${res.text}`);
        assert.equal(res.status, 502, res.text);
        assert.doesNotMatch(res.body.error.message, /quarantined/);
      }
      assert.equal(s.server.pool.quarantineOf(name), undefined, JSON.stringify(answers));
    }
    assert.ok(
      answers.alloc.every((status) => status === 200),
      JSON.stringify(answers),
    );
    assert.ok(s.server.pool.stats().restarts > restarts, JSON.stringify(answers));
  });
});
