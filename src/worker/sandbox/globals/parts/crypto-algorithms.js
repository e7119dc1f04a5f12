/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope): what
 * `crypto.subtle` checks and computes with, before crypto.js builds the objects: argument checks
 * with WebCrypto's messages, algorithm and key-usage normalization, random bytes and HMAC through
 * the bridge (../../../host-bridge.ts: bytes as latin1 text in, latin1 text out).
 */

const DIGESTS = {
  __proto__: null,
  'sha-1': 'SHA-1',
  'sha-256': 'SHA-256',
  'sha-384': 'SHA-384',
  'sha-512': 'SHA-512',
};
const BLOCK_BITS = {
  __proto__: null,
  'SHA-1': 512,
  'SHA-256': 512,
  'SHA-384': 1024,
  'SHA-512': 1024,
};
const JWK_ALGS = {
  __proto__: null,
  'SHA-1': 'HS1',
  'SHA-256': 'HS256',
  'SHA-384': 'HS384',
  'SHA-512': 'HS512',
};
const OTHER_ALGORITHMS = {
  __proto__: null,
  'rsassa-pkcs1-v1_5': 1,
  'rsa-pss': 1,
  'rsa-oaep': 1,
  ecdsa: 1,
  ecdh: 1,
  'aes-ctr': 1,
  'aes-cbc': 1,
  'aes-gcm': 1,
  'aes-kw': 1,
  hkdf: 1,
  pbkdf2: 1,
  ed25519: 1,
  x25519: 1,
  ed448: 1,
  x448: 1,
};
const KEY_USAGES = {
  __proto__: null,
  encrypt: 1,
  decrypt: 1,
  sign: 1,
  verify: 1,
  deriveKey: 1,
  deriveBits: 1,
  wrapKey: 1,
  unwrapKey: 1,
};
const INTEGER_ARRAYS = {
  __proto__: null,
  Int8Array: 1,
  Uint8Array: 1,
  Uint8ClampedArray: 1,
  Int16Array: 1,
  Uint16Array: 1,
  Int32Array: 1,
  Uint32Array: 1,
  BigInt64Array: 1,
  BigUint64Array: 1,
};
const ORDINALS = ['1st', '2nd', '3rd', '4th', '5th', '6th', '7th'];

const failedTo = (method, owner) => "Failed to execute '" + method + "' on '" + owner + "': ";
const KEY_FORMATS = { __proto__: null, raw: 1, spki: 1, pkcs8: 1, jwk: 1 };

function keyFormat(value, method) {
  const format = toStr(value);
  if (KEY_FORMATS[format] !== 1)
    throw new TypeErrorCtor(
      failedTo(method, 'SubtleCrypto') +
        "1st argument value '" +
        format +
        "' is not a valid enum value of type KeyFormat.",
    );
  return format;
}

function requireArgs(method, count, given) {
  if (given < count) {
    throw nodeError(
      TypeErrorCtor,
      'ERR_MISSING_ARGS',
      failedTo(method, 'SubtleCrypto') +
        count +
        ' arguments required, but only ' +
        given +
        ' present.',
    );
  }
}

/** The bytes of a BufferSource argument (copied: later changes by the caller do not count). */
function sourceBytes(value, method, position) {
  const bytes = bytesOf(value);
  if (bytes === undefined) {
    throw nodeError(
      TypeErrorCtor,
      'ERR_INVALID_ARG_TYPE',
      failedTo(method, 'SubtleCrypto') +
        ORDINALS[position] +
        ' argument is not instance of ArrayBuffer, Buffer, TypedArray, or DataView.',
    );
  }
  if (typedArrayLength(bytes) > MAX_BRIDGE_CHARS) {
    throw domException(
      'The data is over ' +
        MAX_BRIDGE_CHARS +
        ' bytes, the most crypto.subtle takes in this sandbox',
      'QuotaExceededError',
    );
  }
  return bytes;
}

/** The name of an AlgorithmIdentifier (a string, or an object with a name). */
function algorithmName(algorithm, dictionary) {
  if (algorithm === null || (typeof algorithm !== 'object' && typeof algorithm !== 'function'))
    return toStr(algorithm);
  const name = algorithm.name;
  if (name === undefined) {
    throw nodeError(
      TypeErrorCtor,
      'ERR_MISSING_OPTION',
      "Failed to normalize algorithm: passed algorithm can not be converted to '" +
        dictionary +
        "' because 'name' is required in '" +
        dictionary +
        "'.",
    );
  }
  return toStr(name);
}

function unsupported(name) {
  const known = OTHER_ALGORITHMS[toLowerCase(name)] === 1;
  return domException(
    known
      ? name + ' is not available in this sandbox (crypto.subtle has SHA digests and HMAC)'
      : 'Unrecognized algorithm name',
    'NotSupportedError',
  );
}

function hashName(algorithm) {
  const name = algorithmName(algorithm, 'Algorithm');
  const hash = DIGESTS[toLowerCase(name)];
  if (hash === undefined) throw unsupported(name);
  return hash;
}

/** Checks that an algorithm is HMAC; returns its hash name when 'dictionary' requires one. */
function hmacParams(algorithm, dictionary) {
  const name = algorithmName(algorithm, 'Algorithm');
  if (toLowerCase(name) !== 'hmac') throw unsupported(name);
  if (dictionary === undefined) return undefined;
  if (algorithm.hash === undefined) {
    throw nodeError(
      TypeErrorCtor,
      'ERR_MISSING_OPTION',
      "Failed to normalize algorithm: passed algorithm can not be converted to '" +
        dictionary +
        "' because 'hash' is required in '" +
        dictionary +
        "'.",
    );
  }
  return hashName(algorithm.hash);
}

function keyUsages(value, method, position) {
  const prefix = failedTo(method, 'SubtleCrypto') + ORDINALS[position] + ' argument';
  if (value === null || typeof value !== 'object' || typeof value[SymbolIterator] !== 'function') {
    throw nodeError(
      TypeErrorCtor,
      'ERR_INVALID_ARG_TYPE',
      prefix + ' can not be converted to sequence.',
    );
  }
  const usages = [];
  for (const usage of value) {
    const text = toStr(usage);
    if (KEY_USAGES[text] !== 1) {
      throw nodeError(
        TypeErrorCtor,
        'ERR_INVALID_ARG_VALUE',
        prefix +
          ', index ' +
          usages.length +
          " value '" +
          text +
          "' is not a valid enum value of type KeyUsage.",
      );
    }
    usages[usages.length] = text;
  }
  for (let i = 0; i < usages.length; i++) {
    if (usages[i] !== 'sign' && usages[i] !== 'verify')
      throw domException('Unsupported key usage for an HMAC key', 'SyntaxError');
  }
  return usages;
}

function toArrayBuffer(bytes) {
  const buffer = new ArrayBufferCtor(typedArrayLength(bytes));
  typedArraySet(new Uint8ArrayCtor(buffer), bytes);
  return buffer;
}

function randomBytes(count) {
  const bytes = new Uint8ArrayCtor(count);
  for (let at = 0; at < count; at += 65536) {
    const size = mathMin(65536, count - at);
    const result = host('random', size);
    if (!hostOk(result))
      throw domException('The operation failed for an operation-specific reason', 'OperationError');
    const text = hostPayload(result);
    for (let i = 0; i < size; i++) bytes[at + i] = charCodeAt(text, i);
  }
  return bytes;
}

function hmac(hash, key, data) {
  const result = host('hmac', hash, bytesToLatin1(key), bytesToLatin1(data));
  if (!hostOk(result))
    throw domException('The operation failed for an operation-specific reason', 'OperationError');
  return latin1ToBytes(hostPayload(result));
}
