/**
 * The globals script, last part (in install()'s scope): defines each global of docs/spec.md §2
 * and §8 on the context as a lazy accessor (helpers.js `lazy`), with Node 20's attributes:
 * classes not enumerable; functions and `crypto` enumerable. The parts (parts/*.js, the body of
 * `buildParts`) are built together on the first use of any global but `DOMException`: their ~150
 * functions and tables are not allocated in a context that never uses one. After this, install()
 * returns `attachServices` (services.js) to the runner (see ../../globals.ts).
 */

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
