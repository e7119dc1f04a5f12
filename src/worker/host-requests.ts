/**
 * The worker's end of host calls (docs/spec.md §8 services): function code calls `kv.get`, `fetch`, …,
 * the sandbox-side code hands the call to `hostRequest`, which sends it to the pool (tagged with
 * the invocation running now, found through the runner's AsyncLocalStorage token), and the reply
 * comes back as `deliver`. Only primitives cross: an op name, JSON text, and a sandbox callback
 * that is later called with a boolean and a string, inside the invocation's async context.
 * Replies for an invocation that has ended are dropped.
 */
import type { CallMessage, ReplyMessage } from '../pool/wire';

/** What the runner tells this module about the invocation running now. */
export interface CallOwner {
  id: number;
  done: boolean;
  token: object;
}

interface PendingCall {
  owner: CallOwner;
  onReply: (ok: boolean, text: string) => unknown;
}

/** Calls in flight per invocation: past it a call is refused (a loop of calls never awaited). */
export const MAX_PENDING_CALLS = 64;
/** Largest arguments of one call, UTF-16 code units (a 6 MB fetch body in base64, and JSON). */
export const MAX_CALL_ARGS = 9 * 1024 * 1024;

export interface HostRequests {
  /**
   * The host function the sandbox gets. Returns '' when the call was sent, else why not (the
   * sandbox-side wrapper throws that as its own Error: no host error object crosses).
   */
  hostRequest(op: unknown, args: unknown, onReply: unknown): string;
  /** A reply from the pool. */
  deliver(reply: ReplyMessage): void;
}

export function createHostRequests(parts: {
  current: () => CallOwner | undefined;
  post: (message: CallMessage) => void;
  /** Runs `fn` in the invocation's async context (console and timers find it there). */
  within: (token: object, fn: () => void) => void;
}): HostRequests {
  const pending = new Map<number, PendingCall>();
  const perOwner = new WeakMap<CallOwner, number>();
  let nextCall = 1;
  return {
    hostRequest(op, args, onReply) {
      if (typeof op !== 'string' || typeof args !== 'string' || typeof onReply !== 'function') {
        return 'a host request takes an op name, JSON text and a callback';
      }
      const owner = parts.current();
      if (!owner || owner.done) {
        return `${op} can be called only while an invocation runs (not while the file loads, nor after it answered)`;
      }
      if (args.length > MAX_CALL_ARGS) return `${op}: the request is too large`;
      const inFlight = perOwner.get(owner) ?? 0;
      if (inFlight >= MAX_PENDING_CALLS) {
        return `${op}: at most ${MAX_PENDING_CALLS} calls may be in flight per invocation`;
      }
      perOwner.set(owner, inFlight + 1);
      const c = nextCall++;
      pending.set(c, { owner, onReply: onReply as PendingCall['onReply'] });
      parts.post({ t: 'call', id: owner.id, c, op, a: args });
      return '';
    },
    deliver(reply) {
      const call = pending.get(reply.c);
      if (!call) return;
      pending.delete(reply.c);
      const { owner, onReply } = call;
      perOwner.set(owner, (perOwner.get(owner) ?? 1) - 1);
      if (owner.done) return;
      parts.within(owner.token, () => {
        try {
          onReply(reply.ok === true, String(reply.r));
        } catch {
          // The sandbox-side callback settles a promise and catches its own errors.
        }
      });
    },
  };
}
