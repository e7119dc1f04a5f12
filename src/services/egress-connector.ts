/**
 * The connections of an outbound fetch, with the egress policy in front (docs/spec.md §8): undici's own
 * connector does TCP and TLS; before it, an IP literal is decided as is and a host name through a
 * DNS lookup that answers only with allowed addresses; after it, the connected socket's peer is
 * decided once more, before undici writes a byte. So a name that resolves elsewhere the second
 * time (DNS rebinding) reaches nothing the policy refuses.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { LookupFunction } from 'node:net';
import { buildConnector } from 'undici';
import { EgressError } from '../errors';
import type { EgressPolicy } from './egress-policy';

/**
 * undici's connector, with the policy in front: an IP literal is decided before connecting, a
 * name through policyLookup, and the connected socket's peer once more before undici uses it.
 */
export function policyConnector(policy: EgressPolicy, timeout: number): buildConnector.connector {
  return (options, callback) => {
    const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80);
    const literal = net.isIP(options.hostname) !== 0;
    const host = literal ? undefined : options.hostname;
    if (literal) {
      const decision = policy.decide({ address: options.hostname, port });
      if (!decision.allowed) {
        process.nextTick(callback, new EgressError('EGRESS_REFUSED', decision.reason), null);
        return;
      }
    }
    const lookup = literal ? undefined : policyLookup(policy, options.hostname, port);
    buildConnector({ timeout, lookup })(options, (err, socket) => {
      if (err || !socket) {
        callback(err ?? new Error('no socket'), null);
        return;
      }
      const decision = policy.decide({
        host,
        address: socket.remoteAddress ?? '',
        port: socket.remotePort ?? port,
      });
      if (!decision.allowed) {
        socket.destroy();
        callback(new EgressError('EGRESS_REFUSED', decision.reason), null);
        return;
      }
      callback(null, socket);
    });
  };
}

/** dns.lookup that answers only with the addresses the policy allows for this host and port. */
function policyLookup(policy: EgressPolicy, host: string, port: number): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(
      hostname,
      { all: true, family: options.family, hints: options.hints },
      (err, addresses) => {
        if (err) {
          const failure = new EgressError(
            'FETCH_DNS_FAILED',
            `could not resolve ${hostname} (${err.code ?? err.message})`,
            { cause: err },
          );
          callback(failure, '', 4);
          return;
        }
        const decisions = addresses.map((a) => ({
          a,
          d: policy.decide({ host, address: a.address, port }),
        }));
        const allowed = decisions.filter(({ d }) => d.allowed).map(({ a }) => a);
        if (allowed.length === 0) {
          const first = decisions.find(({ d }) => !d.allowed)?.d;
          const reason = first && !first.allowed ? first.reason : 'no address';
          const list = addresses.map((a) => a.address).join(', ');
          callback(
            new EgressError('EGRESS_REFUSED', `${hostname} resolved to ${list}: ${reason}`),
            '',
            4,
          );
          return;
        }
        if (options.all) callback(null, allowed);
        else callback(null, allowed[0].address, allowed[0].family);
      },
    );
  };
}
