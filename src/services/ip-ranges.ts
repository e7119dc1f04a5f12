/**
 * IP addresses as numbers, CIDR ranges, and the table of special-purpose ranges the egress policy
 * refuses by default (docs/spec.md §8). Pure: no I/O. The table follows the IANA special-purpose address
 * registries (https://www.iana.org/assignments/iana-ipv4-special-registry,
 * https://www.iana.org/assignments/iana-ipv6-special-registry); anything outside IPv6 global
 * unicast (2000::/3) is refused as reserved.
 */
import net from 'node:net';

export interface IpAddress {
  family: 4 | 6;
  /** The address as an unsigned 32- or 128-bit number. */
  value: bigint;
}

export interface IpRange {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

const bits = (family: 4 | 6): number => (family === 4 ? 32 : 128);

/**
 * Parses a canonical IPv4 (dotted decimal) or IPv6 address; a zone (`fe80::1%eth0`) is ignored.
 * Returns undefined for anything else, including host names.
 */
export function parseIp(text: string): IpAddress | undefined {
  const address = text.replace(/%.*$/, '');
  if (net.isIPv4(address)) return { family: 4, value: ipv4Value(address) };
  if (!net.isIPv6(address)) return undefined;
  // A dotted IPv4 tail (`::ffff:127.0.0.1`) is the last two groups written another way.
  const text6 = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (...m: string[]) => {
    const hex = (x: string, y: string): string => ((Number(x) << 8) | Number(y)).toString(16);
    return `${hex(m[1], m[2])}:${hex(m[3], m[4])}`;
  });
  const [head, rest] = text6.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups =
    rest === undefined
      ? left
      : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  let value = 0n;
  for (const group of groups) value = (value << 16n) | BigInt(parseInt(group, 16));
  return { family: 6, value };
}

function ipv4Value(address: string): bigint {
  return address.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

/** Formats an address in canonical form (IPv6 compressed, lower case). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((ip.value >> shift) & 0xffn)).join('.');
  }
  if (ip.value >> 32n === 0xffffn)
    return `::ffff:${formatIp({ family: 4, value: ip.value & 0xffffffffn })}`;
  const groups = [...Array<number>(8).keys()].map((i) =>
    Number((ip.value >> BigInt(112 - 16 * i)) & 0xffffn),
  );
  // RFC 5952: compress the longest run (of two or more) of zero groups, the first one on ties.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/**
 * Parses `address/prefix` (or a bare address, a range of one).
 * @throws Error saying what is wrong, for the caller to wrap.
 */
export function parseRange(text: string): IpRange {
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip || text.includes('%')) throw new Error('not an IP address or CIDR range');
  const max = bits(ip.family);
  const prefixText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
    throw new Error(`prefix length must be 0–${max}`);
  }
  const prefix = Number(prefixText);
  const range = { family: ip.family, network: ip.value, prefix };
  if ((ip.value & ~mask(range)) !== 0n) {
    const network = formatIp({ family: ip.family, value: ip.value & mask(range) });
    throw new Error(`host bits are set: did you mean ${network}/${prefix}?`);
  }
  return range;
}

function mask(range: Pick<IpRange, 'family' | 'prefix'>): bigint {
  const width = BigInt(bits(range.family));
  const all = (1n << width) - 1n;
  return all ^ ((1n << (width - BigInt(range.prefix))) - 1n);
}

export function inRange(ip: IpAddress, range: IpRange): boolean {
  return ip.family === range.family && (ip.value & mask(range)) === range.network;
}

export function formatRange(range: IpRange): string {
  return `${formatIp({ family: range.family, value: range.network })}/${range.prefix}`;
}

/**
 * The IPv4 address an IPv6 address stands for, when it is one of the forms that reach an IPv4
 * host: IPv4-mapped (::ffff:0:0/96, which the kernel connects over IPv4), NAT64 (64:ff9b::/96,
 * which a NAT64 gateway forwards to it) and 6to4 (2002::/16, which relays route to it).
 */
export function embeddedIpv4(ip: IpAddress): { ipv4: IpAddress; via: string } | undefined {
  if (ip.family !== 6) return undefined;
  for (const { range, via, shift } of EMBEDDING) {
    if (inRange(ip, range)) {
      return { ipv4: { family: 4, value: (ip.value >> shift) & 0xffffffffn }, via };
    }
  }
  return undefined;
}

const EMBEDDING = [
  { range: parseRange('::ffff:0:0/96'), via: 'IPv4-mapped', shift: 0n },
  { range: parseRange('64:ff9b::/96'), via: 'NAT64', shift: 0n },
  { range: parseRange('2002::/16'), via: '6to4', shift: 80n },
];

/** Special-purpose ranges, most specific first: the first that contains an address names it. */
const SPECIAL: readonly { range: IpRange; kind: string }[] = (
  [
    ['0.0.0.0/32', 'unspecified'],
    ['0.0.0.0/8', '"this network"'],
    ['10.0.0.0/8', 'private'],
    ['100.64.0.0/10', 'shared (CGNAT)'],
    ['127.0.0.0/8', 'loopback'],
    ['169.254.169.254/32', 'link-local (cloud metadata)'],
    ['169.254.0.0/16', 'link-local'],
    ['172.16.0.0/12', 'private'],
    ['192.0.0.0/24', 'IETF protocol assignments'],
    ['192.0.2.0/24', 'documentation'],
    ['192.88.99.0/24', '6to4 relay anycast'],
    ['192.168.0.0/16', 'private'],
    ['198.18.0.0/15', 'benchmarking'],
    ['198.51.100.0/24', 'documentation'],
    ['203.0.113.0/24', 'documentation'],
    ['224.0.0.0/4', 'multicast'],
    ['255.255.255.255/32', 'broadcast'],
    ['240.0.0.0/4', 'reserved'],
    ['::/128', 'unspecified'],
    ['::1/128', 'loopback'],
    ['::/96', 'IPv4-compatible (deprecated)'],
    ['64:ff9b:1::/48', 'local-use NAT64'],
    ['100::/64', 'discard-only'],
    ['2001::/23', 'IETF protocol assignments (Teredo, benchmarking)'],
    ['2001:db8::/32', 'documentation'],
    ['3fff::/20', 'documentation'],
    ['5f00::/16', 'SRv6 segment identifiers'],
    ['fc00::/7', 'unique local (private)'],
    ['fe80::/10', 'link-local'],
    ['fec0::/10', 'site-local (deprecated)'],
    ['ff00::/8', 'multicast'],
  ] as const
).map(([cidr, kind]) => ({ range: parseRange(cidr), kind }));

const GLOBAL_UNICAST_V6 = parseRange('2000::/3');

/**
 * The special-purpose range an address falls in, or undefined for a public one. IPv6 outside
 * 2000::/3 is reserved. Does not look inside IPv6 forms of IPv4 (see embeddedIpv4).
 */
export function specialRange(ip: IpAddress): { range: string; kind: string } | undefined {
  for (const { range, kind } of SPECIAL) {
    if (inRange(ip, range)) return { range: formatRange(range), kind };
  }
  if (ip.family === 6 && !inRange(ip, GLOBAL_UNICAST_V6)) {
    return { range: '(outside 2000::/3)', kind: 'reserved' };
  }
  return undefined;
}
