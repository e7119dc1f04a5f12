/**
 * Addresses as numbers (src/services/ip-ranges.ts): parsing every IPv6 spelling, canonical
 * formatting (RFC 5952), ranges, and the IPv4 inside IPv6 forms. The policy's ranges themselves
 * are tested through decide() in egress.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { embeddedIpv4, formatIp, inRange, parseIp, parseRange } from '../../src/services/ip-ranges';

/** [input, canonical form, value as hex] */
const addresses: [string, string, string][] = [
  ['0.0.0.0', '0.0.0.0', '0'],
  ['127.0.0.1', '127.0.0.1', '7f000001'],
  ['255.255.255.255', '255.255.255.255', 'ffffffff'],
  ['::', '::', '0'],
  ['::1', '::1', '1'],
  ['1::', '1::', '10000000000000000000000000000'],
  ['2001:DB8:0:0:0:0:0:1', '2001:db8::1', '20010db8000000000000000000000001'],
  ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1', '20010db8000000010000000000000001'],
  ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1', '20010000000000010000000000000001'],
  ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4', '10000000000020000000000030004'],
  ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8', '10002000300040005000600070008'],
  ['1:0:3:4:5:6:7:8', '1:0:3:4:5:6:7:8', '10000000300040005000600070008'],
  ['::ffff:127.0.0.1', '::ffff:127.0.0.1', 'ffff7f000001'],
  ['::FFFF:7F00:1', '::ffff:127.0.0.1', 'ffff7f000001'],
  ['64:ff9b::192.0.2.33', '64:ff9b::c000:221', '64ff9b0000000000000000c0000221'],
  ['fe80::1%eth0', 'fe80::1', 'fe800000000000000000000000000001'],
];
for (const [input, canonical, hex] of addresses) {
  test(`parses and formats ${input}`, () => {
    const ip = parseIp(input);
    assert.ok(ip);
    assert.equal(ip.value.toString(16), hex);
    assert.equal(formatIp(ip), canonical);
    assert.deepEqual(parseIp(canonical), ip, 'the canonical form parses back');
  });
}

test('anything else is not an address', () => {
  for (const text of [
    '',
    'localhost',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '01.2.3.4',
    '1:2:3:4:5:6:7:8:9',
    ':::',
    '[::1]',
    '::1/128',
  ]) {
    assert.equal(parseIp(text), undefined, text);
  }
});

test('ranges contain exactly their addresses', () => {
  const cases: [string, string, boolean][] = [
    ['10.0.0.0/8', '10.255.255.255', true],
    ['10.0.0.0/8', '11.0.0.0', false],
    ['172.16.0.0/12', '172.31.0.1', true],
    ['172.16.0.0/12', '172.32.0.1', false],
    ['0.0.0.0/0', '200.1.1.1', true],
    ['0.0.0.0/0', '::1', false],
    ['fc00::/7', 'fdff::1', true],
    ['fc00::/7', 'fe00::1', false],
    ['::1/128', '::1', true],
    ['::1/128', '::2', false],
    ['::/0', '127.0.0.1', false],
  ];
  for (const [range, address, expected] of cases) {
    assert.equal(inRange(parseIp(address)!, parseRange(range)), expected, `${address} in ${range}`);
  }
});

test('IPv4 inside IPv6: mapped, NAT64 and 6to4 give the IPv4 address; others none', () => {
  const cases: [string, string | undefined, string | undefined][] = [
    ['::ffff:10.1.2.3', '10.1.2.3', 'IPv4-mapped'],
    ['64:ff9b::a01:203', '10.1.2.3', 'NAT64'],
    ['2002:a01:203::1', '10.1.2.3', '6to4'],
    ['2002:a01:203:ffff:ffff:ffff:ffff:ffff', '10.1.2.3', '6to4'],
    ['::10.1.2.3', undefined, undefined],
    ['2001:db8::a01:203', undefined, undefined],
    ['10.1.2.3', undefined, undefined],
  ];
  for (const [address, ipv4, via] of cases) {
    const embedded = embeddedIpv4(parseIp(address)!);
    assert.equal(embedded && formatIp(embedded.ipv4), ipv4, address);
    assert.equal(embedded?.via, via, address);
  }
});
