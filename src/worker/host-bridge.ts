/**
 * The host side of the sandbox globals (sandbox/globals/): the one function through which sandbox code
 * reaches Node's own URL parser and node:crypto. Only primitives cross it, both ways: it takes
 * an operation name and up to three strings or numbers, and returns one string, `+<payload>` on
 * success or `!<message>` on failure. It never throws (a host Error object handed to the sandbox
 * would carry the host realm's prototypes), never touches an argument that is not a primitive
 * (reading a property of a sandbox object could run its getters here, outside the watchdog's
 * view of sandbox code), and keeps no state between calls. Bytes travel as latin1 strings (one
 * character per byte): V8 stores those one byte per character, and Buffer converts them in one
 * native pass.
 *
 * The sandbox code coerces its arguments itself (so a toString() runs inside the sandbox, once)
 * and builds every object the function sees (URL, ArrayBuffer, errors) from its own realm.
 */
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';

/** The largest string the bridge takes: bytes to hash, a URL. The sandbox refuses larger first. */
export const MAX_BRIDGE_CHARS = 32 * 1024 * 1024;

/** WebCrypto hash names (as the sandbox normalized them) → node:crypto's. */
const HASHES: ReadonlyMap<string, string> = new Map([
  ['SHA-1', 'sha1'],
  ['SHA-256', 'sha256'],
  ['SHA-384', 'sha384'],
  ['SHA-512', 'sha512'],
]);

/** The URL setters the sandbox may call (an allowlist: the name becomes a property key). */
const URL_SETTERS: ReadonlySet<string> = new Set([
  'href',
  'protocol',
  'username',
  'password',
  'host',
  'hostname',
  'port',
  'pathname',
  'search',
  'hash',
]);

const MAX_RANDOM_BYTES = 65536;

class BridgeError extends Error {}

function text(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new BridgeError(`${what} must be a string`);
  if (value.length > MAX_BRIDGE_CHARS) {
    throw new BridgeError(`${what} is over ${MAX_BRIDGE_CHARS} characters`);
  }
  return value;
}

function hashName(value: unknown): string {
  const name = typeof value === 'string' ? HASHES.get(value) : undefined;
  if (name === undefined) throw new BridgeError('unsupported hash');
  return name;
}

/** A URL's parts, in the order the sandbox's URL class reads them. */
function urlParts(url: URL): string {
  return JSON.stringify([
    url.href,
    url.origin,
    url.protocol,
    url.username,
    url.password,
    url.host,
    url.hostname,
    url.port,
    url.pathname,
    url.search,
    url.hash,
  ]);
}

function run(op: unknown, a: unknown, b: unknown, c: unknown): string {
  switch (op) {
    case 'url': {
      // new URL(input, base): the parts as JSON, or a failure (the sandbox throws Invalid URL).
      const input = text(a, 'input');
      const base = b === undefined ? undefined : text(b, 'base');
      return urlParts(new URL(input, base));
    }
    case 'url-set': {
      // A setter on a parsed URL: Node's own setter rules (invalid values are ignored).
      const url = new URL(text(a, 'href'));
      const field = text(b, 'field');
      if (!URL_SETTERS.has(field)) throw new BridgeError('not a URL setter');
      (url as unknown as Record<string, string>)[field] = text(c, 'value');
      return urlParts(url);
    }
    case 'digest':
      return createHash(hashName(a))
        .update(Buffer.from(text(b, 'data'), 'latin1'))
        .digest()
        .toString('latin1');
    case 'hmac': {
      const key = Buffer.from(text(b, 'key'), 'latin1');
      const data = Buffer.from(text(c, 'data'), 'latin1');
      return createHmac(hashName(a), key).update(data).digest().toString('latin1');
    }
    case 'random': {
      if (typeof a !== 'number' || !Number.isInteger(a) || a < 0 || a > MAX_RANDOM_BYTES) {
        throw new BridgeError(`random takes 0 to ${MAX_RANDOM_BYTES} bytes`);
      }
      return randomBytes(a).toString('latin1');
    }
    case 'uuid':
      return randomUUID();
    default:
      throw new BridgeError('unknown operation');
  }
}

/**
 * The bridge: `hostCall(op, a, b, c)` → `+<result>` or `!<message>`. Never throws; a failure's
 * message is a host string the sandbox may show (it holds no path, no stack).
 */
export function hostCall(op: unknown, a: unknown, b: unknown, c: unknown): string {
  try {
    return `+${run(op, a, b, c)}`;
  } catch (err) {
    // Only the message, as a primitive: never the host Error itself.
    let message = 'the operation failed';
    try {
      if (err instanceof Error && typeof err.message === 'string') message = err.message;
    } catch {
      // keep the generic message
    }
    return `!${message.slice(0, 200)}`;
  }
}
