/**
 * GET /_/metrics against the real server: valid Prometheus text, counters that move by exactly
 * what was invoked, worker restarts after a kill, and bounded labels (and memory) under a flood
 * of names that are not functions.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { closeAndReap, startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  samples: Sample[];
  help: Map<string, string>;
  types: Map<string, string>;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?[ \\t]+(\\S+)(?:[ \\t]+-?\\d+)?$`);
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"\s*(,|$)/y;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** A sample value; like Prometheus (Go's ParseFloat), NaN and Inf in any case (prom-client writes `Nan`). */
function parseValue(text: string, line: string): number {
  if (/^\+?inf(inity)?$/i.test(text)) return Infinity;
  if (/^-inf(inity)?$/i.test(text)) return -Infinity;
  if (/^nan$/i.test(text)) return NaN;
  assert.match(text, /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, `bad value in: ${line}`);
  return Number(text);
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  let at = 0;
  while (at < text.length) {
    LABEL.lastIndex = at;
    const match = LABEL.exec(text);
    assert.ok(match, `bad labels in: ${line}`);
    assert.ok(!(match[1] in labels), `repeated label in: ${line}`);
    labels[match[1]] = match[2].replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    at = LABEL.lastIndex;
  }
  return labels;
}

/** A strict parser of the Prometheus text format (0.0.4): every line must be understood. */
function parseExposition(text: string): Exposition {
  const out: Exposition = { samples: [], help: new Map(), types: new Map() };
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (!meta) {
        assert.ok(!/^# (HELP|TYPE)\b/.test(line), `bad comment: ${line}`);
        continue;
      }
      assert.match(meta[2], new RegExp(`^${NAME}$`), line);
      if (meta[1] === 'TYPE') {
        assert.ok(TYPES.has(meta[3]), `bad type: ${line}`);
        assert.ok(!out.types.has(meta[2]), `TYPE twice: ${line}`);
        out.types.set(meta[2], meta[3]);
      } else {
        out.help.set(meta[2], meta[3]);
      }
      continue;
    }
    const match = SAMPLE.exec(line);
    assert.ok(match, `not a sample line: ${JSON.stringify(line)}`);
    out.samples.push({
      name: match[1],
      labels: match[2] === undefined ? {} : parseLabels(match[2], line),
      value: parseValue(match[3], line),
    });
  }
  return out;
}

/** The family a sample belongs to: its own name, or a histogram's/summary's base name. */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count|total|created)$/, '');
  return types.has(base) ? base : undefined;
}

function value(exp: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = exp.samples.filter(
    (s) =>
      s.name === name &&
      Object.keys(labels).every((k) => s.labels[k] === labels[k]) &&
      Object.keys(s.labels).length === Object.keys(labels).length,
  );
  assert.ok(found.length <= 1, `${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

const versionOf = (source: string) =>
  createHash('sha256').update(source).digest('hex').slice(0, 16);

const FUNCTIONS: Record<string, string> = {
  hello: "(event, context) => {\n  return { message: 'it works!', status: 'ok' };\n};\n",
  timed: "() => 'timed';\n",
  cold: "() => 'cold';\n",
  throws: "() => { throw new Error('nope'); };\n",
  loop: '() => { while (1) {} };\n',
  microtasks: '() => { const loop = () => Promise.resolve().then(loop); loop(); };\n',
};

let t: TestServer;
before(async () => {
  t = await startServer({ functions: FUNCTIONS });
});
after(async () => {
  assert.deepEqual(await closeAndReap(t), [], 'worker processes left running after close()');
});

async function scrape(): Promise<Exposition> {
  const res = await t.request.get('/_/metrics');
  assert.equal(res.status, 200);
  return parseExposition(res.text);
}

test('GET /_/metrics is valid Prometheus text, every sample of a declared family', async () => {
  await t.request.get('/hello').expect(200); // so that labelled series exist
  const res = await t.request.get('/_/metrics');
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4\b/);
  const exp = parseExposition(res.text);
  assert.ok(exp.samples.length > 20, `${exp.samples.length} samples`);
  for (const sample of exp.samples) {
    const family = familyOf(sample.name, exp.types);
    assert.ok(family, `no # TYPE for ${sample.name}`);
    assert.ok(exp.help.has(family), `no # HELP for ${family}`);
  }
  const expected: [string, string][] = [
    ['faas_invocations_total', 'counter'],
    ['faas_invocation_duration_seconds', 'histogram'],
    ['faas_queue_wait_seconds', 'histogram'],
    ['faas_queue_depth', 'gauge'],
    ['faas_running_invocations', 'gauge'],
    ['faas_workers_alive', 'gauge'],
    ['faas_worker_restarts_total', 'counter'],
    ['faas_cold_starts_total', 'counter'],
  ];
  for (const [name, type] of expected) assert.equal(exp.types.get(name), type, name);
});

test('the parser refuses what is not Prometheus text', () => {
  for (const bad of [
    'metric{a="1"} \n',
    'metric{a=1} 1\n',
    'metric{a="1",a="2"} 1\n',
    '9metric 1\n',
    'metric one\n',
    '# TYPE metric thing\n',
    'metric{a="1"} 1',
  ]) {
    assert.throws(() => parseExposition(bad), assert.AssertionError, JSON.stringify(bad));
  }
  const ok = parseExposition('# HELP m h\n# TYPE m counter\nm{a="x\\"y",b="\\\\"} 2.5e3 123\n');
  assert.deepEqual(ok.samples, [{ name: 'm', labels: { a: 'x"y', b: '\\' }, value: 2500 }]);
});

test('N successful calls add exactly N to faas_invocations_total{outcome="ok"}', async () => {
  const labels = { function: 'hello', outcome: 'ok' };
  const before = value(await scrape(), 'faas_invocations_total', labels);
  const n = 7;
  for (let i = 0; i < n; i++) await t.request.get('/hello').expect(200);
  await Promise.all(Array.from({ length: n }, () => t.request.get('/hello').expect(200)));
  const now = await scrape();
  assert.equal(value(now, 'faas_invocations_total', labels) - before, 2 * n);
  // Admin routes (the scrapes themselves) are not invocations.
  assert.ok(
    !now.samples.some(
      (s) => s.name === 'faas_invocations_total' && /^_\/|metrics|health/.test(s.labels.function),
    ),
  );
});

test('the duration histogram counts every call of a function', async () => {
  const m = 5;
  for (let i = 0; i < m; i++) await t.request.get('/timed').expect(200);
  const exp = await scrape();
  const fn = { function: 'timed' };
  assert.equal(value(exp, 'faas_invocation_duration_seconds_count', fn), m);
  assert.equal(value(exp, 'faas_invocation_duration_seconds_bucket', { ...fn, le: '+Inf' }), m);
  const sum = value(exp, 'faas_invocation_duration_seconds_sum', fn);
  assert.ok(sum > 0 && sum < m * 1, `sum ${sum}`);
  // Buckets are cumulative.
  const buckets = exp.samples
    .filter(
      (s) => s.name === 'faas_invocation_duration_seconds_bucket' && s.labels.function === 'timed',
    )
    .map((s) => ({ le: parseValue(s.labels.le, s.labels.le), n: s.value }))
    .sort((a, b) => a.le - b.le);
  assert.ok(buckets.length > 3);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].n >= buckets[i - 1].n);
  assert.equal(value(exp, 'faas_invocations_total', { ...fn, outcome: 'ok' }), m);
});

test('a first call counts a cold start', async () => {
  const before = value(await scrape(), 'faas_cold_starts_total', { function: 'cold' });
  assert.equal(before, 0);
  await t.request.get('/cold').expect(200);
  assert.equal(value(await scrape(), 'faas_cold_starts_total', { function: 'cold' }), 1);
  // Two workers: at most one more cold start, however many calls follow.
  for (let i = 0; i < 6; i++) await t.request.get('/cold').expect(200);
  const after = value(await scrape(), 'faas_cold_starts_total', { function: 'cold' });
  assert.ok(after >= 1 && after <= 2, `cold starts: ${after}`);
});

test('a thrown error counts under FUNCTION_ERROR, a sync loop under FUNCTION_TIMEOUT', async () => {
  const before = await scrape();
  const errLabels = { function: 'throws', outcome: 'FUNCTION_ERROR' };
  const timeoutLabels = { function: 'loop', outcome: 'FUNCTION_TIMEOUT' };
  await t.request.get('/throws').expect(500);
  await t.request.get('/throws').expect(500);
  await t.request.get('/loop').expect(504);
  const now = await scrape();
  assert.equal(
    value(now, 'faas_invocations_total', errLabels) -
      value(before, 'faas_invocations_total', errLabels),
    2,
  );
  assert.equal(value(now, 'faas_invocations_total', { function: 'throws', outcome: 'ok' }), 0);
  assert.equal(
    value(now, 'faas_invocations_total', timeoutLabels) -
      value(before, 'faas_invocations_total', timeoutLabels),
    1,
  );
});

test('an endless microtask chain: 504, and a worker restart for reason "timeout"', async () => {
  const labels = { reason: 'timeout' };
  const before = await scrape();
  const res = await t.request.get('/microtasks');
  assert.equal(res.status, 504, res.text);
  assert.equal(res.body.error.code, 'FUNCTION_TIMEOUT');
  await eventually(
    async () =>
      value(await scrape(), 'faas_worker_restarts_total', labels) >
      value(before, 'faas_worker_restarts_total', labels),
    5000,
  );
  const now = await scrape();
  assert.equal(
    value(now, 'faas_invocations_total', { function: 'microtasks', outcome: 'FUNCTION_TIMEOUT' }),
    1,
  );
  for (const sample of now.samples.filter((s) => s.name === 'faas_worker_restarts_total')) {
    assert.ok(['timeout', 'crash', 'memory', 'unresponsive'].includes(sample.labels.reason));
  }
  // The pool comes back to full strength.
  await eventually(async () => value(await scrape(), 'faas_workers_alive') === 2, 5000);
});

test('gauges and default process metrics are there', async () => {
  const exp = await scrape();
  assert.equal(value(exp, 'faas_workers_alive'), 2);
  assert.equal(value(exp, 'faas_queue_depth'), 0);
  assert.ok(exp.samples.some((s) => s.name === 'faas_queue_depth'));
  assert.ok(exp.samples.some((s) => s.name === 'faas_running_invocations'));
  assert.ok(value(exp, 'process_cpu_user_seconds_total') > 0);
  assert.ok(exp.samples.some((s) => s.name === 'process_resident_memory_bytes'));
  assert.ok(exp.samples.some((s) => s.name === 'nodejs_heap_size_used_bytes'));
  assert.ok(value(exp, 'faas_queue_wait_seconds_count') > 0);
});

test('an invocation carries Server-Timing (queue, exec, total) and X-Function-Version', async () => {
  const res = await t.request.get('/hello').expect(200);
  assert.equal(res.headers['x-function-version'], versionOf(FUNCTIONS.hello));
  const timing = String(res.headers['server-timing']);
  const parts = timing.split(/\s*,\s*/).map((part) => {
    const match = /^([a-z]+);dur=(\d+(?:\.\d+)?)$/.exec(part);
    assert.ok(match, `bad Server-Timing part ${JSON.stringify(part)} in ${timing}`);
    return [match[1], Number(match[2])] as const;
  });
  assert.deepEqual(
    parts.map(([name]) => name),
    ['queue', 'exec', 'total'],
  );
  const ms = Object.fromEntries(parts);
  for (const [name, dur] of parts) assert.ok(Number.isFinite(dur) && dur >= 0, name);
  assert.ok(ms.total > 0);
  assert.ok(ms.total >= ms.exec, timing);
  assert.ok(ms.total >= ms.queue, timing);

  // An error from the function still says how long it took.
  const failed = await t.request.get('/throws').expect(500);
  assert.equal(failed.headers['x-function-version'], versionOf(FUNCTIONS.throws));
  assert.match(String(failed.headers['server-timing']), /total;dur=\d+(\.\d+)?$/);
});

/** The heap after a full collection (forced through an exposed gc when possible). */
function gcHeap(): number | undefined {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  } catch {
    return undefined;
  }
}

test('a flood of 2000 unknown names: all 404, one label value, bounded memory', async () => {
  const marker = `zz${Date.now().toString(36)}`;
  // Warm up the request path once so that lazy allocations do not count as growth.
  for (let i = 0; i < 50; i++) await t.request.get(`/warmup-${marker}-${i}`).expect(404);
  const before = await scrape();
  const setsBefore = before.samples.filter((s) => s.name === 'faas_invocations_total').length;
  const unknownBefore = value(before, 'faas_invocations_total', {
    function: '_unknown',
    outcome: 'FUNCTION_NOT_FOUND',
  });
  const heapBefore = gcHeap();
  const rssBefore = process.memoryUsage().rss;

  const total = 2000;
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const res = await fetch(`${t.url}/flood-${marker}-${i}/x${i}`);
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  assert.deepEqual([...statuses], [[404, total]]);

  const res = await t.request.get('/_/metrics');
  assert.ok(!res.text.includes(marker), 'a flooded name reached a metric label');
  const now = parseExposition(res.text);
  const sets = now.samples.filter((s) => s.name === 'faas_invocations_total');
  assert.ok(sets.length - setsBefore <= 1, `${setsBefore} → ${sets.length} label sets`);
  for (const sample of now.samples) {
    if (sample.labels.function === undefined) continue;
    assert.ok(
      sample.labels.function === '_unknown' || sample.labels.function in FUNCTIONS,
      `unexpected function label ${sample.labels.function}`,
    );
  }
  assert.equal(
    value(now, 'faas_invocations_total', { function: '_unknown', outcome: 'FUNCTION_NOT_FOUND' }) -
      unknownBefore,
    total,
  );
  const list = await t.request.get('/_/functions');
  assert.ok(!list.text.includes(marker));
  assert.equal(t.server.records.query({ fn: `flood-${marker}-0/x0` }).length, 0);

  const heapAfter = gcHeap();
  if (heapBefore !== undefined && heapAfter !== undefined) {
    const growth = heapAfter - heapBefore;
    assert.ok(growth < 10 * 1024 * 1024, `heap grew by ${(growth / 1048576).toFixed(1)} MB`);
  } else {
    const growth = process.memoryUsage().rss - rssBefore;
    assert.ok(growth < 40 * 1024 * 1024, `rss grew by ${(growth / 1048576).toFixed(1)} MB`);
  }
});
