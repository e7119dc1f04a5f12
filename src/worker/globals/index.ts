/**
 * The sandbox globals of SPEC §2 beyond what the envelope installs (console and timers):
 * `atob`/`btoa`, `TextEncoder`/`TextDecoder`, `URL`/`URLSearchParams`, `crypto` (with `Crypto`,
 * `SubtleCrypto`, `CryptoKey`), `structuredClone` and `DOMException`.
 *
 * GLOBALS_SOURCE is one script, compiled once per worker (a VMScript) and run in every new
 * context: it evaluates to `install(hostCall)`, which captures the intrinsics it relies on and
 * defines each global as a lazy accessor. A class is built the first time a function touches
 * its global, so a context that never uses URL or crypto pays for a few accessors only.
 * Everything runs inside the sandbox, in strict mode, from the sandbox's own intrinsics; the only
 * way out is `hostCall` (host-bridge.ts), which takes and returns primitives, and is held in this
 * closure, out of reach of function code.
 */
import { CLONE_SOURCE } from './clone';
import { CRYPTO_SOURCE } from './crypto';
import { ENCODING_SOURCE } from './encoding';
import { PRELUDE_SOURCE } from './prelude';
import { URL_SOURCE } from './url';

/** Node 20's attributes: classes not enumerable; functions and `crypto` enumerable. */
const INSTALL_SOURCE = String.raw`
  lazy('DOMException', getDOMException, false);
  lazy('TextEncoder', getTextEncoder, false);
  lazy('TextDecoder', getTextDecoder, false);
  lazy('URL', getURL, false);
  lazy('URLSearchParams', getURLSearchParams, false);
  lazy('Crypto', getCryptoClass, false);
  lazy('SubtleCrypto', getSubtleCryptoClass, false);
  lazy('CryptoKey', getCryptoKeyClass, false);
  lazy('crypto', getCrypto, true);
  // Plain functions cost nothing more to install than to describe.
  defineProperty(global, 'atob', { value: atob, writable: true, enumerable: true, configurable: true });
  defineProperty(global, 'btoa', { value: btoa, writable: true, enumerable: true, configurable: true });
  defineProperty(global, 'structuredClone', { value: structuredClone, writable: true, enumerable: true, configurable: true });
`;

export const GLOBALS_SOURCE = `(function install(hostCall) {
  'use strict';
${PRELUDE_SOURCE}
${ENCODING_SOURCE}
${URL_SOURCE}
${CRYPTO_SOURCE}
${CLONE_SOURCE}
${INSTALL_SOURCE}
})`;

/** What the globals script evaluates to inside a sandbox. */
export type InstallGlobals = (
  hostCall: (op: unknown, a?: unknown, b?: unknown, c?: unknown) => string,
) => void;
