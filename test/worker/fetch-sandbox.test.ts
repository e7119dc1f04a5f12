/**
 * The sandbox side of `fetch` and of `context.kv`/`env`/`secrets` (docs/spec.md §8): the real
 * globals script in a real vm2 VM (as the runner builds it), with a test double for the
 * transport ONLY — `hostRequest`, the runner's function that carries a call to the server — which
 * records what reaches it and answers as the server would. The real transport, the egress policy
 * and the KV backends are tested end to end elsewhere.
 *
 * Headers, Response and Request are compared with Node 20's own (undici) on a table of cases run
 * in both places; what reaches the transport is checked for every body kind, method, header form
 * and input form; replies (results, errors, malformed ones) are checked for what the function
 * sees.
 */
import assert from 'node:assert/strict';
import vm from 'node:vm';
import { describe, test } from 'node:test';
import { VM } from 'vm2';
import { GLOBALS_SOURCE } from '../../src/worker/globals';
import type { AttachServices, HostRequest, InstallGlobals } from '../../src/worker/globals';
import { hostCall } from '../../src/worker/host-bridge';

type Reply = [ok: unknown, text: unknown] | 'throw' | 'never';
interface Sandbox {
  /** Runs `body` as an async function in the sandbox (with `context`); resolves to its JSON. */
  run(body: string): Promise<unknown>;
  /** Every call that reached the transport: [op, args parsed]. */
  calls: [string, unknown][];
}

/** A sandbox as the runner builds it, with a transport double that answers with `answer(op, args)`. */
function sandbox(
  answer: (op: string, args: Record<string, unknown>) => Reply = () => 'never',
  contextJson = '{}',
): Sandbox {
  const calls: [string, unknown][] = [];
  const hostRequest: HostRequest = (op, argsJson, onReply) => {
    assert.equal(typeof op, 'string');
    assert.equal(typeof argsJson, 'string');
    const args = JSON.parse(argsJson) as Record<string, unknown>;
    calls.push([op, args]);
    const reply = answer(op, args);
    if (reply === 'throw') throw new Error('no invocation is running');
    if (reply === 'never') return;
    setImmediate(() => {
      (onReply as (...a: unknown[]) => void)(...reply);
      // A second reply is ignored.
      (onReply as (...a: unknown[]) => void)(true, '"second reply"');
    });
  };
  const sandboxVm = new VM({ eval: false, wasm: false, allowAsync: true });
  const attach = (sandboxVm.run(GLOBALS_SOURCE) as InstallGlobals)(
    hostCall,
    hostRequest,
  ) as AttachServices;
  const context = sandboxVm.run(`(${contextJson})`) as object;
  attach(context);
  sandboxVm.setGlobal('context', context);
  return {
    calls,
    async run(body) {
      const text = (await (sandboxVm.run(
        `(async () => { const out = await (async () => { ${body} })(); return JSON.stringify(out === undefined ? null : out); })()`,
      ) as Promise<string>)) as unknown;
      assert.equal(typeof text, 'string');
      return JSON.parse(text as string) as unknown;
    },
  };
}

/** Helpers both realms use: an error as 'Name: message', a rejection likewise. */
const HELPERS = `
  const t = (f) => { try { return f(); } catch (e) { return e.name + ': ' + e.message; } };
  const ta = (p) => Promise.resolve().then(p).then((v) => v, (e) => e.name + ': ' + e.message);
  const list = (h) => [...h];
`;

/** Cases run with Headers/Response/Request of each realm; each returns JSON data. */
const CASES: Record<string, string> = {
  'headers-init-forms': `return [
    list(new Headers({ 'X-B': '1', a: '2' })),
    list(new Headers([['X-B', '1'], ['a', '2'], ['x-b', '3']])),
    list(new Headers(new Headers([['a', '1']]))),
    list(new Headers(new Map([['m', 'v']]))),
    list(new Headers((function* () { yield ['g', '1']; yield new Set(['s', 'x']); })())),
    list(new Headers()), list(new Headers(undefined)), list(new Headers({})),
    list(new Headers({ n: 1, b: true, o: { toString() { return 'obj'; } } })),
  ];`,
  'headers-init-errors': `return [
    t(() => new Headers(5)), t(() => new Headers('ab')), t(() => new Headers([['a']])), t(() => new Headers([['a', 'b', 'c']])),
    t(() => new Headers([['a b', '1']])), t(() => new Headers([['', '1']])), t(() => new Headers({ a: 'x\\ny' })),
    t(() => new Headers({ a: 'x\\ry' })), t(() => new Headers({ a: '€' })), t(() => new Headers({ 'é': '1' })),
    t(() => new Headers([1])).slice(0, 10),
  ];`,
  'headers-case-insensitive': `const h = new Headers({ 'Content-Type': 'text/html' });
    const out = [h.get('content-type'), h.get('CONTENT-TYPE'), h.has('Content-type'), h.has('content-length'), h.get('content-length')];
    h.append('CONTENT-type', 'x'); out.push(h.get('content-type'), list(h));
    h.delete('content-TYPE'); out.push(h.has('content-type'), list(h));
    return out;`,
  'headers-combine-set-trim': `const h = new Headers();
    h.append('Accept', 'a'); h.append('accept', ' b '); h.append('ACCEPT', '\\t c\\t');
    const out = [h.get('accept'), list(h)];
    h.set('Accept', 'only'); out.push(h.get('accept'), list(h));
    h.set('new', '  spaced value  '); out.push(h.get('new'));
    h.append('empty', ''); out.push(h.get('empty'), h.has('empty'), list(h));
    return out;`,
  'headers-set-cookie': `const h = new Headers([['Set-Cookie', 'a=1'], ['x', '1'], ['set-cookie', 'b=2; Path=/']]);
    const out = [h.get('set-cookie'), h.getSetCookie(), list(h), new Headers().getSetCookie(), [...h.keys()], [...h.values()]];
    h.set('set-cookie', 'c=3'); out.push(h.getSetCookie(), list(h));
    return out;`,
  'headers-iteration-sorted': `const h = new Headers([['b', '2'], ['C', '3'], ['a', '1'], ['B', '22'], ['a-b', '4'], ['a_b', '5'], ['a.b', '6']]);
    const seen = [];
    const self = {};
    h.forEach(function (value, name, target) { seen.push([value, name, target === h, this === self]); }, self);
    const it = h.entries();
    const first = it.next();
    return [list(h), [...h.keys()], [...h.values()], [...h.entries()], seen, first, Object.prototype.toString.call(it),
      Object.prototype.toString.call(h), String(h), typeof h[Symbol.iterator], h[Symbol.iterator] === h.entries,
      Object.getPrototypeOf(Object.getPrototypeOf(it)) === Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()))];`,
  'headers-live-iterator': `const h = new Headers([['b', '1']]);
    const it = h.keys();
    h.append('a', '1'); h.append('c', '1');
    return [it.next().value, it.next().value, it.next().value, it.next().done];`,
  'headers-method-errors': `const h = new Headers();
    return [t(() => h.get()), t(() => h.append('a')), t(() => h.set('a')), t(() => h.has()), t(() => h.delete()),
      t(() => h.get('a b')), t(() => h.forEach(1)), t(() => Headers.prototype.get.call({}, 'a')),
      t(() => Response.error().headers.set('a', 'b')), t(() => Response.error().headers.append('a', 'b')), t(() => Response.error().headers.delete('a')),
      t(() => h.append('a', 'x\\u0000y')).split(':')[0], t(() => h.set('a', 'b\\nc')).split(':')[0]];`,
  'response-basics': `const r = new Response('héllo €');
    return [r.status, r.statusText, r.ok, r.type, r.url, r.redirected, r.bodyUsed, list(r.headers), await r.text(), r.bodyUsed,
      Object.prototype.toString.call(r)];`,
  'response-init': `const r = new Response('x', { status: 404, statusText: 'Not Here', headers: [['X-A', '1'], ['content-type', 'text/x']] });
    r.headers.set('x-b', '2');
    return [r.status, r.statusText, r.ok, list(r.headers),
      new Response(null, { status: 299 }).ok, new Response(null, { status: 300 }).ok, new Response(null, { status: 200.7 }).status,
      new Response(null, { status: 599 }).status, new Response(undefined, { status: 204 }).status];`,
  'response-status-errors': `return [t(() => new Response('x', { status: 199 })), t(() => new Response('x', { status: 600 })), t(() => new Response(null, { status: 0 })),
    t(() => new Response(null, { status: 'abc' })), t(() => new Response('x', { status: 204 })), t(() => new Response('x', { status: 304 })),
    t(() => new Response('', { status: 205 })), t(() => new Response('x', { statusText: 'a\\nb' })), t(() => new Response('x', { statusText: 'é' }).statusText)];`,
  'response-bodies-bytes': `const bytes = new Uint8Array([0, 1, 127, 128, 255, 10]);
    const view = new Uint8Array([9, 9, 1, 2, 3, 9]).subarray(2, 5);
    const dv = new DataView(new Uint8Array([7, 8, 9, 10]).buffer, 1, 2);
    const out = [];
    for (const body of [bytes, bytes.buffer, view, dv, new Uint16Array([0x4142, 0xffff]), new ArrayBuffer(0)]) {
      const r = new Response(body);
      out.push([list(r.headers), [...new Uint8Array(await r.arrayBuffer())]]);
    }
    const copied = new Uint8Array([1, 2]);
    const r = new Response(copied);
    copied[0] = 99;
    out.push([...await r.bytes()], (await new Response('a').bytes()).constructor.name);
    return out;`,
  'response-bodies-text': `const out = [];
    for (const body of ['', 'plain', 'é€𝄞', '\\ud800', new Uint8Array([0xef, 0xbb, 0xbf, 0x41]), new Uint8Array([0xff, 0x41, 0xc3]),
      new URLSearchParams('a=1&b=é f'), new URLSearchParams({ q: 'x&y' })]) {
      const r = new Response(body);
      out.push([r.headers.get('content-type'), await r.text()]);
    }
    const big = 'é'.repeat(100000);
    out.push((await new Response(big).text()) === big, (await new Response(big).arrayBuffer()).byteLength);
    return out;`,
  'response-json': `return [await new Response('{"a":[1,"é",null],"b":{"c":true}}').json(), await new Response('3').json(), await new Response(' "s" ').json(),
    await ta(() => new Response('{bad').json()), await ta(() => new Response('').json())];`,
  'response-body-used': `const r = new Response('x');
    const out = [r.bodyUsed, await r.text(), r.bodyUsed, await ta(() => r.text()), await ta(() => r.json()), await ta(() => r.arrayBuffer()), t(() => r.clone())];
    const n = new Response(null);
    out.push(await n.text(), await n.text(), n.bodyUsed, [...new Uint8Array(await n.arrayBuffer())]);
    const c = new Response('both');
    const d = c.clone();
    out.push(await c.text(), await d.text(), c.bodyUsed, d.bodyUsed, list(d.headers));
    return out;`,
  'response-statics': `const j = Response.json({ a: 'é' }, { status: 201, headers: { 'x-y': '1' } });
    const rd = Response.redirect('http://example.com/a b', 307);
    const e = Response.error();
    return [j.status, list(j.headers), await j.text(), list(Response.json('s', { headers: { 'content-type': 'text/x' } }).headers),
      t(() => Response.json(undefined)), t(() => Response.json(() => 1)), rd.status, list(rd.headers), rd.ok, await rd.text(),
      Response.redirect('http://x/').status, t(() => Response.redirect('http://x/', 200)), t(() => Response.redirect('/rel', 301)),
      e.type, e.status, e.ok, e.statusText, list(e.headers)];`,
  'response-invalid-this': `return [t(() => Object.getOwnPropertyDescriptor(Response.prototype, 'status').get.call({})), await ta(() => Response.prototype.text.call({})),
    await ta(() => Response.prototype.json.call(new Headers())), t(() => Headers.prototype.entries.call(new Response())),
    t(() => new Response('x', 5)).slice(0, 10)];`,
  'request-basics': `const r = new Request('http://a/b?c#d', { method: 'post', body: 'x', headers: { 'X-A': '1' } });
    const g = new Request(new URL('http://a/'));
    const copy = new Request(new Request('http://a/c', { method: 'POST', body: 'y' }), { method: 'PUT' });
    return [r.method, r.url, list(r.headers), r.redirect, r.bodyUsed, await r.clone().text(), await r.text(), r.bodyUsed, g.method, g.url,
      copy.method, copy.url, list(copy.headers), await copy.text(), new Request('http://a/', { method: 'delete' }).method, new Request('http://a/', { method: 'Options' }).method,
      new Request('http://a/', { redirect: 'manual' }).redirect, Object.prototype.toString.call(r)];`,
  'request-errors': `return [t(() => new Request('/x')), t(() => new Request('http://u:p@a/')), t(() => new Request('http://a/', { method: 'GET', body: 'x' })),
    t(() => new Request('http://a/', { method: 'HEAD', body: 'x' })), t(() => new Request('http://a/', { method: 'CONNECT' })),
    t(() => new Request('http://a/', { method: 'trace' })), t(() => new Request('http://a/', { method: 'a b' })),
    t(() => new Request('http://a/', { redirect: 'x' })), t(() => new Request())];`,
};

async function runCase(source: string, where: 'sandbox' | 'node', box?: Sandbox): Promise<unknown> {
  const body = `${HELPERS}\n${source}`;
  if (where === 'sandbox') return (box as Sandbox).run(body);
  const fn = vm.runInThisContext(`(async (Headers, Response, Request) => { ${body} })`) as (
    ...a: unknown[]
  ) => Promise<unknown>;
  return JSON.parse(JSON.stringify((await fn(Headers, Response, Request)) ?? null)) as unknown;
}

describe('Headers, Response and Request behave as Node 20’s', () => {
  const box = sandbox();
  for (const [name, source] of Object.entries(CASES)) {
    test(name, async () => {
      const expected = await runCase(source, 'node');
      const actual = await runCase(source, 'sandbox', box);
      assert.deepEqual(actual, expected);
    });
  }
  test('the table really compares (a case that differs fails)', async () => {
    const source = "return [typeof Headers, new Headers({ a: '1' }).get('A')];";
    assert.deepEqual(await runCase(source, 'sandbox', box), ['function', '1']);
    assert.notDeepEqual(await runCase(source, 'sandbox', box), ['function', null]);
  });
});

/** A server reply to a fetch. */
function fetchReply(over: Record<string, unknown> = {}): Reply {
  return [
    true,
    JSON.stringify({
      url: 'https://example.com/final',
      status: 200,
      statusText: 'OK',
      headers: [
        ['Content-Type', 'application/json; charset=utf-8'],
        ['Set-Cookie', 'a=1'],
        ['set-cookie', 'b=2'],
        ['X-Multi', 'x'],
        ['x-multi', 'y'],
      ],
      body: Buffer.from('{"ok":"é"}').toString('base64'),
      redirected: true,
      ...over,
    }),
  ];
}

describe('fetch: what reaches the transport', () => {
  const b64 = (bytes: number[] | string) =>
    (typeof bytes === 'string' ? Buffer.from(bytes) : Buffer.from(bytes)).toString('base64');
  const CASES: { call: string; args: Record<string, unknown> }[] = [
    {
      call: "fetch('https://example.com/a?b=c#frag')",
      args: {
        url: 'https://example.com/a?b=c#frag',
        method: 'GET',
        headers: [],
        redirect: 'follow',
      },
    },
    {
      call: "fetch(new URL('http://example.com/p q'))",
      args: { url: 'http://example.com/p%20q', method: 'GET', headers: [], redirect: 'follow' },
    },
    {
      call: "fetch({ url: 'http://example.com/like' })",
      args: { url: 'http://example.com/like', method: 'GET', headers: [], redirect: 'follow' },
    },
    {
      call: "fetch(new Request('http://example.com/r', { method: 'put', body: 'r', headers: { A: '1' }, redirect: 'manual' }))",
      args: {
        url: 'http://example.com/r',
        method: 'PUT',
        headers: [
          ['a', '1'],
          ['content-type', 'text/plain;charset=UTF-8'],
        ],
        body: b64('r'),
        redirect: 'manual',
      },
    },
    {
      call: "fetch(new Request('http://example.com/r', { method: 'POST', body: 'r' }), { method: 'PATCH', body: 'o', headers: [['b', '2']] })",
      args: {
        url: 'http://example.com/r',
        method: 'PATCH',
        headers: [
          ['b', '2'],
          ['content-type', 'text/plain;charset=UTF-8'],
        ],
        body: b64('o'),
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'post', body: 'é€' })",
      args: {
        url: 'http://example.com/',
        method: 'POST',
        headers: [['content-type', 'text/plain;charset=UTF-8']],
        body: b64('é€'),
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'Content-Type': 'application/json' } })",
      args: {
        url: 'http://example.com/',
        method: 'POST',
        headers: [['content-type', 'application/json']],
        body: b64('{"a":1}'),
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'PUT', body: new Uint8Array([0, 255, 128]) })",
      args: {
        url: 'http://example.com/',
        method: 'PUT',
        headers: [],
        body: b64([0, 255, 128]),
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'PUT', body: new Uint8Array([9, 1, 2, 9]).subarray(1, 3) })",
      args: {
        url: 'http://example.com/',
        method: 'PUT',
        headers: [],
        body: b64([1, 2]),
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'PUT', body: new Uint8Array([5, 6]).buffer })",
      args: {
        url: 'http://example.com/',
        method: 'PUT',
        headers: [],
        body: b64([5, 6]),
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'PUT', body: new DataView(new Uint8Array([1, 2, 3]).buffer, 2) })",
      args: {
        url: 'http://example.com/',
        method: 'PUT',
        headers: [],
        body: b64([3]),
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'POST', body: new URLSearchParams({ a: '1 2', b: 'é' }) })",
      args: {
        url: 'http://example.com/',
        method: 'POST',
        headers: [['content-type', 'application/x-www-form-urlencoded;charset=UTF-8']],
        body: b64('a=1+2&b=%C3%A9'),
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'DELETE', body: '' })",
      args: {
        url: 'http://example.com/',
        method: 'DELETE',
        headers: [['content-type', 'text/plain;charset=UTF-8']],
        body: '',
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'head', body: null, headers: new Headers([['X-B', '2'], ['x-a', '1'], ['x-b', '3'], ['Set-Cookie', 'c=1'], ['set-cookie', 'd=2']]) })",
      args: {
        url: 'http://example.com/',
        method: 'HEAD',
        headers: [
          ['set-cookie', 'c=1'],
          ['set-cookie', 'd=2'],
          ['x-a', '1'],
          ['x-b', '2, 3'],
        ],
        redirect: 'follow',
      },
    },
    {
      call: "fetch('http://example.com/', { method: 'options', redirect: 'error' })",
      args: { url: 'http://example.com/', method: 'OPTIONS', headers: [], redirect: 'error' },
    },
    {
      call: "fetch('http://example.com/', { method: 'PROPFIND' })",
      args: { url: 'http://example.com/', method: 'PROPFIND', headers: [], redirect: 'follow' },
    },
  ];
  for (const c of CASES) {
    test(c.call, async () => {
      const box = sandbox(() => fetchReply());
      const status = await box.run(`return (await ${c.call}).status;`);
      assert.equal(status, 200);
      assert.deepEqual(box.calls, [['fetch', c.args]]);
    });
  }

  const REFUSED: { call: string; error: string }[] = [
    { call: 'fetch()', error: 'TypeError: fetch: 1 argument required, but 0 found.' },
    { call: "fetch('/relative')", error: 'TypeError: Failed to parse URL from /relative' },
    {
      call: "fetch('ftp://example.com/')",
      error:
        'TypeError: fetch failed: the URL scheme "ftp:" is not supported (only http: and https:)',
    },
    {
      call: "fetch('data:text/plain,x')",
      error:
        'TypeError: fetch failed: the URL scheme "data:" is not supported (only http: and https:)',
    },
    {
      call: "fetch('http://u:p@example.com/')",
      error:
        'TypeError: Request cannot be constructed from a URL that includes credentials: http://u:p@example.com/',
    },
    {
      call: "fetch('http://example.com/', { body: 'x' })",
      error: 'TypeError: Request with GET/HEAD method cannot have body.',
    },
    {
      call: "fetch('http://example.com/', { method: 'HEAD', body: new Uint8Array(1) })",
      error: 'TypeError: Request with GET/HEAD method cannot have body.',
    },
    {
      call: "fetch('http://example.com/', { method: 'connect' })",
      error: "TypeError: 'connect' HTTP method is unsupported.",
    },
    {
      call: "fetch('http://example.com/', { method: 'GE T' })",
      error: "TypeError: 'GE T' is not a valid HTTP method.",
    },
    {
      call: "fetch('http://example.com/', { redirect: 'follow-me' })",
      error:
        'TypeError: fetch: follow-me is not an accepted type. Expected one of follow, manual, error.',
    },
    {
      call: "fetch('http://example.com/', { headers: { 'bad name': '1' } })",
      error: 'TypeError: Headers.append: "bad name" is an invalid header name.',
    },
    {
      call: "fetch('http://example.com/', 5)",
      error: 'TypeError: fetch: Expected init to be an object.',
    },
  ];
  for (const c of REFUSED) {
    test(`${c.call} rejects, and nothing reaches the transport`, async () => {
      const box = sandbox(() => fetchReply());
      const out = await box.run(`const p = ${c.call}; const isPromise = p instanceof Promise;
        try { await p; return 'resolved'; } catch (e) { return [isPromise, e instanceof TypeError, e.name + ': ' + e.message]; }`);
      assert.deepEqual(out, [true, true, c.error]);
      assert.deepEqual(box.calls, []);
    });
  }

  const BODIES = ['{ a: 1 }', '[1]', '42', 'true', 'Symbol("s")', '10n', '() => 1', 'new Map()'];
  for (const body of BODIES) {
    test(`a body of ${body} is a TypeError (no "[object Object]" is ever sent)`, async () => {
      const box = sandbox(() => fetchReply());
      const out =
        await box.run(`try { await fetch('http://example.com/', { method: 'POST', body: ${body} }); return 'sent'; }
        catch (e) { return [e.name, /a body must be a string, an ArrayBuffer, a typed array, a DataView or URLSearchParams/.test(e.message)]; }`);
      assert.deepEqual(out, ['TypeError', true]);
      assert.deepEqual(box.calls, []);
      const constructed = await box.run(
        `try { new Response(${body}); return 'made'; } catch (e) { return e.name; }`,
      );
      assert.equal(constructed, 'TypeError');
    });
  }
});

describe('fetch: what the function sees of the reply', () => {
  test('a response: status, headers (immutable, combined, set-cookie), url, redirected, type, body bytes', async () => {
    const box = sandbox(() => fetchReply());
    const out = await box.run(`const r = await fetch('https://example.com/start');
      const e = (f) => { try { f(); return 'no error'; } catch (x) { return x.name + ': ' + x.message; } };
      return [r.status, r.statusText, r.ok, r.url, r.redirected, r.type, [...r.headers], r.headers.get('x-multi'), r.headers.getSetCookie(),
        e(() => r.headers.set('a', 'b')), r instanceof Response, r.headers instanceof Headers, await r.clone().json(), await r.text(), r.bodyUsed,
        e(() => r.clone()), e(() => r.clone().headers.set('a', 'b'))];`);
    assert.deepEqual(out, [
      200,
      'OK',
      true,
      'https://example.com/final',
      true,
      'basic',
      [
        ['content-type', 'application/json; charset=utf-8'],
        ['set-cookie', 'a=1'],
        ['set-cookie', 'b=2'],
        ['x-multi', 'x, y'],
      ],
      'x, y',
      ['a=1', 'b=2'],
      'TypeError: immutable',
      true,
      true,
      { ok: 'é' },
      '{"ok":"é"}',
      true,
      'TypeError: Response.clone: Body has already been consumed.',
      'TypeError: Response.clone: Body has already been consumed.',
    ]);
  });

  test('body bytes arrive exact, every byte value, large', async () => {
    const bytes = Buffer.alloc(300000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 255;
    const box = sandbox(() => fetchReply({ body: bytes.toString('base64') }));
    const out =
      (await box.run(`const b = new Uint8Array(await (await fetch('http://example.com/')).arrayBuffer());
      let sum = 0; for (let i = 0; i < b.length; i++) sum = (sum * 31 + b[i]) >>> 0;
      return [b.length, b[0], b[1], b[255], b[b.length - 1], sum];`)) as number[];
    let sum = 0;
    for (const x of bytes) sum = (sum * 31 + x) >>> 0;
    assert.deepEqual(out, [
      bytes.length,
      bytes[0],
      bytes[1],
      bytes[255],
      bytes[bytes.length - 1],
      sum,
    ]);
  });

  const STATUSES: [number, string, string, boolean][] = [
    [201, 'GET', 'eA==', true],
    [204, 'GET', '', false],
    [304, 'GET', '', false],
    [404, 'GET', 'eA==', true],
    [200, 'HEAD', '', false],
    [302, 'GET', 'eA==', true],
    [599, 'GET', 'eA==', true],
  ];
  for (const [status, method, body, hasBody] of STATUSES) {
    test(`${method} → ${status}: ok, and the body reads as ${hasBody ? "'x'" : 'empty and unused'}`, async () => {
      const box = sandbox(() => fetchReply({ status, body }));
      const out =
        await box.run(`const r = await fetch('http://example.com/', { method: '${method}', redirect: 'manual' });
        return [r.status, r.ok, await r.text(), r.bodyUsed];`);
      assert.deepEqual(out, [status, status >= 200 && status <= 299, hasBody ? 'x' : '', hasBody]);
    });
  }

  const FAILURES: { name: string; reply: Reply; error: [string, string, unknown] }[] = [
    {
      name: 'a refusal by the egress policy',
      reply: [
        false,
        JSON.stringify({
          name: 'TypeError',
          message: 'fetch refused: 127.0.0.1 is a loopback address (EGRESS_ALLOW does not list it)',
        }),
      ],
      error: [
        'TypeError',
        'fetch refused: 127.0.0.1 is a loopback address (EGRESS_ALLOW does not list it)',
        null,
      ],
    },
    {
      name: "a failure named Error is still a TypeError (as Node's fetch)",
      reply: [
        false,
        JSON.stringify({
          name: 'Error',
          message: 'the response is over FETCH_MAX_BYTES',
          code: 'FETCH_TOO_LARGE',
        }),
      ],
      error: ['TypeError', 'the response is over FETCH_MAX_BYTES', 'FETCH_TOO_LARGE'],
    },
    {
      name: 'an error reply that is not JSON',
      reply: [false, 'garbage'],
      error: ['TypeError', 'fetch failed', null],
    },
    {
      name: 'an error reply that is not a string',
      reply: [false, 42],
      error: ['TypeError', 'fetch failed', null],
    },
    {
      name: 'ok that is not true',
      reply: ['yes', '{}'],
      error: ['TypeError', 'fetch failed', null],
    },
    {
      name: 'a result that is not JSON',
      reply: [true, 'not json'],
      error: ['TypeError', 'fetch failed: the server sent a malformed reply', null],
    },
    {
      name: 'a result without a status',
      reply: [true, JSON.stringify({ url: 'http://x/', headers: [], body: '' })],
      error: ['TypeError', 'fetch failed: the server sent a malformed reply', null],
    },
    {
      name: 'a result with bad header pairs',
      reply: [true, JSON.stringify({ url: 'http://x/', status: 200, headers: [['a']], body: '' })],
      error: ['TypeError', 'fetch failed: the server sent a malformed reply', null],
    },
    {
      name: 'the transport refusing at once (no invocation)',
      reply: 'throw',
      error: ['TypeError', 'fetch failed: no invocation is running', null],
    },
  ];
  for (const f of FAILURES) {
    test(`${f.name} → a sandbox TypeError`, async () => {
      const box = sandbox(() => f.reply);
      const out = await box.run(`try { await fetch('http://example.com/'); return 'resolved'; }
        catch (e) { return [e instanceof TypeError, e.constructor === TypeError, e.name, e.message, e.code === undefined ? null : e.code]; }`);
      assert.deepEqual(out, [true, true, ...f.error]);
      assert.equal(box.calls.length, 1);
    });
  }
});

describe('context.kv: what reaches the transport, and what the function sees', () => {
  const SENT: { call: string; op: string; args: Record<string, unknown> }[] = [
    { call: "kv.get('k')", op: 'kv.get', args: { key: 'k' } },
    { call: "kv.get('')", op: 'kv.get', args: { key: '' } },
    {
      call: "kv.put('k', { a: [1, 'é', null], d: new Date(0), skip: undefined })",
      op: 'kv.put',
      args: { key: 'k', value: '{"a":[1,"é",null],"d":"1970-01-01T00:00:00.000Z"}' },
    },
    { call: "kv.put('k', [undefined, 2])", op: 'kv.put', args: { key: 'k', value: '[null,2]' } },
    { call: "kv.put('k', null)", op: 'kv.put', args: { key: 'k', value: 'null' } },
    {
      call: "kv.put('k', 'text', { ttl: 1 })",
      op: 'kv.put',
      args: { key: 'k', value: '"text"', ttl: 1 },
    },
    {
      call: "kv.put('k', 1, { ttl: 2.5, ifAbsent: true })",
      op: 'kv.put',
      args: { key: 'k', value: '1', ttl: 2.5, ifAbsent: true },
    },
    { call: "kv.put('k', 1, { ifAbsent: false })", op: 'kv.put', args: { key: 'k', value: '1' } },
    {
      call: "kv.put('k', { toJSON() { return 'custom'; } })",
      op: 'kv.put',
      args: { key: 'k', value: '"custom"' },
    },
    { call: "kv.delete('k')", op: 'kv.delete', args: { key: 'k' } },
    { call: "kv.incr('n')", op: 'kv.incr', args: { key: 'n', by: 1 } },
    { call: "kv.incr('n', -2.5)", op: 'kv.incr', args: { key: 'n', by: -2.5 } },
    { call: 'kv.list()', op: 'kv.list', args: {} },
    {
      call: "kv.list({ prefix: 'user:', cursor: 'c1', limit: 1000 })",
      op: 'kv.list',
      args: { prefix: 'user:', cursor: 'c1', limit: 1000 },
    },
    { call: 'kv.list({ limit: 1 })', op: 'kv.list', args: { limit: 1 } },
  ];
  for (const c of SENT) {
    test(c.call, async () => {
      const box = sandbox(() => [true, 'true']);
      assert.equal(await box.run(`const kv = context.kv; return await ${c.call};`), true);
      assert.deepEqual(box.calls, [[c.op, c.args]]);
    });
  }

  const REFUSED: { call: string; error: [string, string, string | null] }[] = [
    {
      call: 'kv.get(1)',
      error: ['TypeError', 'kv.get: the key must be a string (got number)', 'KV_INVALID_KEY'],
    },
    {
      call: 'kv.get()',
      error: ['TypeError', 'kv.get: the key must be a string (got undefined)', 'KV_INVALID_KEY'],
    },
    {
      call: 'kv.delete(null)',
      error: ['TypeError', 'kv.delete: the key must be a string (got null)', 'KV_INVALID_KEY'],
    },
    {
      call: "kv.put(new String('k'), 1)",
      error: ['TypeError', 'kv.put: the key must be a string (got object)', 'KV_INVALID_KEY'],
    },
    {
      call: "kv.put('k')",
      error: ['TypeError', 'kv.put: the value is undefined, which is not a JSON value', null],
    },
    {
      call: "kv.put('k', () => 1)",
      error: ['TypeError', 'kv.put: the value is a function, which is not a JSON value', null],
    },
    {
      call: "kv.put('k', Symbol('s'))",
      error: ['TypeError', 'kv.put: the value is a symbol, which is not a JSON value', null],
    },
    {
      call: "kv.put('k', 10n)",
      error: ['TypeError', 'kv.put: the value is a bigint, which is not a JSON value', null],
    },
    {
      call: "kv.put('k', { f() {} })",
      error: [
        'TypeError',
        'kv.put: the value at key "f" is a function, which is not a JSON value',
        null,
      ],
    },
    {
      call: "kv.put('k', { n: [1, 2n] })",
      error: [
        'TypeError',
        'kv.put: the value at key "1" is a bigint, which is not a JSON value',
        null,
      ],
    },
    {
      call: "kv.put('k', (() => { const o = {}; o.o = o; return o; })())",
      error: ['TypeError', '', null],
    },
    {
      call: "kv.put('k', 1, { ttl: 0.5 })",
      error: ['TypeError', 'kv.put: ttl must be a number of seconds, at least 1 (got 0.5)', null],
    },
    {
      call: "kv.put('k', 1, { ttl: '60' })",
      error: [
        'TypeError',
        'kv.put: ttl must be a number of seconds, at least 1 (got string)',
        null,
      ],
    },
    {
      call: "kv.put('k', 1, { ttl: Infinity })",
      error: [
        'TypeError',
        'kv.put: ttl must be a number of seconds, at least 1 (got Infinity)',
        null,
      ],
    },
    {
      call: "kv.put('k', 1, 60)",
      error: ['TypeError', 'kv.put: the options must be an object (got number)', null],
    },
    {
      call: "kv.incr('n', '1')",
      error: ['TypeError', 'kv.incr: by must be a finite number (got string)', null],
    },
    {
      call: "kv.incr('n', NaN)",
      error: ['TypeError', 'kv.incr: by must be a finite number (got NaN)', null],
    },
    {
      call: "kv.list('p')",
      error: ['TypeError', 'kv.list: the options must be an object (got string)', null],
    },
    {
      call: 'kv.list({ prefix: 1 })',
      error: ['TypeError', 'kv.list: prefix must be a string (got number)', null],
    },
    {
      call: 'kv.list({ cursor: {} })',
      error: ['TypeError', 'kv.list: cursor must be a string (got object)', null],
    },
    {
      call: 'kv.list({ limit: 0 })',
      error: ['TypeError', 'kv.list: limit must be an integer from 1 to 1000 (got 0)', null],
    },
    {
      call: 'kv.list({ limit: 1001 })',
      error: ['TypeError', 'kv.list: limit must be an integer from 1 to 1000 (got 1001)', null],
    },
    {
      call: 'kv.list({ limit: 1.5 })',
      error: ['TypeError', 'kv.list: limit must be an integer from 1 to 1000 (got 1.5)', null],
    },
  ];
  for (const c of REFUSED) {
    test(`${c.call} rejects in the sandbox, and nothing reaches the transport`, async () => {
      const box = sandbox(() => [true, 'true']);
      const out =
        (await box.run(`const kv = context.kv; const p = ${c.call}; const isPromise = p instanceof Promise;
        try { await p; return 'resolved'; } catch (e) { return [isPromise, e instanceof TypeError, e.name, e.message, e.code === undefined ? null : e.code]; }`)) as unknown[];
      // A circular value: V8's own message (its wording is V8's).
      if (c.error[1] === '') out[3] = '';
      assert.deepEqual(out, [true, true, ...c.error]);
      assert.deepEqual(box.calls, []);
    });
  }

  const RESULTS: { call: string; reply: string; expected: unknown }[] = [
    { call: "kv.get('k')", reply: '{"a":[1,"é"]}', expected: [{ a: [1, 'é'] }, true] },
    { call: "kv.get('k')", reply: 'null', expected: [null, false] },
    { call: "kv.put('k', 1, { ifAbsent: true })", reply: 'false', expected: [false, false] },
    { call: "kv.incr('n', 5)", reply: '12', expected: [12, false] },
    {
      call: "kv.list({ prefix: 'a' })",
      reply: '{"keys":[{"key":"a1"},{"key":"a2","expiresAt":1700000000000}],"cursor":"x"}',
      expected: [
        { keys: [{ key: 'a1' }, { key: 'a2', expiresAt: 1700000000000 }], cursor: 'x' },
        true,
      ],
    },
  ];
  for (const r of RESULTS) {
    test(`${r.call} → ${r.reply} (the sandbox's own objects)`, async () => {
      const box = sandbox(() => [true, r.reply]);
      const out = await box.run(
        `const v = await context.kv.${r.call.slice(3)}; return [v, v !== null && typeof v === 'object' && v instanceof Object];`,
      );
      assert.deepEqual(out, r.expected);
    });
  }

  const ERRORS: { name: string; reply: Reply; expected: [string, string, string] }[] = [
    {
      name: 'KV_VALUE_TOO_LARGE',
      reply: [
        false,
        '{"name":"Error","message":"the value is 2000000 bytes; at most 1048576 (KV_MAX_VALUE)","code":"KV_VALUE_TOO_LARGE"}',
      ],
      expected: [
        'Error',
        'the value is 2000000 bytes; at most 1048576 (KV_MAX_VALUE)',
        'KV_VALUE_TOO_LARGE',
      ],
    },
    {
      name: 'KV_QUOTA_EXCEEDED',
      reply: [false, '{"name":"Error","message":"full","code":"KV_QUOTA_EXCEEDED"}'],
      expected: ['Error', 'full', 'KV_QUOTA_EXCEEDED'],
    },
    {
      name: 'KV_NOT_A_NUMBER',
      reply: [false, '{"name":"Error","message":"not a number","code":"KV_NOT_A_NUMBER"}'],
      expected: ['Error', 'not a number', 'KV_NOT_A_NUMBER'],
    },
    {
      name: 'KV_INVALID_KEY as a TypeError',
      reply: [
        false,
        '{"name":"TypeError","message":"the key is over 512 bytes","code":"KV_INVALID_KEY"}',
      ],
      expected: ['TypeError', 'the key is over 512 bytes', 'KV_INVALID_KEY'],
    },
    {
      name: 'KV_UNAVAILABLE',
      reply: [false, '{"name":"Error","message":"the store is down","code":"KV_UNAVAILABLE"}'],
      expected: ['Error', 'the store is down', 'KV_UNAVAILABLE'],
    },
    {
      name: 'an error reply that is not JSON',
      reply: [false, '<html>'],
      expected: ['Error', 'the service failed', 'KV_UNAVAILABLE'],
    },
    {
      name: 'an error reply that is not a string',
      reply: [false, undefined],
      expected: ['Error', 'the service failed', 'KV_UNAVAILABLE'],
    },
    {
      name: 'the transport refusing at once',
      reply: 'throw',
      expected: ['Error', 'no invocation is running', 'KV_UNAVAILABLE'],
    },
  ];
  for (const e of ERRORS) {
    test(`${e.name} → a sandbox ${e.expected[0]} with its code`, async () => {
      const box = sandbox(() => e.reply);
      const out = await box.run(`try { await context.kv.incr('n'); return 'resolved'; }
        catch (e) { return [e instanceof Error, e.constructor === (e.name === 'TypeError' ? TypeError : Error), e.name, e.message, e.code]; }`);
      assert.deepEqual(out, [true, true, ...e.expected]);
    });
  }
  test('a result that is not JSON rejects with KV_UNAVAILABLE', async () => {
    const box = sandbox(() => [true, 'nope']);
    assert.deepEqual(
      await box.run(
        `return await context.kv.get('k').then(() => 'resolved', (e) => [e instanceof Error, e.message, e.code]);`,
      ),
      [true, 'the service sent a malformed reply', 'KV_UNAVAILABLE'],
    );
  });
});

describe('context.kv, env and secrets: shape', () => {
  test('kv is frozen, its methods are frozen and work unbound; env and secrets are frozen copies of the server’s', async () => {
    const box = sandbox(
      () => [true, '1'],
      '{ "env": { "MODE": "test" }, "secrets": { "API_KEY": "s3cret" } }',
    );
    const out = await box.run(`'use strict';
      const kv = context.kv;
      const { get } = kv;
      const tries = [];
      try { kv.get = null; } catch (e) { tries.push(e.name); }
      try { kv.get.extra = 1; } catch (e) { tries.push(e.name); }
      try { context.env.MODE = 'x'; } catch (e) { tries.push(e.name); }
      try { context.secrets.NEW = 'x'; } catch (e) { tries.push(e.name); }
      return [Object.keys(kv), Object.isFrozen(kv), Object.values(kv).every(Object.isFrozen), await get('k'), tries, context.env, context.secrets,
        Object.isFrozen(context.env), Object.isFrozen(context.secrets), Object.getPrototypeOf(context.env) === Object.prototype];`);
    assert.deepEqual(out, [
      ['get', 'put', 'delete', 'incr', 'list'],
      true,
      true,
      1,
      ['TypeError', 'TypeError', 'TypeError', 'TypeError'],
      { MODE: 'test' },
      { API_KEY: 's3cret' },
      true,
      true,
      true,
    ]);
  });

  test('without env and secrets from the server, both are empty frozen objects', async () => {
    const box = sandbox();
    assert.deepEqual(
      await box.run(
        'return [context.env, context.secrets, Object.isFrozen(context.env), Object.isFrozen(context.secrets)];',
      ),
      [{}, {}, true, true],
    );
  });

  test('one kv client per sandbox: every context gets the same frozen object', () => {
    const sandboxVm = new VM({ eval: false, wasm: false, allowAsync: true });
    const attach = (sandboxVm.run(GLOBALS_SOURCE) as InstallGlobals)(hostCall, () => undefined);
    const a = sandboxVm.run('({})') as { kv?: unknown };
    const b = sandboxVm.run('({ env: { X: "1" } })') as { kv?: unknown };
    attach(a);
    attach(b);
    attach(null);
    attach('text');
    assert.ok(a.kv !== undefined);
    assert.equal(a.kv, b.kv);
  });

  test('the globals are installed lazily: fetch and friends appear with Node’s attributes', async () => {
    const box = sandbox();
    const out =
      await box.run(`const d = (n) => { const x = Object.getOwnPropertyDescriptor(globalThis, n); return [typeof (x.get || x.value), x.enumerable, x.configurable]; };
      return [d('fetch'), d('Headers'), d('Response'), d('Request'), typeof fetch, d('fetch'), fetch.name, Headers.name, Response.length];`);
    assert.deepEqual(out, [
      ['function', true, true],
      ['function', false, true],
      ['function', false, true],
      ['function', false, true],
      'function',
      ['function', true, true],
      'fetch',
      'Headers',
      0,
    ]);
  });
});

test('fetch, Headers and kv keep working after the function has replaced the intrinsics they use', async () => {
  const box = sandbox((op) => (op === 'fetch' ? fetchReply() : [true, '{"v":1}']));
  const out = await box.run(`
    const realPromise = Promise;
    const realStringify = JSON.stringify;
    JSON.parse = () => ({ hijacked: true });
    JSON.stringify = () => '"hijacked"';
    String.prototype.toLowerCase = () => 'hijacked';
    String.prototype.slice = () => 'hijacked';
    String.prototype.charCodeAt = () => 0;
    Array.prototype.push = () => { throw new Error('push hijacked'); };
    Array.prototype.sort = () => { throw new Error('sort hijacked'); };
    Array.prototype.splice = () => { throw new Error('splice hijacked'); };
    Object.defineProperty = () => { throw new Error('defineProperty hijacked'); };
    Object.freeze = (o) => o;
    Reflect.apply = () => 'hijacked';
    Function.prototype.call = () => 'hijacked';
    globalThis.Promise = function () { throw new Error('Promise hijacked'); };
    const h = new Headers([['B', '1'], ['A', '2']]);
    h.delete('b');
    const r = await fetch('http://example.com/x', { method: 'post', body: 'é' });
    const got = await context.kv.get('k');
    // The harness stringifies the result with the context's JSON: give it back.
    JSON.stringify = realStringify;
    return [[...h], r.status, r.headers.get('X-MULTI'), await r.json(), got, await context.kv.put('k', { a: 1 }).then(() => 'put'), Object.isFrozen(context.kv),
      r.text() instanceof realPromise];
  `);
  assert.deepEqual(out, [[['a', '2']], 200, 'x, y', { ok: 'é' }, { v: 1 }, 'put', true, true]);
  assert.deepEqual(
    box.calls.map(([op, args]) => [op, JSON.stringify(args)]),
    [
      [
        'fetch',
        JSON.stringify({
          url: 'http://example.com/x',
          method: 'POST',
          headers: [['content-type', 'text/plain;charset=UTF-8']],
          body: 'w6k=',
          redirect: 'follow',
        }),
      ],
      ['kv.get', '{"key":"k"}'],
      ['kv.put', '{"key":"k","value":"{\\"a\\":1}"}'],
    ],
  );
});
