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
 * the envelope (sandbox/globals/services.js). A class is built the first time a function touches
 * a global, so a context that never uses one pays for the captures and a few accessors only.
 * Everything runs inside the sandbox, in strict mode, from the sandbox's own intrinsics; the only
 * ways out are `hostCall` (host-bridge.ts), which takes and returns primitives, and `hostRequest`
 * (the runner's transport to the server's services), which takes strings and answers through a
 * callback with strings; both are held in this closure, out of reach of function code.
 *
 * The code is in sandbox/globals/ (see sandbox-source.ts); this file only joins its parts, in
 * this order, into one function. The files of sandbox/globals/ share install()'s scope, and
 * those of sandbox/globals/parts/ share the scope of `buildParts()`, nested in it: every name a
 * file declares at its top level is visible to the others of its scope (.eslintrc.js declares
 * them to ESLint the same way).
 */
import { readSandboxFile } from './sandbox-source';

const part = (name: string): string => readSandboxFile(`globals/${name}`);

export const GLOBALS_SOURCE = `(function install(hostCall, hostRequest) {
'use strict';
${part('intrinsics.js')}
${part('helpers.js')}
${part('services.js')}
function buildParts() {
${part('parts/text-encoding.js')}
${part('parts/base64.js')}
${part('parts/url-search-params.js')}
${part('parts/url.js')}
${part('parts/crypto-algorithms.js')}
${part('parts/crypto.js')}
${part('parts/clone.js')}
${part('parts/fetch-headers.js')}
${part('parts/fetch-request.js')}
${part('parts/fetch.js')}
${part('parts/getters.js')}
return partGetters;
}
${part('install.js')}
return attachServices;
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
