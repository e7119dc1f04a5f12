/**
 * The behaviour table of the sandbox globals (globals.test.ts): one JavaScript source that runs
 * every case and describes each result (or thrown error) as plain JSON. The very same source runs
 * twice — inside a function in the sandbox, and in the test process with Node 20's own globals —
 * and the two descriptions must be equal. Random inputs come from a seeded generator in the
 * source itself, so both sides see the same ones.
 */

/** `(async function runCases(names) → { name: description })`, for both realms. */
export const CASES_SOURCE = String.raw`(async function runCases(names) {
  'use strict';
  const NAMES = new Set(['EvalError', 'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError', 'Error', 'DOMException']);
  function describe(v, seen) {
    seen = seen || new Map();
    const t = typeof v;
    if (t === 'undefined') return { undefined: true };
    if (t === 'number') return Object.is(v, -0) || !Number.isFinite(v) ? { number: Object.is(v, -0) ? '-0' : String(v) } : v;
    if (t === 'bigint') return { bigint: String(v) };
    if (t === 'symbol') return { symbol: String(v) };
    if (t === 'function') return { function: v.name };
    if (v === null || t !== 'object') return v;
    if (seen.has(v)) return { ref: seen.get(v) };
    seen.set(v, seen.size);
    const tag = Object.prototype.toString.call(v).slice(8, -1);
    if (ArrayBuffer.isView(v)) {
      return { view: tag, offset: v.byteOffset, length: v.byteLength, buffer: describe(v.buffer, seen) };
    }
    if (tag === 'ArrayBuffer') return { ArrayBuffer: Array.from(new Uint8Array(v)).join(','), resizable: v.resizable, max: v.maxByteLength };
    if (v instanceof Error || tag === 'Error' || tag === 'DOMException') {
      // vm2 gives every error caught in the sandbox an own 'cause' (undefined): not a difference.
      const own = Object.getOwnPropertyNames(v).filter((k) => k !== 'stack' && k !== 'toString' && !(k === 'cause' && v.cause === undefined)).sort();
      const out = { error: String(v.name), message: String(v.message), proto: v.constructor && v.constructor.name, own: own };
      if (v.code !== undefined) out.code = v.code;
      for (const k of ['input', 'base']) if (k in v) out[k] = v[k];
      if (v.cause !== undefined) out.cause = describe(v.cause, seen);
      out.isError = v instanceof Error;
      out.stackIsString = typeof v.stack === 'string';
      return out;
    }
    if (tag === 'Date') return { Date: String(v.getTime()) };
    if (tag === 'RegExp') return { RegExp: String(v), lastIndex: v.lastIndex };
    if (tag === 'Map') return { Map: Array.from(v, ([k, x]) => [describe(k, seen), describe(x, seen)]) };
    if (tag === 'Set') return { Set: Array.from(v, (x) => describe(x, seen)) };
    if (tag === 'URL') return { URL: v.href };
    if (tag === 'URLSearchParams') return { URLSearchParams: Array.from(v), text: String(v), size: v.size };
    if (['Number', 'String', 'Boolean', 'BigInt'].includes(tag)) return { boxed: tag, value: describe(v.valueOf(), seen) };
    if (Array.isArray(v)) return { array: v.length, items: Object.keys(v).map((k) => [k, describe(v[k], seen)]) };
    const proto = Object.getPrototypeOf(v);
    return {
      object: tag,
      proto: proto === Object.prototype ? 'Object' : proto === null ? null : String(proto.constructor && proto.constructor.name),
      entries: Object.keys(v).map((k) => [k, describe(v[k], seen)]),
    };
  }
  const attempt = (f) => { try { return f(); } catch (e) { return { threw: describe(e) }; } };
  function random(seed) {
    let s = seed >>> 0;
    return (n) => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s % n; };
  }
  const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
  const utf8 = (text) => new TextEncoder().encode(text);
  /** Byte arrays biased to the interesting bytes of UTF-8 and UTF-16. */
  function byteCases(seed, count) {
    const next = random(seed);
    const pool = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0xbb, 0xd8, 0xdc, 0xfe, 0xdb];
    const out = [[], [0xef, 0xbb, 0xbf], [0xef, 0xbb, 0xbf, 0x41], [0xff, 0xfe, 0x41, 0x00], [0xfe, 0xff, 0x00, 0x41], [0xe2, 0x82], [0xf0, 0x9f, 0x98, 0x80]];
    for (let i = 0; i < count; i++) {
      const length = next(9);
      const bytes = [];
      for (let k = 0; k < length; k++) bytes.push(next(3) === 0 ? next(256) : pool[next(pool.length)]);
      out.push(bytes);
    }
    return out;
  }
  function textCases(seed, count, alphabet) {
    const next = random(seed);
    const out = [];
    for (let i = 0; i < count; i++) {
      let s = '';
      const length = next(10);
      for (let k = 0; k < length; k++) s += alphabet[next(alphabet.length)];
      out.push(s);
    }
    return out;
  }
  function decodeAll(label, options, streamed) {
    const out = [];
    for (const bytes of byteCases(label.length * 7 + (streamed ? 1 : 0) + (options.fatal ? 2 : 0), 150)) {
      out.push(attempt(() => {
        const decoder = new TextDecoder(label, options);
        if (!streamed) return decoder.decode(new Uint8Array(bytes));
        let text = '';
        for (let i = 0; i < bytes.length; i += 2) text += decoder.decode(new Uint8Array(bytes.slice(i, i + 2)), { stream: true });
        return text + decoder.decode();
      }));
    }
    return out;
  }
  const URLS = [
    ['http://example.com'], ['https://user:pass@EXAMPLE.com:443/a/./b/../c?x=1&y=%20#frag'], ['HTTP://a.b:80/'],
    ['../x?q#h', 'http://h/a/b/c'], ['?only', 'http://h/p?old#f'], ['#f2', 'http://h/p?q#f'], ['//other/p', 'https://h/'],
    ['', 'http://h/p?q#f'], ['/abs', 'file:///etc/x'], ['http://[::1]:8080/'], ['http://[0:0::1]/'], ['http://münchen.de/ä?ö#ü'],
    ['http://xn--mnchen-3ya.de/'], ['http://a/p a t h?q u#f r'], ['http:\\\\back\\slash'], ['file:///C:/x/../y'],
    ['data:text/plain,hi there'], ['mailto:someone@example.com'], ['blob:https://a.com/uuid'], ['ws://x:81/'],
    ['javascript:alert(1)'], ['http://1.2.3.4/'], ['http://0x7f.1/'], ['http://%41.com/'], ['foo://bar/baz'],
    ['nope'], ['http://'], ['http://a b/'], ['http://[::1/'], ['x', 'nope'], ['https://exa mple.com'], ['\u0000http://a/'],
    ['  http://trim.me/  '], ['http://a/\ud800'], ['http://a/?\ud800=x'],
  ];
  const SETTERS = {
    protocol: ['https', 'ftp:', 'foo', 'HTTP', 'file', ''], username: ['u s', 'é', ''], password: ['p:w', ''],
    host: ['x.com:81', 'bad host', 'y.org', ''], hostname: ['n.example', 'a:b', ''], port: ['8080', 'abc', '', '99999', '80', '12x'],
    pathname: ['/a b/é', 'x', '', '/../..'], search: ['?a=1', 'b= 2', '', '?', '\ud800'], hash: ['x', '#y', '', ' z'],
  };
  const CASES = {
    'text-encoder-encode': () => ['', 'abc', 'é', '€', '😀', '\ud800', '\udc00x', 'a\ud800\udc00b', '\ud83d', undefined, null, 12, { toString: () => 'obj' }].map((s) => new TextEncoder().encode(s)),
    'text-encoder-encode-into': () => {
      const out = [];
      for (const s of ['', 'abc', 'aé€😀', '😀😀', '\ud800\ud800', 'x'.repeat(9)]) {
        for (const size of [0, 1, 2, 3, 4, 5, 8]) {
          const dest = new Uint8Array(size);
          out.push([new TextEncoder().encodeInto(s, dest), Array.from(dest)]);
        }
      }
      return out;
    },
    'text-encoder-errors': () => [
      attempt(() => new TextEncoder().encodeInto(5, new Uint8Array(2))),
      attempt(() => new TextEncoder().encodeInto('a', new Uint16Array(2))),
      attempt(() => new TextEncoder().encodeInto('a')),
      attempt(() => TextEncoder.prototype.encode.call({}, 'a')),
      new TextEncoder().encoding, Object.prototype.toString.call(new TextEncoder()),
    ],
    'text-decoder-labels': () => ['utf-8', 'UTF8', ' utf-8\n', 'unicode-1-1-utf-8', 'utf-16', 'utf-16le', 'UTF-16BE', 'unicodefffe', 'ucs-2', 'latin1',
      'ascii', 'us-ascii', 'ISO-8859-1', 'windows-1252', 'cp1252', 'l1', 'x-cp1252', 'foo', 'utf-32', '', 'utf-8x', undefined]
      .map((label) => attempt(() => { const d = new TextDecoder(label); return [d.encoding, d.fatal, d.ignoreBOM]; })),
    'text-decoder-options': () => [
      attempt(() => new TextDecoder('utf-8', 5)), attempt(() => new TextDecoder('utf-8', null).fatal),
      attempt(() => { const d = new TextDecoder('utf-16le', { fatal: 1, ignoreBOM: 'yes' }); return [d.fatal, d.ignoreBOM]; }),
      attempt(() => new TextDecoder().decode('str')), attempt(() => new TextDecoder().decode(null)), attempt(() => new TextDecoder().decode(5)),
      attempt(() => new TextDecoder().decode()), attempt(() => new TextDecoder().decode(undefined, { stream: true })),
      attempt(() => new TextDecoder().decode(new Uint8Array([0x68, 0x69]).buffer)),
      attempt(() => new TextDecoder().decode(new DataView(new Uint8Array([0x20, 0x68, 0x69]).buffer, 1))),
      attempt(() => new TextDecoder('utf-16le').decode(new Uint16Array([0x68, 0x20ac]))),
      attempt(() => TextDecoder.prototype.decode.call({}, new Uint8Array(1))),
      Object.prototype.toString.call(new TextDecoder()),
    ],
    'text-decoder-utf8': () => decodeAll('utf-8', {}, false),
    'text-decoder-utf8-fatal': () => decodeAll('utf-8', { fatal: true }, false),
    'text-decoder-utf8-ignore-bom': () => decodeAll('utf-8', { ignoreBOM: true }, false),
    'text-decoder-utf8-stream': () => decodeAll('utf-8', {}, true),
    'text-decoder-utf8-stream-fatal': () => decodeAll('utf-8', { fatal: true }, true),
    'text-decoder-utf16le': () => decodeAll('utf-16le', {}, false),
    'text-decoder-utf16le-fatal': () => decodeAll('utf-16le', { fatal: true }, false),
    'text-decoder-utf16le-stream': () => decodeAll('utf-16le', {}, true),
    'text-decoder-utf16be': () => decodeAll('utf-16be', {}, false),
    'text-decoder-utf16be-stream-fatal': () => decodeAll('utf-16be', { fatal: true }, true),
    'text-decoder-latin1': () => {
      const all = new Uint8Array(256).map((_, i) => i);
      const d = new TextDecoder('latin1', { fatal: true });
      return [new TextDecoder('latin1').decode(all), d.decode(all.subarray(0x70, 0xb0), { stream: true }), d.decode(all), new TextDecoder('ascii').decode(all)];
    },
    'text-decoder-bom-across-calls': () => {
      const d = new TextDecoder();
      return [d.decode(new Uint8Array([0xef]), { stream: true }), d.decode(new Uint8Array([0xbb]), { stream: true }),
        d.decode(new Uint8Array([0xbf, 0x41]), { stream: true }), d.decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x42])), d.decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x43]))];
    },
    'atob-fuzz': () => textCases(11, 400, 'AQZaqz09+/= \t\n\f\r*-_é\u0100.').map((s) => attempt(() => atob(s))),
    'atob-cases': () => ['', 'YQ', 'YQ=', 'YQ==', 'YR==', 'YWI', 'YWI=', 'YWJj', 'YWJj=', 'YWJj==', 'Y WJ j\n', 'a', 'abcde', '====', 'YQ===', 'Y=Q=', '\u00ffA==']
      .map((s) => attempt(() => atob(s))).concat([attempt(() => atob()), attempt(() => atob(undefined)), attempt(() => atob(null)), attempt(() => atob({ toString: () => 'aGk=' }))]),
    'btoa-cases': () => ['', 'a', 'ab', 'abc', 'abcd', '\u00ff\u0000\u0080', '€', '\ud800', null, undefined, 12, { toString: () => 'x' }]
      .map((s) => attempt(() => btoa(s))).concat([attempt(() => btoa())]),
    'btoa-atob-round-trip': () => { let s = ''; for (let i = 0; i < 256; i++) s += String.fromCharCode(i); return [btoa(s), atob(btoa(s)) === s]; },
    'url-parse': () => URLS.map(([input, base]) => attempt(() => {
      const u = base === undefined ? new URL(input) : new URL(input, base);
      return [u.href, u.origin, u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash, Array.from(u.searchParams), String(u), u.toJSON()];
    })),
    'url-static': () => URLS.map(([input, base]) => [URL.canParse(input, base), (URL.parse(input, base) || { href: null }).href])
      .concat([attempt(() => URL.canParse()), attempt(() => new URL()), attempt(() => URL.parse()), URL.canParse('x', undefined), attempt(() => new URL({ toString: () => 'http://obj/' }).href)]),
    'url-setters': () => {
      const out = [];
      for (const base of ['https://u:p@h.com:8443/a/b?q=1#f', 'file:///tmp/x', 'mailto:x@y', 'http://h/']) {
        for (const field of Object.keys(SETTERS)) {
          for (const value of SETTERS[field]) {
            const u = new URL(base);
            u[field] = value;
            out.push([base, field, value, u.href, u[field]]);
          }
        }
        out.push(attempt(() => { const u = new URL(base); u.href = 'https://z/p?x=1'; return u.href; }));
        out.push(attempt(() => { const u = new URL(base); u.href = 'bad'; return u.href; }));
        out.push(attempt(() => { const u = new URL(base); u.port = { toString: () => '1234' }; return u.port; }));
      }
      return out;
    },
    'url-search-params-live': () => {
      const out = [];
      const u = new URL('http://a/p?x=1&y=2#h');
      const sp = u.searchParams;
      out.push(sp === u.searchParams, sp.size);
      sp.append('z', 'a b~é');
      out.push(u.href, u.search);
      sp.delete('x');
      out.push(u.href);
      u.search = '?q=9&q=8';
      out.push(sp.get('q'), sp.getAll('q'), sp.size, u.href);
      sp.sort();
      sp.set('a', '1');
      out.push(u.href);
      u.href = 'http://b/?k=v';
      out.push(Array.from(sp));
      sp.delete('k');
      out.push(u.href, u.search);
      u.hash = 'new';
      sp.append('after', 'hash');
      out.push(u.href, String(u), JSON.stringify({ u }));
      u.search = '';
      out.push(sp.size, u.href);
      return out;
    },
    'url-object': () => [Object.prototype.toString.call(new URL('http://a')), Object.keys(URL.prototype), Object.getOwnPropertyNames(URL.prototype),
      Object.keys(new URL('http://a')), attempt(() => Object.getOwnPropertyDescriptor(URL.prototype, 'href').get.call({})), typeof URL.createObjectURL === 'function' ? 'skip' : 'skip'],
    'url-search-params-init': () => {
      const inits = ['?a=1&b=2', 'a=1&a=2', '', '?', '&&', '=', 'a=%zz', 'b=%C3%28', 'c=+%2B', 'd', '=e', 'f==', '%EF%BB%BFbom=1', 'x=%F0%9F%98%80&y=%e2%82', 'k=\ud800',
        { a: 1, b: [1, 2], c: { toString: () => 'z' } }, [['a', '1'], ['b', 2]], new Map([['m', 'n']]), (function* () { yield ['g', 'h']; yield new Set(['i', 'j']); })(),
        new URLSearchParams('copy=1'), [['a']], [1], { [Symbol.iterator]: 5 }, [[1, 2, 3]], null, undefined, 42, { __proto__: { inherited: 1 }, own: 2 }];
      return inits.concat(textCases(5, 200, 'a=&+%2F0Cé \ud800?#')).map((init) => attempt(() => new URLSearchParams(init)));
    },
    'url-search-params-methods': () => {
      const sp = new URLSearchParams('b=2&a=1&b=3&c=');
      const out = [];
      out.push(sp.get('b'), sp.get('zz'), sp.getAll('b'), sp.has('b'), sp.has('b', '3'), sp.has('b', '9'), sp.size);
      sp.append('a', 'x y');
      sp.set('b', 'only');
      sp.delete('c');
      out.push(String(sp));
      sp.append('d', '1'); sp.append('d', '2'); sp.delete('d', '1');
      out.push(String(sp));
      sp.append('B', '0'); sp.append('a', '0'); sp.append('\u00e9', '1'); sp.append('\ud83d\ude00', '2'); sp.append('\uff61', '3');
      sp.sort();
      out.push(Array.from(sp), Array.from(sp.keys()), Array.from(sp.values()), Array.from(sp.entries()));
      const seen = [];
      sp.forEach(function (value, key, self) { seen.push([value, key, self === sp, this && this.tag]); }, { tag: 't' });
      out.push(seen);
      const it = sp.keys();
      out.push(Object.prototype.toString.call(it), it[Symbol.iterator]() === it, it.next());
      sp.append('late', 'yes');
      out.push(Array.from(it), it.next());
      out.push(attempt(() => sp.append('only-one')), attempt(() => sp.get()), attempt(() => sp.forEach(5)), attempt(() => URLSearchParams.prototype.get.call({}, 'a')));
      out.push(Object.getOwnPropertyNames(URLSearchParams.prototype), Object.keys(URLSearchParams.prototype), Object.prototype.toString.call(sp));
      return out;
    },
    'url-search-params-serialize': () => {
      const strings = textCases(9, 150, 'az09*-._~!\'()+ %&=?/é€😀\ud800\udc00\u0000\t');
      return strings.map((s, i) => new URLSearchParams([[s, strings[(i + 1) % strings.length]]]).toString());
    },
    'crypto-digest': async () => {
      const out = [];
      const data = [new Uint8Array(0), utf8('abc'), utf8('The quick brown fox jumps over the lazy dog'), new Uint8Array(1000).map((_, i) => i * 7)];
      for (const name of ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512', 'sha-256', { name: 'Sha-512' }]) {
        for (const bytes of data) out.push(hex(await crypto.subtle.digest(name, bytes)));
      }
      const big = utf8('0123456789abcdef');
      out.push(hex(await crypto.subtle.digest('SHA-256', big.buffer)), hex(await crypto.subtle.digest('SHA-256', big.subarray(3, 9))),
        hex(await crypto.subtle.digest('SHA-256', new DataView(big.buffer, 2, 5))), hex(await crypto.subtle.digest('SHA-256', new Uint16Array([1, 2, 3]))));
      const result = await crypto.subtle.digest('SHA-1', big);
      out.push(Object.prototype.toString.call(result), result instanceof ArrayBuffer);
      return out;
    },
    'crypto-digest-errors': async () => {
      const out = [];
      for (const args of [['MD5', new Uint8Array(1)], ['SHA-256 ', new Uint8Array(1)], [{}, new Uint8Array(1)], [5, new Uint8Array(1)], ['SHA-256', 'str'], ['SHA-256', [1, 2]], ['SHA-256'], []]) {
        const p = crypto.subtle.digest(...args);
        out.push(p instanceof Promise);
        try { out.push(hex(await p)); } catch (e) { out.push({ rejected: describe(e) }); }
      }
      return out;
    },
    'crypto-hmac': async () => {
      const out = [];
      const message = utf8('payload to sign');
      for (const hash of ['SHA-1', 'SHA-256', 'SHA-384', { name: 'sha-512' }]) {
        for (const keyBytes of [utf8('k'), utf8('secret-key-that-is-long-enough'), new Uint8Array(200).map((_, i) => 255 - i)]) {
          const key = await crypto.subtle.importKey('raw', keyBytes, { name: 'HMAC', hash }, false, ['sign', 'verify']);
          const sig = await crypto.subtle.sign('HMAC', key, message);
          const bad = new Uint8Array(sig); bad[0] ^= 1;
          out.push(hex(sig), await crypto.subtle.verify('HMAC', key, sig, message), await crypto.subtle.verify({ name: 'hmac' }, key, bad, message),
            await crypto.subtle.verify('HMAC', key, sig.slice(1), message), await crypto.subtle.verify('HMAC', key, new DataView(sig), message.buffer));
        }
      }
      const key = await crypto.subtle.importKey('raw', new Uint8Array([1, 2, 3, 250]), { name: 'HMAC', hash: 'SHA-384' }, true, ['verify', 'sign']);
      out.push(key.type, key.extractable, key.algorithm, key.usages, key.algorithm === key.algorithm, Object.prototype.toString.call(key), key instanceof CryptoKey);
      out.push(await crypto.subtle.exportKey('jwk', key), hex(await crypto.subtle.exportKey('raw', key)));
      const jwkKey = await crypto.subtle.importKey('jwk', { kty: 'oct', k: 'c2VjcmV0LWtleQ', alg: 'HS256' }, { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
      out.push(hex(await crypto.subtle.sign('HMAC', jwkKey, message)), await crypto.subtle.exportKey('jwk', jwkKey));
      const generated = await crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-512' }, true, ['sign']);
      out.push(generated.algorithm, (await crypto.subtle.exportKey('raw', generated)).byteLength);
      const short = await crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-1', length: 64 }, false, ['verify']);
      out.push(short.algorithm, short.usages, short.extractable);
      return out;
    },
    'crypto-hmac-errors': async () => {
      const raw = (bytes, algorithm, usages, extractable) => crypto.subtle.importKey('raw', bytes, algorithm, extractable === undefined ? true : extractable, usages || ['sign']);
      const signOnly = await raw(new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256' });
      const verifyOnly = await raw(new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256' }, ['verify'], false);
      const jwk = (data) => crypto.subtle.importKey('jwk', data, { name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
      const attempts = [
        () => raw(new Uint8Array(0), { name: 'HMAC', hash: 'SHA-256' }), () => raw(new Uint8Array(5), { name: 'HMAC' }),
        () => raw(new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256' }, ['encrypt']), () => raw(new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256' }, []),
        () => raw(new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256', length: 40 }).then((k) => k.algorithm),
        () => raw(new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256', length: 33 }), () => raw(new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256', length: 0 }),
        () => raw(new Uint8Array(5), { name: 'HMAC', hash: 'MD5' }), () => raw(new Uint8Array(5), {}), () => raw('str', { name: 'HMAC', hash: 'SHA-256' }),
        () => raw(new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256' }, ['sign', 'bogus']),
        () => crypto.subtle.importKey('raw', new Uint8Array(5), { name: 'HMAC', hash: 'SHA-256' }, true),
        () => jwk({ kty: 'oct', k: 'AQID-g', alg: 'HS512' }), () => jwk({ kty: 'RSA', k: 'AQID' }), () => jwk({ kty: 'oct' }),
        () => jwk({ kty: 'oct', k: 'AQID', use: 'enc' }), () => jwk({ kty: 'oct', k: 'AQID', key_ops: ['verify'] }),
        () => jwk({ kty: 'oct', k: 'AQID', ext: false }), () => jwk({ kty: 'oct', k: 'A*Q==' }).then((k) => crypto.subtle.exportKey('raw', k)).then(hex),
        () => crypto.subtle.sign('HMAC', verifyOnly, new Uint8Array(1)), () => crypto.subtle.verify('HMAC', signOnly, new Uint8Array(1), new Uint8Array(1)),
        () => crypto.subtle.sign('HMAC', {}, new Uint8Array(1)), () => crypto.subtle.sign('HMAC', signOnly, 'data'),
        () => crypto.subtle.sign('NOPE', signOnly, new Uint8Array(1)), () => crypto.subtle.verify('HMAC', signOnly, 'sig', new Uint8Array(1)),
        () => crypto.subtle.exportKey('raw', verifyOnly), () => crypto.subtle.exportKey('raw', {}), () => crypto.subtle.sign('HMAC', signOnly),
        () => crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-1', length: 12 }, true, ['sign']),
        () => crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-1', length: 0 }, true, ['sign']),
        () => crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-1' }, true, []), () => crypto.subtle.generateKey({ name: 'HMAC' }, true, ['sign']),
      ];
      const out = [];
      for (const f of attempts) {
        try { out.push({ resolved: describe(await f()) }); } catch (e) { out.push({ rejected: describe(e) }); }
      }
      return out;
    },
    'crypto-random': () => {
      const out = [];
      for (const Ctor of [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, BigInt64Array, BigUint64Array]) {
        const array = new Ctor(8);
        out.push([Ctor.name, crypto.getRandomValues(array) === array]);
      }
      const big = crypto.getRandomValues(new Uint8Array(65536));
      out.push(big.length, big.some((b) => b !== 0), new Set(crypto.getRandomValues(new Uint32Array(16))).size > 1);
      out.push(attempt(() => crypto.getRandomValues(new Float32Array(1))), attempt(() => crypto.getRandomValues(new Float64Array(1))),
        attempt(() => crypto.getRandomValues(new DataView(new ArrayBuffer(2)))), attempt(() => crypto.getRandomValues(new Uint8Array(65537))),
        attempt(() => crypto.getRandomValues(new Uint32Array(16385))), attempt(() => crypto.getRandomValues()), attempt(() => crypto.getRandomValues([1, 2])),
        attempt(() => crypto.getRandomValues(new ArrayBuffer(4))), crypto.getRandomValues(new Uint8Array(0)).length);
      const ids = new Set();
      for (let i = 0; i < 200; i++) ids.add(crypto.randomUUID());
      out.push(ids.size, [...ids].every((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id)));
      return out;
    },
    'crypto-objects': () => [Object.prototype.toString.call(crypto), Object.prototype.toString.call(crypto.subtle), crypto instanceof Crypto,
      crypto.subtle instanceof SubtleCrypto, crypto.subtle === crypto.subtle, typeof crypto.subtle.encrypt, attempt(() => new Crypto()),
      attempt(() => new CryptoKey()), attempt(() => new SubtleCrypto()), Object.getOwnPropertyNames(Object.getPrototypeOf(crypto)),
      Object.getOwnPropertyNames(SubtleCrypto.prototype)],
    'structured-clone-values': () => {
      const shared = { s: 1 };
      const buffer = new ArrayBuffer(8);
      new Uint8Array(buffer).set([1, 2, 3, 4, 5, 6, 7, 8]);
      const sparse = [1, , 3];
      sparse.extra = 'x';
      class Point { constructor() { this.x = 1; } get y() { return 2; } }
      const circular = { name: 'c' };
      circular.self = circular;
      circular.list = [circular, shared, shared];
      const re = /a+b/giy;
      re.lastIndex = 3;
      const values = [0, -0, NaN, Infinity, 'str', true, null, undefined, 10n, sparse, new Point(), { get g() { return 'got'; } },
        new Date(0), new Date(NaN), re, new Map([[shared, 'v'], ['k', shared]]), new Set([1, shared, 'x']), buffer,
        { a: new Uint8Array(buffer, 2, 4), b: new DataView(buffer, 1, 3), c: new Float64Array(1), d: new Uint16Array(buffer) },
        new ArrayBuffer(2, { maxByteLength: 8 }), [new Number(1), new String('s'), new Boolean(false), Object(5n)], circular,
        JSON.parse('{"__proto__": {"x": 1}, "plain": 2}'), Object.defineProperty({ v: 1 }, 'hidden', { value: 2 }), { [Symbol('k')]: 1, k: 2 },
        { [Symbol.toStringTag]: 'Foo', a: 1 }, Object.create(null)];
      return values.map((v) => attempt(() => structuredClone(v)));
    },
    'structured-clone-errors-cloned': () => {
      class MyError extends Error { constructor(m) { super(m); this.name = 'MyError'; this.extra = 1; } }
      const inner = { a: 1 };
      const noStack = new Error('x');
      delete noStack.stack;
      const renamed = new Error('r');
      renamed.name = 'RangeError';
      const getterMessage = new Error();
      Object.defineProperty(getterMessage, 'message', { get() { return 'g'; } });
      const moved = new RangeError('m');
      Object.setPrototypeOf(moved, TypeError.prototype);
      const errors = [new Error('e'), new TypeError('t', { cause: 1 }), new RangeError('r', { cause: inner }), new EvalError('ev'), new URIError('u'),
        new SyntaxError('s'), new ReferenceError('rf'), new MyError('mine'), noStack, renamed, getterMessage, moved, new Error()];
      return errors.map((e) => attempt(() => { const c = structuredClone(e); return [describe(c), c.stack === e.stack]; }));
    },
    'structured-clone-refused': () => [() => {}, function named(x) { return x; }, Symbol('sym'), { nested: () => 1 }, new WeakMap(), new WeakSet(),
      Promise.resolve(), (function () { return arguments; })(1), (function* () {})(), new Map().keys(), [1].values(), Object(Symbol('boxed'))]
      .map((v) => attempt(() => structuredClone(v)))
      .concat([attempt(() => structuredClone()), attempt(() => structuredClone(1, 5)), attempt(() => structuredClone(1, null)),
        attempt(() => structuredClone(1, { transfer: [{}] })), attempt(() => { const ab = new ArrayBuffer(1); return structuredClone(1, { transfer: [ab, ab] }); }),
        attempt(() => structuredClone(1, { transfer: 5 })), attempt(() => structuredClone(new Uint8Array([1, 2]), { transfer: [] }))]),
    'queue-microtask': async () => {
      const log = [];
      queueMicrotask(() => log.push('micro-1'));
      Promise.resolve().then(() => log.push('promise'));
      queueMicrotask(() => log.push('micro-2'));
      log.push('sync');
      await new Promise((resolve) => setTimeout(resolve, 0));
      return [log, attempt(() => queueMicrotask(1)), attempt(() => queueMicrotask()), attempt(() => queueMicrotask('s')), attempt(() => queueMicrotask(null))];
    },
    'dom-exception': () => {
      const e = new DOMException('msg', 'DataCloneError');
      const plain = new DOMException();
      return [e.name, e.message, e.code, e instanceof Error, Object.prototype.toString.call(e), Object.keys(e), String(e), plain.name, plain.message, plain.code,
        DOMException.DATA_CLONE_ERR, new DOMException('x', { name: 'AbortError' }).code, new DOMException('x', 'Custom').code, attempt(() => Object.getOwnPropertyDescriptor(DOMException.prototype, 'name').get.call({}))];
    },
  };
  const out = {};
  for (const name of names) {
    try { out[name] = describe(await CASES[name]()); } catch (e) { out[name] = { caseThrew: describe(e) }; }
  }
  return out;
})`;

/** The case names, in the order they run. */
export const CASE_NAMES = [
  ...CASES_SOURCE.matchAll(/^ {4}'([a-z0-9-]+)': (?:async )?\(\) =>/gm),
].map((m) => m[1]);
