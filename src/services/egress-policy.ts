/**
 * The egress policy of docs/spec.md §8: which connections an outbound `fetch` may open. Public addresses
 * are allowed; the special-purpose ranges of ip-ranges.ts (loopback, private, link-local, CGNAT,
 * multicast, unspecified, reserved…) and the server's own listening address are refused unless
 * EGRESS_ALLOW lists them. The decision is pure and is taken on the resolved address of every
 * connection (outbound-fetch.ts calls it from its DNS lookup and again on the connected socket).
 */
import os from 'node:os';
import { ConfigError } from '../errors';
import { embeddedIpv4, formatIp, inRange, parseIp, parseRange, specialRange } from './ip-ranges';
import type { IpAddress, IpRange } from './ip-ranges';

/** One EGRESS_ALLOW entry; `port` absent = any port. */
export type AllowRule = { text: string; port?: number } & (
  | { kind: 'host'; host: string }
  | { kind: 'suffix'; suffix: string }
  | { kind: 'range'; range: IpRange }
);

/** A DNS name: dot-separated labels of letters, digits, `-` and `_` (SRV-style names use it). */
const HOST_NAME =
  /^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/**
 * Parses EGRESS_ALLOW entries: host names (exact, case-insensitive), `*.suffix` (any name below
 * suffix, not suffix itself), IPv4/IPv6 CIDRs or single addresses, each with an optional `:port`
 * (IPv6 in brackets when it has a port: `[::1]:8080`, `[fd00::/8]:443`).
 * @throws ConfigError naming EGRESS_ALLOW and the bad entry.
 */
export function parseEgressAllow(entries: readonly string[]): AllowRule[] {
  return entries.map((entry) => {
    try {
      return parseEntry(entry.trim());
    } catch (err) {
      throw new ConfigError(`EGRESS_ALLOW: invalid entry "${entry}": ${(err as Error).message}`);
    }
  });
}

function parseEntry(text: string): AllowRule {
  let target = text;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracketed) [, target, portText] = bracketed;
  else if (text.split(':').length === 2) [target, portText] = text.split(':');
  // More than one colon without brackets is a bare IPv6 address or range: no port.
  const port = portText === undefined ? undefined : parsePort(portText);
  if (target === '') throw new Error('empty host');
  if (bracketed && parseIp(target.split('/')[0])?.family !== 6) {
    throw new Error('brackets hold an IPv6 address or range');
  }
  if (/^[\d.]+(\/.*)?$/.test(target) || target.includes(':') || target.includes('/')) {
    return { kind: 'range', range: parseRange(target), text, port };
  }
  const name = target.toLowerCase().replace(/\.$/, '');
  if (name.startsWith('*.')) {
    if (!HOST_NAME.test(name.slice(2))) throw new Error('not a valid *.suffix');
    return { kind: 'suffix', suffix: name.slice(1), text, port };
  }
  if (!HOST_NAME.test(name)) {
    throw new Error('use a host name, *.suffix, an IP address or a CIDR, with an optional :port');
  }
  return { kind: 'host', host: name, text, port };
}

function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new Error('port must be 1–65535');
  }
  return Number(text);
}

export type EgressDecision = { allowed: true; rule?: string } | { allowed: false; reason: string };

export interface EgressPolicy {
  /** False with EGRESS=off: every request is refused before any DNS lookup. */
  readonly enabled: boolean;
  /**
   * The decision for one connection: the host name asked for (if any), the resolved address and
   * port. Pure: no I/O. A refusal's reason names the address and the range or rule.
   */
  decide(target: { host?: string; address: string; port: number }): EgressDecision;
}

export interface EgressPolicyOptions {
  mode: 'on' | 'off';
  allow: AllowRule[];
  /** Where this server listens; an unspecified address (0.0.0.0, ::) means every local address. */
  ownAddresses?: { address: string; port: number }[];
  /** This machine's interface addresses, for unspecified own addresses (default: read once from os). */
  localAddresses?: string[];
}

/** Builds the policy; everything it needs is read here, so decide() stays pure. */
export function createEgressPolicy(options: EgressPolicyOptions): EgressPolicy {
  const { mode, allow } = options;
  const own = (options.ownAddresses ?? []).map(({ address, port }) => ({
    ip: parseIp(address),
    text: address,
    port,
  }));
  const local = (options.localAddresses ?? interfaceAddresses())
    .map((address) => parseIp(address))
    .filter((ip): ip is IpAddress => ip !== undefined);
  const isLocal = (ip: IpAddress): boolean =>
    specialRange(ip)?.kind === 'loopback' ||
    local.some((l) => l.value === ip.value && l.family === ip.family);

  /** The server's own listening address, when the target is it. */
  function ownAddress(ip: IpAddress, port: number): string | undefined {
    for (const o of own) {
      if (o.port !== port || !o.ip) continue;
      const unspecified = o.ip.value === 0n;
      // `::` listens on IPv4 as well (dual stack); `0.0.0.0` on IPv4 only.
      if (unspecified && (o.ip.family === 6 || ip.family === 4) && isLocal(ip)) return o.text;
      if (!unspecified && o.ip.family === ip.family && o.ip.value === ip.value) return o.text;
    }
    return undefined;
  }

  return {
    enabled: mode === 'on',
    decide(target) {
      if (mode === 'off')
        return { allowed: false, reason: 'EGRESS=off refuses every outbound request' };
      const literal = parseIp(target.address);
      if (!literal) return { allowed: false, reason: `"${target.address}" is not an IP address` };
      const embedded = embeddedIpv4(literal);
      const ip = embedded?.ipv4 ?? literal;
      const shown = embedded
        ? `${formatIp(literal)} (${embedded.via} ${formatIp(ip)})`
        : formatIp(literal);
      const host = target.host?.toLowerCase().replace(/\.$/, '');
      const rule = allow.find(
        (r) =>
          (r.port === undefined || r.port === target.port) &&
          (r.kind === 'host'
            ? host === r.host
            : r.kind === 'suffix'
              ? host !== undefined && host.endsWith(r.suffix)
              : inRange(literal, r.range) || inRange(ip, r.range)),
      );
      const self = ownAddress(ip, target.port) ?? ownAddress(literal, target.port);
      const entry = entryFor(host, ip, target.port);
      if (self !== undefined && rule?.port === undefined) {
        const origin = `http://${entry}`;
        return {
          allowed: false,
          reason:
            `${shown} port ${target.port} is this server's own listening address ` +
            `(${self}:${target.port}); only an EGRESS_ALLOW entry with that port opens it: ` +
            `set EGRESS_ALLOW=${entry} (to call another function of this server from a ` +
            `function: fetch('${origin}/<function name>'), which holds a worker while it waits)`,
        };
      }
      if (rule) return { allowed: true, rule: rule.text };
      const special = specialRange(ip);
      if (special) {
        return {
          allowed: false,
          reason:
            `${shown} is in ${special.range}, ${special.kind}; EGRESS_ALLOW does not list it ` +
            `(EGRESS_ALLOW=${entry} would open it)`,
        };
      }
      return { allowed: true };
    },
  };
}

/**
 * The EGRESS_ALLOW entry that opens exactly one refused destination, for a refusal to name: the
 * host name as the URL wrote it, else the address (an IPv4 address written as IPv6 as that IPv4
 * address, IPv6 in brackets), with the port. E.g. `localhost:3000`, `127.0.0.1:3000`, `[::1]:80`.
 */
function entryFor(host: string | undefined, ip: IpAddress, port: number): string {
  if (host !== undefined && parseIp(host) === undefined) return `${host}:${port}`;
  return ip.family === 6 ? `[${formatIp(ip)}]:${port}` : `${formatIp(ip)}:${port}`;
}

function interfaceAddresses(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((list) =>
    (list ?? []).map((i) => i.address),
  );
}
