/**
 * The host side of the sandbox globals, called directly as sandbox code would call it: whatever
 * it is given, it returns a string (`+…` or `!…`), never throws, and never reads a property of,
 * or converts, an argument that is not a primitive (so no getter or toString of function code
 * runs on the host side).
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { hostCall, MAX_BRIDGE_CHARS } from '../../src/worker/host-bridge';

/** An object that records any attempt to read or convert it. */
function trap(touched: string[]): object {
  const record = (what: string) => () => {
    touched.push(what);
    return 'http://a/';
  };
  return {
    toString: record('toString'),
    valueOf: record('valueOf'),
    [Symbol.toPrimitive]: record('toPrimitive'),
    get length() {
      touched.push('length');
      return 1;
    },
  };
}

describe('hostCall', () => {
  test('answers each operation with +payload', () => {
    const url = JSON.parse(
      hostCall('url', '../x?q#h', 'http://u:p@Ex.com:81/a/b', undefined).slice(1),
    );
    assert.deepEqual(url, [
      'http://u:p@ex.com:81/x?q#h',
      'http://ex.com:81',
      'http:',
      'u',
      'p',
      'ex.com:81',
      'ex.com',
      '81',
      '/x',
      '?q',
      '#h',
    ]);
    const set = JSON.parse(hostCall('url-set', 'http://a/p', 'pathname', '/b c').slice(1));
    assert.equal(set[0], 'http://a/b%20c');
    for (const [hash, node] of [
      ['SHA-1', 'sha1'],
      ['SHA-256', 'sha256'],
      ['SHA-384', 'sha384'],
      ['SHA-512', 'sha512'],
    ]) {
      const data = 'd\u00e9\u00ff\u0000';
      const bytes = Buffer.from(data, 'latin1');
      assert.equal(
        hostCall('digest', hash, data, undefined),
        `+${createHash(node).update(bytes).digest().toString('latin1')}`,
      );
      assert.equal(
        hostCall('hmac', hash, 'k\u00ff', data),
        `+${createHmac(node, Buffer.from('k\u00ff', 'latin1')).update(bytes).digest().toString('latin1')}`,
      );
    }
    assert.equal(hostCall('random', 16, undefined, undefined).length, 17);
    assert.match(
      hostCall('uuid', undefined, undefined, undefined),
      /^\+[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  test('refuses bad operations and arguments with !message, without touching objects', () => {
    const touched: string[] = [];
    const bad: [unknown, unknown, unknown, unknown][] = [
      ['nope', 'a', 'b', 'c'],
      [undefined, undefined, undefined, undefined],
      [trap(touched), 'x', 'y', 'z'],
      [{ toString: () => 'url' }, 'http://a/', undefined, undefined],
      ['url', trap(touched), undefined, undefined],
      ['url', 'x', trap(touched), undefined],
      ['url', 'not a url', undefined, undefined],
      ['url', 42, undefined, undefined],
      ['url-set', 'http://a/', '__proto__', 'x'],
      ['url-set', 'http://a/', 'searchParams', 'x'],
      ['url-set', 'http://a/', 'constructor', 'x'],
      ['url-set', 'http://a/', 'toString', 'x'],
      ['url-set', 'http://a/', 'pathname', trap(touched)],
      ['url-set', trap(touched), 'pathname', '/x'],
      ['digest', 'MD5', 'x', undefined],
      ['digest', 'sha256', 'x', undefined],
      ['digest', 'SHA-256', trap(touched), undefined],
      ['digest', trap(touched), 'x', undefined],
      ['digest', 'SHA-256', new Uint8Array(4), undefined],
      ['hmac', 'SHA-256', 'k', trap(touched)],
      ['hmac', 'SHA-256', trap(touched), 'd'],
      ['random', 65537, undefined, undefined],
      ['random', -1, undefined, undefined],
      ['random', 1.5, undefined, undefined],
      ['random', '16', undefined, undefined],
      ['random', trap(touched), undefined, undefined],
      ['random', Number.NaN, undefined, undefined],
    ];
    for (const args of bad) {
      const result = hostCall(...args);
      assert.equal(typeof result, 'string');
      assert.ok(result.startsWith('!'), `${args.map((a) => typeof a).join()} → ${result}`);
      assert.ok(result.length <= 201);
    }
    assert.deepEqual(touched, []);
  });

  test('bounds what it takes: past MAX_BRIDGE_CHARS a string is refused, just under it works', () => {
    const big = 'a'.repeat(MAX_BRIDGE_CHARS + 1);
    assert.match(hostCall('digest', 'SHA-256', big, undefined), /^!data is over/);
    assert.match(hostCall('url', big, undefined, undefined), /^!input is over/);
    assert.match(hostCall('hmac', 'SHA-1', big, 'x'), /^!key is over/);
    const ok = hostCall('digest', 'SHA-1', big.slice(1), undefined);
    assert.equal(ok, `+${createHash('sha1').update(big.slice(1)).digest().toString('latin1')}`);
  });
});
