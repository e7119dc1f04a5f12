/**
 * The sandbox globals of docs/spec.md §2, through the real server: every case of
 * globals-cases.ts runs inside a deployed function and in this process with Node 20's own
 * globals, and the two descriptions must be equal. Beside that table: crypto against node:crypto
 * outside (digest and HMAC of large inputs included), timers (setInterval belongs to its
 * invocation), queueMicrotask's error reporting, and globals that keep working after a function
 * has tampered with the intrinsics they use.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';
import { CASE_NAMES, CASES_SOURCE } from './globals-cases';

const MB5 = 5 * 1024 * 1024;

const FUNCTIONS: Record<string, string> = {
  hello: "() => 'hi'",
  cases: `const run = ${CASES_SOURCE};\nmodule.exports = async (event) => run(event.query.names.split(','));\n`,
  // Digest and HMAC of the UTF-8 of the body's strings, hex, for each hash.
  'crypto-table': `module.exports = async (event) => {
    const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
    const out = [];
    for (const { key, message } of event.body) {
      for (const hash of ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512']) {
        const data = new TextEncoder().encode(message);
        const k = await crypto.subtle.importKey('raw', new TextEncoder().encode(key), { name: 'HMAC', hash }, false, ['sign']);
        out.push({ hash, digest: hex(await crypto.subtle.digest(hash, data)), hmac: hex(await crypto.subtle.sign('HMAC', k, data)) });
      }
    }
    return out;
  };`,
  // Bytes i*31+7 (mod 256), n of them: SHA-256 and HMAC-SHA-256 (key "k"), or the rejection.
  'crypto-big': `module.exports = async (event) => {
    const n = Number(event.query.n);
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = (i * 31 + 7) & 255;
    const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
    try {
      const key = await crypto.subtle.importKey('raw', new TextEncoder().encode('k'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      return { digest: hex(await crypto.subtle.digest('SHA-256', bytes)), hmac: hex(await crypto.subtle.sign('HMAC', key, bytes)),
        text: new TextDecoder().decode(new TextEncoder().encode('é'.repeat(n / 2))).length };
    } catch (e) {
      return { rejected: e.name, message: e.message };
    }
  };`,
  interval: `module.exports = async (event) => {
    const ticks = [];
    const id = setInterval((a, b) => { ticks.push(a + b); if (ticks.length === 3) clearInterval(id); }, 5, 'x', 'y');
    let viaTimeout = 0;
    const other = setInterval(() => { viaTimeout++; }, 5);
    setTimeout(() => clearTimeout(other), 22);
    await new Promise((resolve) => setTimeout(resolve, 80));
    const settled = viaTimeout;
    await new Promise((resolve) => setTimeout(resolve, 30));
    return { ticks, idIsNumber: Number.isInteger(id) && id > 0, viaTimeout: viaTimeout === settled && viaTimeout >= 2 && viaTimeout <= 5 };
  };`,
  // Starts an interval and returns: the interval must die with the invocation.
  'interval-leak': `const id = Math.random().toString(36).slice(2);
let ticks = 0;
module.exports = async (event) => {
  if (event.query.start) {
    setInterval(() => { ticks++; }, 1);
    if (event.query.wait) await new Promise((resolve) => setTimeout(resolve, 30));
    return { id, ticks };
  }
  return { id, ticks };
};`,
  'timer-cap': `module.exports = () => {
    let made = 0;
    try { for (let i = 0; i < 1001; i++) { (i % 2 ? setInterval : setTimeout)(() => {}, 60000); made++; } } catch (e) { return [made, e.name, e.message]; }
    return [made];
  };`,
  'microtask-errors': `module.exports = async () => {
    queueMicrotask(() => { throw new TypeError('boom in microtask'); });
    queueMicrotask(() => console.log('microtask ran'));
    let n = 0;
    const id = setInterval(() => { n++; if (n === 2) clearInterval(id); throw new RangeError('boom in interval ' + n); }, 2);
    await new Promise((resolve) => setTimeout(resolve, 40));
    return 'survived';
  };`,
  // Replaces intrinsics the globals use, then uses each global for the first time.
  tampered: `module.exports = () => {
    JSON.parse = () => ({ hijacked: true });
    String.prototype.slice = () => 'hijacked';
    String.prototype.charCodeAt = () => 0;
    String.fromCharCode = () => 'X';
    Array.prototype.push = () => { throw new Error('push hijacked'); };
    Uint8Array.prototype.set = () => { throw new Error('set hijacked'); };
    Object.defineProperty = () => { throw new Error('defineProperty hijacked'); };
    Map.prototype.get = () => 'hijacked';
    Reflect.apply = () => 'hijacked';
    Function.prototype.call = () => 'hijacked';
    Object.prototype.toString = () => '[object Hijacked]';
    const url = new URL('../x?a=1', 'http://example.com/p/q');
    url.searchParams.append('b', 'c d');
    return [url.href, btoa('hi'), atob('aGk='), new TextDecoder().decode(new TextEncoder().encode('é€')), structuredClone({ d: [1, 2] }).d.length,
      crypto.randomUUID().length, new URLSearchParams({ k: 'v' }).toString()];
  };`,
  // Globals can be replaced and deleted like Node's.
  writable: `module.exports = () => {
    const before = [typeof URL, typeof crypto, typeof atob];
    URL = 1;
    globalThis.crypto = 'mine';
    delete globalThis.atob;
    return [before, URL, crypto, typeof atob, typeof TextEncoder];
  };`,
};

let t: TestServer;
let expected: Record<string, unknown>;

before(async () => {
  t = await startServer({ functions: FUNCTIONS, env: { FUNCTION_TIMEOUT_MS: '20000' } });
  const run = vm.runInThisContext(CASES_SOURCE) as (names: string[]) => Promise<unknown>;
  expected = JSON.parse(JSON.stringify(await run(CASE_NAMES))) as Record<string, unknown>;
});

after(async () => {
  await t?.close();
});

describe('each global behaves as Node 20 does (same cases, sandbox vs this process)', () => {
  test('the table covers every global', () => {
    assert.ok(CASE_NAMES.length >= 40, `${CASE_NAMES.length} cases`);
    for (const prefix of [
      'text-encoder',
      'text-decoder',
      'atob',
      'btoa',
      'url-',
      'url-search-params',
      'crypto-digest',
      'crypto-hmac',
      'crypto-random',
      'structured-clone',
      'queue-microtask',
      'dom-exception',
    ]) {
      assert.ok(
        CASE_NAMES.some((name) => name.startsWith(prefix)),
        prefix,
      );
    }
  });
  for (const name of CASE_NAMES) {
    test(name, async () => {
      const res = await t.request.get(`/cases?names=${name}`);
      assert.equal(res.status, 200, res.text);
      const got = (res.body as Record<string, unknown>)[name];
      assert.ok(got !== undefined && !('caseThrew' in (got as object)), JSON.stringify(got));
      assert.deepEqual(got, expected[name]);
    });
  }
});

describe('crypto against node:crypto outside the sandbox', () => {
  test('digest and HMAC of a table of keys and messages', async () => {
    const table = [
      { key: 'k', message: '' },
      { key: 'webhook-secret', message: '{"event":"push","id":42}' },
      { key: 'ключ', message: 'héllo wörld 😀' },
      { key: 'x'.repeat(300), message: 'y'.repeat(5000) },
    ];
    const res = await t.request.post('/crypto-table').send(table);
    assert.equal(res.status, 200, res.text);
    const want = table.flatMap(({ key, message }) =>
      ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512'].map((hash) => {
        const alg = hash.replace('-', '').toLowerCase();
        return {
          hash,
          digest: createHash(alg).update(message).digest('hex'),
          hmac: createHmac(alg, key).update(message).digest('hex'),
        };
      }),
    );
    assert.deepEqual(res.body, want);
  });

  test('5 MB: digest, HMAC and a TextEncoder/TextDecoder round trip work', async () => {
    const bytes = Buffer.alloc(MB5);
    for (let i = 0; i < MB5; i++) bytes[i] = (i * 31 + 7) & 255;
    const res = await t.request.get(`/crypto-big?n=${MB5}`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, {
      digest: createHash('sha256').update(bytes).digest('hex'),
      hmac: createHmac('sha256', 'k').update(bytes).digest('hex'),
      text: MB5 / 2,
    });
  });

  test('past the bridge limit (32 MiB) the promise rejects cleanly, and the worker lives on', async () => {
    const res = await t.request.get(`/crypto-big?n=${32 * 1024 * 1024 + 2}`);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.rejected, 'QuotaExceededError');
    assert.match(res.body.message, /33554432 bytes/);
    assert.equal((await t.request.get('/hello')).text, 'hi');
  });
});

describe('timers and microtasks', () => {
  test('setInterval repeats with its arguments; clearInterval and clearTimeout stop it', async () => {
    const res = await t.request.get('/interval');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { ticks: ['xy', 'xy', 'xy'], idIsNumber: true, viaTimeout: true });
  });

  test('an interval ends with its invocation (warm context: its counter stops)', async () => {
    // Control: while the invocation waits, the interval does tick.
    const waited = await t.request.get('/interval-leak?start=1&wait=1');
    assert.equal(waited.status, 200, waited.text);
    assert.ok(waited.body.ticks > 3, waited.text);
    const started = await t.request.get('/interval-leak?start=1');
    const { id, ticks } = started.body as { id: string; ticks: number };
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Read the same context (same worker) back: the count has not moved since it returned.
    let same: { id: string; ticks: number } | undefined;
    await eventually(async () => {
      const res = await t.request.get('/interval-leak');
      if (res.body.id === id) same = res.body as { id: string; ticks: number };
      return same !== undefined;
    }, 5000);
    assert.equal(same?.ticks, ticks);
  });

  test('intervals count against the per-invocation timer cap', async () => {
    const res = await t.request.get('/timer-cap');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, [
      1000,
      'RangeError',
      'too many pending timers (at most 1000 per invocation)',
    ]);
  });

  test('errors in queueMicrotask and setInterval callbacks are logged like setTimeout ones', async () => {
    const res = await t.request.get('/microtask-errors');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, 'survived');
    const rid = res.headers['x-request-id'];
    const lines = t.logs
      .filter((l) => l.msg === 'function console' && l.reqId === rid)
      .map((l) => `${String(l.level)} ${String(l.console)}`);
    assert.ok(
      lines.some((l) =>
        /uncaught in queueMicrotask callback: TypeError: boom in microtask/.test(l),
      ),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /uncaught in setInterval callback: RangeError: boom in interval 1/.test(l)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /uncaught in setInterval callback: RangeError: boom in interval 2/.test(l)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /microtask ran/.test(l)),
      lines.join('\n'),
    );
  });
});

describe('robustness', () => {
  test('globals first used after the function replaced their intrinsics still work', async () => {
    const res = await t.request.get('/tampered');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, [
      'http://example.com/x?a=1&b=c+d',
      'aGk=',
      'hi',
      'é€',
      2,
      36,
      'k=v',
    ]);
  });

  test('globals can be replaced and deleted, as in Node', async () => {
    const res = await t.request.get('/writable');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, [
      ['function', 'object', 'function'],
      1,
      'mine',
      'undefined',
      'function',
    ]);
  });
});
