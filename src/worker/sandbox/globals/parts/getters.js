/**
 * The end of `buildParts` (see ../../../globals.ts): one getter per global the parts build, by
 * global name. buildParts returns this table; install.js's `part(name)` calls the getter the
 * first time function code touches that global.
 */

const partGetters = {
  TextEncoder: getTextEncoder,
  TextDecoder: getTextDecoder,
  URL: getURL,
  URLSearchParams: getURLSearchParams,
  Crypto: getCryptoClass,
  SubtleCrypto: getSubtleCryptoClass,
  CryptoKey: getCryptoKeyClass,
  crypto: getCrypto,
  atob: () => atob,
  btoa: () => btoa,
  structuredClone: () => structuredClone,
  Headers: getHeaders,
  Request: getRequest,
  Response: getResponse,
  fetch: () => fetch,
};
