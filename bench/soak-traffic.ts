/**
 * The soak's traffic (bench/soak.ts): the functions it writes into a temporary folder, the kinds
 * of call it makes of them with the answers each kind must get, and the weighted, rate-capped
 * picker that mixes them (about 70 % healthy, 30 % hostile).
 *
 * | group   | kinds                                             | must get                           |
 * |---------|---------------------------------------------------|------------------------------------|
 * | sync    | hello, nested/deep, echo (POST 1 KB), cpu 100 ms  | 200 with its exact body            |
 * | async   | async (a 20–200 ms timer)                         | 200 with its exact body            |
 * | effect  | effect (`kv.incr('eff:' + requestId)`)            | 200 whose value is 1, or 502       |
 * | hostile | throws, loops, bombs, giant results, bad names, … | its own error (see each kind)      |
 *
 * Healthy bodies carry `context.attempt`, so the soak sees the calls the server ran again.
 */

/** MAX_BODY of the server the soak starts; the uploads are 5 MB against it. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** MAX_RESULT_BYTES is left at its default (6 MiB); the giant results are over it. */
const UPLOAD_BYTES = 5 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The functions folder

export const FUNCTIONS: Record<string, string> = {
  'hello.js': `(event, context) => ({ ok: true, n: event.query.n, attempt: context.attempt });\n`,
  'nested/deep.js':
    `exports.handler = (event, context) =>\n` +
    `  ({ ok: true, n: event.query.n, fn: context.functionName, attempt: context.attempt });\n`,
  'echo.js':
    `module.exports = (event, context) =>\n` +
    `  ({ ok: true, n: event.body.n, size: event.body.pad.length, attempt: context.attempt });\n`,
  // 100 ms of synchronous work, by the wall clock: well within the 1 s timeout, whatever the load.
  'cpu.js':
    `(event, context) => {\n` +
    `  const until = Date.now() + 100;\n` +
    `  let spins = 0;\n` +
    `  while (Date.now() < until) spins++;\n` +
    `  return { ok: true, n: event.query.n, spins: spins > 0, attempt: context.attempt };\n` +
    `};\n`,
  // The soak chooses the delay (20–200 ms), so that it knows the exact body to expect.
  'async-hello.js':
    `async (event, context) => {\n` +
    `  const ms = Number(event.query.ms);\n` +
    `  await new Promise((resolve) => setTimeout(resolve, ms));\n` +
    `  return { ok: true, n: event.query.n, ms, attempt: context.attempt };\n` +
    `};\n`,
  // One key per request: a run after the first would make it 2 (docs/spec.md §3: never twice). The
  // waits before and after put the soak's kills on both sides of the effect.
  'effect.js':
    `async (event, context) => {\n` +
    `  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));\n` +
    `  await wait(Number(event.query.before));\n` +
    `  const v = await context.kv.incr('eff:' + context.requestId);\n` +
    `  await wait(Number(event.query.after));\n` +
    `  return { ok: true, n: event.query.n, v, attempt: context.attempt };\n` +
    `};\n`,
  // `undefined.length`: a TypeError.
  'throws.js': `(event) => event.query.missing.length;\n`,
  'throws-text.js': `() => {\n  throw 'deliberately thrown text';\n};\n`,
  'broken.js': `(event) => {\n  return { ;\n};\n`,
  'loop.js': `() => {\n  for (;;) {}\n};\n`,
  'microtasks.js': `async () => {\n  for (;;) await null;\n};\n`,
  'never.js': `() => new Promise(() => {});\n`,
  // Arrays of arrays, ~800 KB each, until V8's heap limit ends the worker.
  'bomb.js':
    `() => {\n` +
    `  const hoard = [];\n` +
    `  for (;;) hoard.push(new Array(100000).fill(hoard.length));\n` +
    `};\n`,
  // Over MAX_RESULT_BYTES (6 MiB) as one string or as ~7.5 MB of JSON from small objects.
  'giant.js':
    `(event) => event.query.k === '1'\n` +
    `  ? Array.from({ length: 160000 }, (_, i) => ({ i, pad: 'abcdefghijklmnopqrstuvwxyz0123' }))\n` +
    `  : 'x'.repeat(7 * 1024 * 1024);\n`,
  // What JSON cannot carry (docs/spec.md §2): a BigInt, a cycle, a function, a symbol.
  'unserialisable.js':
    `(event) => {\n` +
    `  switch (event.query.k) {\n` +
    `    case '0': return { n: BigInt(10) };\n` +
    `    case '1': { const a = { b: {} }; a.b.a = a; return a; }\n` +
    `    case '2': return () => 1;\n` +
    `    default: return Symbol('s');\n` +
    `  }\n` +
    `};\n`,
};

// ---------------------------------------------------------------------------------------------
// Kinds

export interface RequestSpec {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Send the body in pieces without a Content-Length (chunked). */
  chunked?: boolean;
}

/** What a 200's body says about the call. */
export interface BodyCheck {
  /** The body is exactly the answer to this request. */
  ok: boolean;
  /** `context.attempt` as the function saw it (2 = the server ran it again). */
  attempt?: number;
}

export type Group = 'sync' | 'async' | 'effect' | 'hostile';
export const GROUPS: Group[] = ['sync', 'async', 'effect', 'hostile'];
export const HEALTHY_GROUPS: Group[] = ['sync', 'async', 'effect'];

export interface Kind {
  name: string;
  group: Group;
  /** Runs a function in a worker (a worker death may take it down). */
  invokes: boolean;
  /** May block or kill its worker, and so its neighbours there (--lenient's collateral). */
  blocks: boolean;
  /** May be the call a pool's timeout kill is for (it can keep its worker busy or silent). */
  mayOverrun: boolean;
  /** Share of the traffic. */
  weight: number;
  /** At most this many per second (bursts of as many); past it, an uncapped kind of its group. */
  perSecond?: number;
  /** Outcome classes this kind must get (503 OVERLOADED is always allowed, counted apart). */
  expected: string[];
  request(n: number): RequestSpec;
  /** For 200s: whether the body is the answer to request n. */
  check?(body: string, n: number): BodyCheck;
}

type KindSpec = Omit<Kind, 'blocks' | 'mayOverrun'> & Partial<Pick<Kind, 'blocks' | 'mayOverrun'>>;

function kind(spec: KindSpec): Kind {
  const expected = [...spec.expected];
  // A hostile function may be quarantined (docs/spec.md §3): its own bounded queue answers 429.
  if (spec.group === 'hostile' && spec.invokes) expected.push('429 TOO_MANY_REQUESTS');
  return { blocks: false, mayOverrun: false, ...spec, expected };
}

/** The fields every healthy body has, and `context.attempt`. */
function parsed(body: string, n: number): { value: Record<string, unknown>; check: BodyCheck } {
  try {
    const value = JSON.parse(body) as Record<string, unknown>;
    const attempt = typeof value.attempt === 'number' ? value.attempt : undefined;
    return { value, check: { ok: value.ok === true && value.n === String(n), attempt } };
  } catch {
    return { value: {}, check: { ok: false } };
  }
}

function answersN(body: string, n: number): BodyCheck {
  return parsed(body, n).check;
}

const asyncMs = (n: number) => 20 + ((n * 37) % 181);
const effectWaits = (n: number) => ({ before: (n * 13) % 41, after: (n * 29) % 41 });

const BAD_NAMES = [
  '/..%2f',
  '/.env',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/hello.js',
  // Past a valid first segment the rest is a sub-path (docs/spec.md §2), so only first segments here.
  '/../hello',
  '/foo%00bar',
  '//hello',
  '/-dash',
];

const UPLOAD = Buffer.alloc(UPLOAD_BYTES, 0x20);
const TIMEOUT_OR_CRASH = ['504 FUNCTION_TIMEOUT', '502 WORKER_CRASHED'];

export const KINDS: Kind[] = [
  // Healthy: 70.
  kind({
    name: 'hello',
    group: 'sync',
    invokes: true,
    weight: 24,
    expected: ['200'],
    request: (n) => ({ method: 'GET', path: `/hello?n=${n}` }),
    check: answersN,
  }),
  kind({
    name: 'nested/deep',
    group: 'sync',
    invokes: true,
    weight: 5,
    expected: ['200'],
    request: (n) => ({ method: 'GET', path: `/nested/deep/?n=${n}` }),
    check: (body, n) => {
      const { value, check } = parsed(body, n);
      return { ...check, ok: check.ok && value.fn === 'nested/deep' };
    },
  }),
  kind({
    name: 'echo (POST 1 KB)',
    group: 'sync',
    invokes: true,
    weight: 8,
    expected: ['200'],
    request: (n) => ({
      method: 'POST',
      path: '/echo',
      headers: { 'Content-Type': 'application/json' },
      body: Buffer.from(JSON.stringify({ n: String(n), pad: 'x'.repeat(1024) })),
    }),
    check: (body, n) => {
      const { value, check } = parsed(body, n);
      return { ...check, ok: check.ok && value.size === 1024 };
    },
  }),
  kind({
    name: 'cpu (100 ms)',
    group: 'sync',
    invokes: true,
    weight: 3,
    expected: ['200'],
    request: (n) => ({ method: 'GET', path: `/cpu?n=${n}` }),
    check: (body, n) => {
      const { value, check } = parsed(body, n);
      return { ...check, ok: check.ok && value.spins === true };
    },
  }),
  kind({
    name: 'async (20–200 ms)',
    group: 'async',
    invokes: true,
    weight: 18,
    expected: ['200'],
    request: (n) => ({ method: 'GET', path: `/async-hello?n=${n}&ms=${asyncMs(n)}` }),
    check: (body, n) => {
      const { value, check } = parsed(body, n);
      return { ...check, ok: check.ok && value.ms === asyncMs(n) };
    },
  }),
  kind({
    name: 'effect (kv.incr)',
    group: 'effect',
    invokes: true,
    weight: 12,
    // Made an effect, then lost with its worker: never run twice, so 502 (docs/spec.md §3); or starved
    // twice by a neighbour's blocked loop: never run twice either, so 504 naming that neighbour.
    expected: ['200', '502 WORKER_CRASHED', '504 BLOCKED_BY_NEIGHBOUR'],
    request: (n) => {
      const { before, after } = effectWaits(n);
      return { method: 'GET', path: `/effect?n=${n}&before=${before}&after=${after}` };
    },
    // Ran once: the key it made is 1.
    check: (body, n) => {
      const { value, check } = parsed(body, n);
      return { ...check, ok: check.ok && value.v === 1 };
    },
  }),
  // Hostile: 30.
  kind({
    name: 'throws',
    group: 'hostile',
    invokes: true,
    weight: 4,
    expected: ['500 FUNCTION_ERROR'],
    request: (n) => ({ method: 'GET', path: `/throws?n=${n}` }),
  }),
  kind({
    name: 'throws-text',
    group: 'hostile',
    invokes: true,
    weight: 2,
    expected: ['500 FUNCTION_ERROR'],
    request: () => ({ method: 'GET', path: '/throws-text' }),
  }),
  kind({
    name: 'broken',
    group: 'hostile',
    invokes: true,
    weight: 1,
    expected: ['500 FUNCTION_COMPILE_ERROR'],
    request: () => ({ method: 'GET', path: '/broken' }),
  }),
  kind({
    name: 'loop',
    group: 'hostile',
    invokes: true,
    blocks: true,
    mayOverrun: true,
    weight: 2,
    perSecond: 0.5,
    expected: TIMEOUT_OR_CRASH,
    request: () => ({ method: 'GET', path: '/loop' }),
  }),
  kind({
    name: 'microtasks',
    group: 'hostile',
    invokes: true,
    blocks: true,
    mayOverrun: true,
    weight: 2,
    perSecond: 0.25,
    expected: TIMEOUT_OR_CRASH,
    request: () => ({ method: 'GET', path: '/microtasks' }),
  }),
  kind({
    name: 'never',
    group: 'hostile',
    invokes: true,
    mayOverrun: true,
    weight: 2,
    perSecond: 1,
    expected: TIMEOUT_OR_CRASH,
    request: () => ({ method: 'GET', path: '/never' }),
  }),
  kind({
    name: 'bomb',
    group: 'hostile',
    invokes: true,
    blocks: true,
    mayOverrun: true,
    weight: 2,
    perSecond: 0.25,
    // Out of memory (502); on a CPU-starved machine its allocation loop may reach its timeout
    // first, and the watchdog stops it (504).
    expected: ['502 WORKER_CRASHED', '504 FUNCTION_TIMEOUT'],
    request: () => ({ method: 'GET', path: '/bomb' }),
  }),
  kind({
    name: 'giant result',
    group: 'hostile',
    invokes: true,
    mayOverrun: true,
    weight: 2,
    perSecond: 2,
    // Too big to send (500); building 7 MB on a CPU-starved machine may outlast its timeout (504).
    expected: ['500 INVALID_RESULT', '504 FUNCTION_TIMEOUT'],
    request: (n) => ({ method: 'GET', path: `/giant?k=${n % 2}` }),
  }),
  kind({
    name: 'unserialisable',
    group: 'hostile',
    invokes: true,
    weight: 3,
    expected: ['500 INVALID_RESULT'],
    request: (n) => ({ method: 'GET', path: `/unserialisable?k=${n % 4}` }),
  }),
  kind({
    name: 'bad name',
    group: 'hostile',
    invokes: false,
    weight: 4,
    expected: ['400 INVALID_FUNCTION_NAME'],
    request: (n) => ({ method: 'GET', path: BAD_NAMES[n % BAD_NAMES.length] }),
  }),
  kind({
    name: 'unknown',
    group: 'hostile',
    invokes: false,
    weight: 3,
    expected: ['404 FUNCTION_NOT_FOUND'],
    request: (n) => ({ method: 'GET', path: `/no-such-function-${n % 97}` }),
  }),
  kind({
    name: 'upload 5 MB',
    group: 'hostile',
    invokes: false,
    weight: 3,
    perSecond: 4,
    expected: ['413 PAYLOAD_TOO_LARGE'],
    // Declared (Content-Length) and streamed (chunked), JSON and bytes, against MAX_BODY 1 MB.
    request: (n) => ({
      method: 'POST',
      path: '/echo',
      headers: { 'Content-Type': n % 2 ? 'application/json' : 'application/octet-stream' },
      body: UPLOAD,
      chunked: n % 4 >= 2,
    }),
  }),
];

/**
 * Picks kinds by weight. A rate-capped kind without a token gives way to a kind of its group
 * with no cap (by weight), so the mix keeps its healthy/hostile shares.
 */
export class KindPicker {
  private readonly total: number;
  private readonly tokens: number[];
  private readonly fallbacks = new Map<Group, { index: number; weight: number }[]>();
  private last = performance.now();

  constructor(private readonly kinds: Kind[]) {
    this.total = kinds.reduce((sum, k) => sum + k.weight, 0);
    this.tokens = kinds.map(() => 1);
    kinds.forEach((k, index) => {
      if (k.perSecond !== undefined) return;
      const list = this.fallbacks.get(k.group) ?? [];
      list.push({ index, weight: k.weight });
      this.fallbacks.set(k.group, list);
    });
  }

  pick(): number {
    const now = performance.now();
    const elapsed = (now - this.last) / 1000;
    this.last = now;
    this.kinds.forEach((k, i) => {
      if (k.perSecond !== undefined)
        this.tokens[i] = Math.min(Math.max(1, k.perSecond), this.tokens[i] + elapsed * k.perSecond);
    });
    const index = weighted(
      this.kinds.map((k, i) => ({ index: i, weight: k.weight })),
      this.total,
    );
    const chosen = this.kinds[index];
    if (chosen.perSecond === undefined) return index;
    if (this.tokens[index] >= 1) {
      this.tokens[index] -= 1;
      return index;
    }
    const others = this.fallbacks.get(chosen.group) ?? [];
    return weighted(
      others,
      others.reduce((sum, o) => sum + o.weight, 0),
    );
  }
}

function weighted(entries: { index: number; weight: number }[], total: number): number {
  let x = Math.random() * total;
  for (const entry of entries) {
    x -= entry.weight;
    if (x < 0) return entry.index;
  }
  return entries[entries.length - 1].index;
}
