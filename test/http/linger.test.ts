/**
 * Early answers reach the client (docs/spec.md §3 413: "the client receives this answer even
 * while it is still sending"): the lingering close of src/http/linger.ts, spoken as raw bytes
 * over node:net by a client that keeps sending after the answer (a half-open socket, as an HTTP
 * client that writes its body whatever it reads), against the real server with MAX_BODY 1mb.
 *
 * Each upload is 5 MB over the 1 MB limit: with a Content-Length or chunked, with or without
 * `Expect: 100-continue`, in one write or slowly. The client must read the whole 413 (417) JSON
 * before any EPIPE or ECONNRESET, every time (the old failure was intermittent, so each case
 * runs RUNS times), and the server must close within its bounds: after the body ends, after
 * LINGER_TIME_MS of an endless slow upload, after LINGER_MAX_BYTES of an endless fast one,
 * after LINGER_IDLE_MS of silence. `faas_lingering_closes_total` counts each close by outcome.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { LINGER_IDLE_MS, LINGER_MAX_BYTES, LINGER_TIME_MS } from '../../src/http/linger';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

const MAX_BODY = 1024 * 1024;
const UPLOAD = 5 * 1024 * 1024;
const PIECE = 64 * 1024;
/** Repetitions of each case: the lost answers of old came in about one upload of four. */
const RUNS = 10;
/** Slack on every time bound: timers on a loaded 2-core machine run late. */
const SLACK_MS = 2_000;

type Framing = 'length' | 'chunked';
/** fast: the whole request in one write; slow: a PIECE every 20 ms. */
type Pace = 'fast' | 'slow';

interface Upload {
  framing: Framing;
  /** Declared body size (Content-Length), or what the chunks add up to. */
  size: number;
  /** `Expect: 100-continue`: send the body at once anyway, or wait for `100 Continue`. */
  expect?: 'send' | 'wait';
  /** Another expectation (answered 417), body sent at once. */
  expectation?: string;
  pace: Pace;
  /** ms between slow pieces. */
  gapMs?: number;
  /** Send pieces for ever, slowly (pace slow) or as fast as the socket takes them (fast). */
  endless?: boolean;
  /** Stop sending after this many body bytes, and keep the connection open. */
  stallAfter?: number;
  /** Close our side once the final answer is read (a client that waited for 100 Continue). */
  closeOnAnswer?: boolean;
  /**
   * Read nothing until the whole request is written (as clients that write a request, then
   * read its answer): a reset before then takes the unread answer with it.
   */
  readAfterSend?: boolean;
  /** Write the head, then the body this many ms later (a round trip on a real network). */
  bodyAfterMs?: number;
}

interface Seen {
  /** Status lines of the interim (1xx) responses. */
  interim: string[];
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The socket error, if any, and whether the final answer had been read whole before it. */
  error?: string;
  errorAfterAnswer?: boolean;
  /** When the final answer was read whole (performance.now()). */
  answeredAt?: number;
  /** ms from the final answer (read whole) to the end of the connection. */
  closedMs?: number;
  /** Body bytes handed to the socket. */
  sent: number;
  /** Whether the whole body (its declared size) was handed to the socket. */
  sentAll: boolean;
}

let t: TestServer;
let port: number;

before(async () => {
  t = await startServer({
    functions: {
      echo: '(event) => ({ length: event.body === undefined ? 0 : event.body.length })',
    },
    env: { MAX_BODY: '1mb' },
  });
  port = Number(new URL(t.url).port);
});
after(() => t.close());

/** faas_lingering_closes_total by outcome, read from the server's registry. */
async function lingerCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = { drained: 0, closed: 0, timeout: 0, bytes: 0 };
  const text = await t.server.metrics.render();
  for (const match of text.matchAll(/^faas_lingering_closes_total\{outcome="(\w+)"\} (\d+)$/gm)) {
    counts[match[1]] = Number(match[2]);
  }
  return counts;
}

/** Waits until the counts moved by `expected` from `before` (the server counts a close when it ends). */
async function assertCounted(
  before: Record<string, number>,
  expected: Partial<Record<string, number>>,
  ms = LINGER_TIME_MS + SLACK_MS,
): Promise<void> {
  let delta: Record<string, number> = {};
  const want = { drained: 0, closed: 0, timeout: 0, bytes: 0, ...expected };
  await eventually(async () => {
    const now = await lingerCounts();
    delta = Object.fromEntries(Object.keys(now).map((k) => [k, now[k] - (before[k] ?? 0)]));
    return JSON.stringify(delta) === JSON.stringify(want);
  }, ms).catch(() => assert.deepEqual(delta, want, 'faas_lingering_closes_total moved by'));
}

const head = (u: Upload): string =>
  [
    'POST /echo HTTP/1.1',
    'Host: x',
    'Content-Type: application/octet-stream',
    u.framing === 'length' ? `Content-Length: ${u.size}` : 'Transfer-Encoding: chunked',
    ...(u.expect ? ['Expect: 100-continue'] : []),
    ...(u.expectation ? [`Expect: ${u.expectation}`] : []),
    'X-Request-Id: linger-test',
  ].join('\r\n') + '\r\n\r\n';

/** One piece of the body as framed on the wire. */
function frame(u: Upload, bytes: Buffer): Buffer {
  if (u.framing === 'length') return bytes;
  return Buffer.concat([
    Buffer.from(`${bytes.length.toString(16)}\r\n`),
    bytes,
    Buffer.from('\r\n'),
  ]);
}

/**
 * Sends `u` on a new connection and reads everything the server sends, until the connection
 * ends (or `deadlineMs`: `closedMs` stays unset, which fails the caller's assertions). A client
 * that has sent all it meant to ends its side, as HTTP clients do after a body. One that stalls
 * stays silent and open (writing would be more body to the server) until `probe` resolves, then
 * writes a byte every 100 ms: once the server has closed, the answer is a reset.
 */
function upload(u: Upload, probe?: Promise<void>, deadlineMs = LINGER_TIME_MS * 3): Promise<Seen> {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    // With `onread`, pause() stops reading from the kernel (a paused stream reads on otherwise).
    const socket = net.connect({
      port,
      host: '127.0.0.1',
      allowHalfOpen: true,
      onread: {
        buffer: Buffer.alloc(64 * 1024),
        callback: (size: number, buffer: Uint8Array) => {
          data = Buffer.concat([data, buffer.subarray(0, size)]);
          parse();
          if (u.expect === 'wait' && seen.interim.length > 0) void send(Buffer.alloc(0));
          if (u.closeOnAnswer && seen.answeredAt !== undefined) socket.end();
          return true;
        },
      },
    });
    let sending = false;
    let done = false;
    const seen: Seen = { interim: [], status: 0, headers: {}, body: '', sent: 0, sentAll: false };

    const parse = () => {
      let rest = data.toString('latin1');
      const interim: string[] = [];
      while (/^HTTP\/1\.1 1\d\d /.test(rest) && rest.includes('\r\n\r\n')) {
        interim.push(rest.slice(0, rest.indexOf('\r\n')));
        rest = rest.slice(rest.indexOf('\r\n\r\n') + 4);
      }
      seen.interim = interim;
      const end = rest.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = rest.slice(0, end).split('\r\n');
      seen.status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0])?.[1] ?? 0);
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        seen.headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body = Buffer.from(rest.slice(end + 4), 'latin1');
      if (body.length >= Number(seen.headers['content-length'])) {
        seen.body = body.toString('utf8');
        seen.answeredAt ??= performance.now();
      }
    };
    const finish = (reason: 'ended' | 'deadline') => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      if (reason === 'ended' && seen.answeredAt !== undefined) {
        seen.closedMs = performance.now() - seen.answeredAt;
      }
      socket.destroy();
      resolve(seen);
    };
    const deadline = setTimeout(() => finish('deadline'), deadlineMs);
    const closed = () => done || socket.destroyed || !socket.writable;
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

    const send = async (prefix: Buffer) => {
      if (sending) return;
      sending = true;
      const piece = Buffer.alloc(PIECE, 0x61);
      if (u.pace === 'fast' && !u.endless) {
        // The whole body in one write (with the head, unless it went first for Expect).
        const parts = [prefix];
        for (let at = 0; at < u.size; at += PIECE) {
          parts.push(frame(u, piece.subarray(0, Math.min(PIECE, u.size - at))));
        }
        if (u.framing === 'chunked') parts.push(Buffer.from('0\r\n\r\n'));
        socket.write(Buffer.concat(parts), () => socket.resume());
        seen.sent = u.size;
        seen.sentAll = true;
        socket.end();
        return;
      }
      if (prefix.length > 0) socket.write(prefix);
      while (!closed()) {
        const size = u.endless ? PIECE : Math.min(PIECE, u.size - seen.sent);
        if (size <= 0 || (u.stallAfter !== undefined && seen.sent >= u.stallAfter)) break;
        const ok = socket.write(frame(u, piece.subarray(0, size)));
        seen.sent += size;
        if (u.pace === 'slow') await wait(u.gapMs ?? 20);
        else if (!ok) {
          await new Promise<void>((r) => {
            const go = () => {
              socket.off('drain', go).off('close', go);
              r();
            };
            socket.on('drain', go).on('close', go);
          });
        }
      }
      if (closed() || u.endless || u.stallAfter !== undefined) return;
      if (u.framing === 'chunked') socket.write('0\r\n\r\n');
      seen.sentAll = true;
      socket.end();
    };

    void probe?.then(async () => {
      while (!closed()) {
        socket.write('z');
        await wait(100);
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      seen.error ??= err.code ?? err.message;
      seen.errorAfterAnswer ??= seen.answeredAt !== undefined;
      finish('ended');
    });
    socket.on('close', () => finish('ended'));
    socket.on('connect', () => {
      if (u.readAfterSend) socket.pause();
      if (u.expect === 'wait') socket.write(head(u));
      else if (u.bodyAfterMs === undefined) void send(Buffer.from(head(u)));
      else {
        socket.write(head(u));
        setTimeout(() => void send(Buffer.alloc(0)), u.bodyAfterMs);
      }
    });
  });
}

function assertAnswer(seen: Seen, status: number, code: string, context: string): void {
  const where = `${context}: ${JSON.stringify({ ...seen, body: seen.body.slice(0, 300) })}`;
  assert.equal(seen.status, status, where);
  if (seen.error !== undefined)
    assert.equal(seen.errorAfterAnswer, true, `error before the answer: ${where}`);
  const body = JSON.parse(seen.body) as {
    error: { code: string; message: string };
    requestId: string;
  };
  assert.deepEqual(Object.keys(body).sort(), ['error', 'requestId'], where);
  assert.equal(body.error.code, code, where);
  assert.equal(body.requestId, 'linger-test', where);
  assert.equal(seen.headers['x-request-id'], 'linger-test', where);
  assert.equal(seen.headers['access-control-allow-origin'], t.config.corsOrigin, where);
  assert.equal(seen.headers['content-type'], 'application/json; charset=utf-8', where);
  assert.equal(seen.headers.connection, 'close', where);
  assert.ok(seen.closedMs !== undefined, `the connection never ended: ${where}`);
}

interface Case {
  name: string;
  upload: Upload;
  status?: number;
  code?: string;
  /** 100 Continue expected before the answer. */
  continued?: boolean;
  /** What the server counts for each run. */
  outcome: 'drained' | 'closed';
}

const length = (rest: Partial<Upload> & { pace: Pace }): Upload => ({
  framing: 'length',
  size: UPLOAD,
  ...rest,
});
const chunked = (rest: Partial<Upload> & { pace: Pace }): Upload => ({
  framing: 'chunked',
  size: UPLOAD,
  ...rest,
});

const cases: Case[] = [
  { name: 'Content-Length, one write', upload: length({ pace: 'fast' }), outcome: 'drained' },
  { name: 'Content-Length, slowly', upload: length({ pace: 'slow' }), outcome: 'drained' },
  {
    name: 'Content-Length, one write, read once written',
    upload: length({ pace: 'fast', readAfterSend: true }),
    outcome: 'drained',
  },
  {
    name: 'Content-Length, the body in one write 50 ms after the head, read once written',
    upload: length({ pace: 'fast', readAfterSend: true, bodyAfterMs: 50 }),
    outcome: 'drained',
  },
  { name: 'chunked, one write', upload: chunked({ pace: 'fast' }), outcome: 'drained' },
  { name: 'chunked, slowly', upload: chunked({ pace: 'slow' }), outcome: 'drained' },
  {
    name: 'chunked, one write, read once written',
    upload: chunked({ pace: 'fast', readAfterSend: true }),
    outcome: 'drained',
  },
  {
    name: 'chunked, the body in one write 50 ms after the head, read once written',
    upload: chunked({ pace: 'fast', readAfterSend: true, bodyAfterMs: 50 }),
    outcome: 'drained',
  },
  {
    name: 'Content-Length + Expect, sent anyway in one write',
    upload: length({ pace: 'fast', expect: 'send' }),
    outcome: 'drained',
  },
  {
    name: 'Content-Length + Expect, sent anyway in one write, read once written',
    upload: length({ pace: 'fast', expect: 'send', readAfterSend: true }),
    outcome: 'drained',
  },
  {
    name: 'Content-Length + Expect, sent anyway slowly',
    upload: length({ pace: 'slow', expect: 'send', gapMs: 30 }),
    outcome: 'drained',
  },
  {
    name: 'Content-Length + Expect, waiting: refused without 100 Continue, nothing sent',
    upload: length({ pace: 'fast', expect: 'wait', closeOnAnswer: true }),
    outcome: 'closed',
  },
  {
    name: 'chunked + Expect, 100 Continue, then one write',
    upload: chunked({ pace: 'fast', expect: 'wait' }),
    continued: true,
    outcome: 'drained',
  },
  {
    name: 'chunked + Expect, 100 Continue, then slowly',
    upload: chunked({ pace: 'slow', expect: 'wait', gapMs: 50 }),
    continued: true,
    outcome: 'drained',
  },
  {
    name: 'another expectation (417), Content-Length, sent anyway in one write',
    upload: length({ pace: 'fast', expectation: 'x-magic' }),
    status: 417,
    code: 'EXPECTATION_FAILED',
    outcome: 'drained',
  },
  {
    name: 'another expectation (417), chunked, slowly',
    upload: chunked({ pace: 'slow', expectation: 'x-magic' }),
    status: 417,
    code: 'EXPECTATION_FAILED',
    outcome: 'drained',
  },
];

describe('a 5 MB upload over MAX_BODY 1mb: the client reads the answer, every time', () => {
  for (const c of cases) {
    void test(`${c.name} → ${c.status ?? 413}, ${c.outcome} (${RUNS} runs)`, async () => {
      const before = await lingerCounts();
      // One write: one after the other (the old race was per connection); slowly: side by side.
      const runs: Seen[] = [];
      if (c.upload.pace === 'fast')
        for (let i = 0; i < RUNS; i++) runs.push(await upload(c.upload));
      else runs.push(...(await Promise.all(Array.from({ length: RUNS }, () => upload(c.upload)))));
      runs.forEach((seen, i) => {
        const context = `run ${i + 1} of ${RUNS}`;
        assertAnswer(seen, c.status ?? 413, c.code ?? 'PAYLOAD_TOO_LARGE', context);
        assert.deepEqual(seen.interim, c.continued ? ['HTTP/1.1 100 Continue'] : [], context);
        if (c.outcome === 'drained') {
          assert.equal(seen.sentAll, true, `${context}: the body was sent whole`);
          assert.equal(seen.error, undefined, `${context}: a drained close resets nothing`);
        } else {
          assert.equal(seen.sent, 0, `${context}: the body was never sent`);
        }
      });
      await assertCounted(before, { [c.outcome]: RUNS });
    });
  }
});

describe('the bounds: a client cannot hold the socket', () => {
  void test(`an endless slow upload is cut off within LINGER_TIME_MS (${LINGER_TIME_MS} ms)`, async () => {
    const before = await lingerCounts();
    const runs = await Promise.all(
      [length, chunked].flatMap((make) =>
        [1, 2].map(() => upload(make({ pace: 'slow', gapMs: 30, size: 1 << 30, endless: true }))),
      ),
    );
    for (const seen of runs) {
      assertAnswer(seen, 413, 'PAYLOAD_TOO_LARGE', 'endless slow');
      assert.ok(seen.closedMs! <= LINGER_TIME_MS + SLACK_MS, `closed after ${seen.closedMs} ms`);
      // Not the idle bound, nor the byte bound (about 2 MB/s for 5 s).
      assert.ok(seen.closedMs! >= LINGER_TIME_MS - 500, `closed after ${seen.closedMs} ms`);
      assert.ok(seen.sent < LINGER_MAX_BYTES, `sent ${seen.sent}`);
    }
    await assertCounted(before, { timeout: runs.length });
  });

  void test(`an endless fast upload is cut off after LINGER_MAX_BYTES (${LINGER_MAX_BYTES} bytes)`, async () => {
    const before = await lingerCounts();
    const runs: Seen[] = [];
    for (const make of [length, chunked]) {
      for (let i = 0; i < 3; i++)
        runs.push(await upload(make({ pace: 'fast', size: 1 << 30, endless: true })));
    }
    for (const seen of runs) {
      assertAnswer(seen, 413, 'PAYLOAD_TOO_LARGE', 'endless fast');
      assert.ok(seen.sent > LINGER_MAX_BYTES, `cut off after ${seen.sent} bytes`);
      assert.ok(seen.sent < 1 << 30, 'not sent to its end');
    }
    await assertCounted(before, { bytes: runs.length });
  });

  void test(`a silent client is let go after LINGER_IDLE_MS (${LINGER_IDLE_MS} ms)`, async () => {
    const before = await lingerCounts();
    const silent: [string, Upload][] = [
      [
        'waits for 100 Continue, stays open',
        length({ pace: 'fast', expect: 'wait', stallAfter: 0 }),
      ],
      [
        'stalls after 2 MB (Content-Length)',
        length({ pace: 'slow', gapMs: 5, stallAfter: 2 * MAX_BODY }),
      ],
      [
        'stalls after 2 MB (chunked)',
        chunked({ pace: 'slow', gapMs: 5, stallAfter: 2 * MAX_BODY }),
      ],
    ];
    // Silent clients cannot see the server's close (its FIN came with the answer) without
    // writing, which would be more body: the server's count tells when it closed, then a probe
    // byte shows that it did.
    let startProbe = () => {};
    const probe = new Promise<void>((resolve) => (startProbe = resolve));
    const pending = Promise.all(silent.map(([, u]) => upload(u, probe)));
    await assertCounted(
      before,
      { timeout: silent.length },
      LINGER_IDLE_MS + LINGER_TIME_MS + SLACK_MS,
    );
    const closedAt = performance.now();
    startProbe();
    const runs = await pending;
    runs.forEach((seen, i) => {
      const context = silent[i][0];
      assertAnswer(seen, 413, 'PAYLOAD_TOO_LARGE', context);
      assert.equal(seen.errorAfterAnswer, true, `${context}: the probe is refused (${seen.error})`);
      const ms = closedAt - seen.answeredAt!;
      // The answer comes before the last byte for the stalled uploads (MAX_BODY is 1 MB of 2).
      assert.ok(ms <= LINGER_IDLE_MS + (i === 0 ? 0 : 1000) + SLACK_MS, `${context}: ${ms} ms`);
      assert.ok(ms >= LINGER_IDLE_MS - 500, `${context}: closed ${ms} ms after the answer`);
    });
  });
});

describe('nothing else lingers', () => {
  void test('keep-alive requests that read their body, and GETs, stay open and are not counted', async () => {
    const before = await lingerCounts();
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    const bodies = [Buffer.alloc(MAX_BODY, 0x62), Buffer.from('hi')];
    const answers = () => text.split('HTTP/1.1 ').length - 1;
    for (const [i, b] of bodies.entries()) {
      socket.write(
        `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${b.length}\r\n\r\n`,
      );
      socket.write(b);
      await eventually(async () => answers() === i + 1 && text.endsWith('}'));
    }
    socket.write('GET /echo HTTP/1.1\r\nHost: x\r\n\r\n');
    await eventually(async () => answers() === 3 && text.endsWith('}'));
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '200', '200'], text.slice(0, 500));
    assert.match(text, /\{"length":1048576\}/);
    assert.doesNotMatch(text, /Connection: close/i);
    assert.equal(socket.destroyed || socket.readableEnded, false, 'the connection stays open');
    socket.destroy();
    assert.deepEqual(await lingerCounts(), before);
  });
});
