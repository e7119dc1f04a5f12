/**
 * The sandbox globals of docs/spec.md §2 beyond what the envelope installs (console and timers):
 * `atob`/`btoa`, `TextEncoder`/`TextDecoder`, `URL`/`URLSearchParams`, `crypto` (with `Crypto`,
 * `SubtleCrypto`, `CryptoKey`), `structuredClone`, `DOMException`, and the services of docs/spec.md §8:
 * `fetch` (with `Headers`, `Response`, `Request`) and what the envelope adds to each context
 * (`kv`, `env`, `secrets`).
 *
 * GLOBALS_SOURCE is one script, compiled once per worker (a VMScript) and run in every new
 * context: it evaluates to `install(hostCall, hostRequest)`, which captures the intrinsics it
 * relies on, defines each global as a lazy accessor, and returns `attachServices(context)` for
 * the envelope (services.ts). A class is built the first time a function touches
 * a global, so a context that never uses one pays for the captures and a few accessors only.
 * Everything runs inside the sandbox, in strict mode, from the sandbox's own intrinsics; the only
 * ways out are `hostCall` (host-bridge.ts), which takes and returns primitives, and `hostRequest`
 * (the runner's transport to the server's services), which takes strings and answers through a
 * callback with strings; both are held in this closure, out of reach of function code.
 */
import { CLONE_SOURCE } from './clone';
import { CRYPTO_SOURCE } from './crypto';
import { ENCODING_SOURCE } from './encoding';
import { FETCH_SOURCE } from './fetch';
import { PRELUDE_SOURCE } from './prelude';
import { SERVICES_SOURCE } from './services';
import { URL_SOURCE } from './url';

/**
 * The parts are built together on the first use of any global (their ~150 functions and tables
 * are not allocated in a context that never uses one); the prelude's captures are taken at once.
 * Attributes as in Node 20: classes not enumerable; functions and `crypto` enumerable.
 */
const INSTALL_SOURCE = String.raw`
  let parts;
  const part = (name) => () => {
    if (!parts) parts = buildParts();
    return parts[name]();
  };
  lazy('DOMException', getDOMException, false);
  lazy('TextEncoder', part('TextEncoder'), false);
  lazy('TextDecoder', part('TextDecoder'), false);
  lazy('URL', part('URL'), false);
  lazy('URLSearchParams', part('URLSearchParams'), false);
  lazy('Crypto', part('Crypto'), false);
  lazy('SubtleCrypto', part('SubtleCrypto'), false);
  lazy('CryptoKey', part('CryptoKey'), false);
  lazy('crypto', part('crypto'), true);
  lazy('atob', part('atob'), true);
  lazy('btoa', part('btoa'), true);
  lazy('structuredClone', part('structuredClone'), true);
  lazy('Headers', part('Headers'), false);
  lazy('Request', part('Request'), false);
  lazy('Response', part('Response'), false);
  lazy('fetch', part('fetch'), true);
  return attachServices;
`;

export const GLOBALS_SOURCE = `(function install(hostCall, hostRequest) {
  'use strict';
${PRELUDE_SOURCE}
${SERVICES_SOURCE}
  function buildParts() {
${ENCODING_SOURCE}
${URL_SOURCE}
${CRYPTO_SOURCE}
${CLONE_SOURCE}
${FETCH_SOURCE}
    return {
      TextEncoder: getTextEncoder, TextDecoder: getTextDecoder, URL: getURL, URLSearchParams: getURLSearchParams,
      Crypto: getCryptoClass, SubtleCrypto: getSubtleCryptoClass, CryptoKey: getCryptoKeyClass, crypto: getCrypto,
      atob: () => atob, btoa: () => btoa, structuredClone: () => structuredClone,
      Headers: getHeaders, Request: getRequest, Response: getResponse, fetch: () => fetch,
    };
  }
${INSTALL_SOURCE}
})`;

/**
 * The runner's transport to the server's services (docs/spec.md §8): `onReply(true, resultJson)` or
 * `onReply(false, errorJson)` later; throws at once outside an invocation.
 */
export type HostRequest = (
  op: string,
  argsJson: string,
  onReply: (ok: boolean, text: string) => void,
) => void;

/** Adds `kv`, `env` and `secrets` to an invocation's context (called by the envelope). */
export type AttachServices = (context: unknown) => void;

/** What the globals script evaluates to inside a sandbox. */
export type InstallGlobals = (
  hostCall: (op: unknown, a?: unknown, b?: unknown, c?: unknown) => string,
  hostRequest: HostRequest,
) => AttachServices;
