/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope):
 * `crypto` (`getRandomValues`, `randomUUID`, `subtle`) and the classes `Crypto`, `SubtleCrypto`,
 * `CryptoKey`.
 *
 * The cryptography is node:crypto's, through the bridge (crypto-algorithms.js, before this file,
 * calls it, and checks and normalizes the arguments); everything else — CryptoKey objects,
 * promises, DOMExceptions, ArrayBuffers — is built here from the sandbox's own realm.
 * `subtle` covers SHA-1/256/384/512 `digest` and HMAC keys (`importKey` raw/jwk, `exportKey`
 * raw/jwk, `generateKey`, `sign`, `verify`), with Node 20's error names and messages. The other
 * SubtleCrypto methods exist, as in Node, and reject with NotSupportedError. A key's bytes live in
 * a private field of its CryptoKey: function code reads them only through exportKey, and only when
 * the key is extractable.
 */

let cryptoObject;
let CryptoClass;
let SubtleCryptoClass;
let CryptoKeyClass;
function getCrypto() {
  if (cryptoObject) return cryptoObject;
  const TOKEN = {};
  const illegal = () => nodeError(TypeErrorCtor, 'ERR_ILLEGAL_CONSTRUCTOR', 'Illegal constructor');
  let keyCheck;
  let keyMaterial;
  let keyHash;
  class CryptoKey {
    #type = 'secret';
    #extractable;
    #algorithm;
    #usages;
    #material;
    constructor(token, extractable, algorithm, usages, material) {
      if (token !== TOKEN) throw illegal();
      this.#extractable = extractable;
      this.#algorithm = algorithm;
      this.#usages = usages;
      this.#material = material;
    }
    get type() {
      keyCheck(this);
      return this.#type;
    }
    get extractable() {
      keyCheck(this);
      return this.#extractable;
    }
    get algorithm() {
      keyCheck(this);
      return this.#algorithm;
    }
    get usages() {
      keyCheck(this);
      return this.#usages;
    }
    static {
      keyCheck = (self) => {
        if (self === null || typeof self !== 'object' || !(#material in self))
          throw nodeError(
            TypeErrorCtor,
            'ERR_INVALID_THIS',
            'Value of "this" must be of type CryptoKey',
          );
      };
      keyMaterial = (self) => self.#material;
      keyHash = (self) => self.#algorithm.hash.name;
    }
  }
  defineProperty(CryptoKey.prototype, SymbolToStringTag, {
    value: 'CryptoKey',
    configurable: true,
  });
  const isKey = (value) => {
    try {
      keyCheck(value);
      return true;
    } catch (_) {
      return false;
    }
  };
  const requireKey = (key, method) => {
    if (!isKey(key))
      throw nodeError(
        TypeErrorCtor,
        'ERR_INVALID_ARG_TYPE',
        failedTo(method, 'SubtleCrypto') + '2nd argument is not of type CryptoKey.',
      );
  };
  /** A promise settled now with what 'body' returns or throws (WebCrypto methods never throw). */
  const settle = (body) =>
    new PromiseCtor((resolve, reject) => {
      try {
        resolve(body());
      } catch (error) {
        reject(error);
      }
    });
  const hasUsage = (key, usage) => {
    const usages = key.usages;
    for (let i = 0; i < usages.length; i++) if (usages[i] === usage) return true;
    return false;
  };

  const notHere = (method, required, count) =>
    settle(() => {
      requireArgs(method, required, count);
      throw domException(
        'crypto.subtle.' +
          method +
          ' is not available in this sandbox (crypto.subtle has SHA digests and HMAC)',
        'NotSupportedError',
      );
    });
  // Methods in Node's order; the ones this sandbox lacks reject with NotSupportedError.
  class SubtleCrypto {
    constructor(token) {
      if (token !== TOKEN) throw illegal();
    }
    encrypt() {
      return notHere('encrypt', 3, arguments.length);
    }
    decrypt() {
      return notHere('decrypt', 3, arguments.length);
    }
    sign(algorithm, key, data) {
      const count = arguments.length;
      return settle(() => {
        requireArgs('sign', 3, count);
        requireKey(key, 'sign');
        const bytes = sourceBytes(data, 'sign', 2);
        const name = algorithmName(algorithm, 'Algorithm');
        if (toLowerCase(name) !== 'hmac' && OTHER_ALGORITHMS[toLowerCase(name)] !== 1)
          throw unsupported(name);
        if (toLowerCase(name) !== 'hmac' || !hasUsage(key, 'sign'))
          throw domException('Unable to use this key to sign', 'InvalidAccessError');
        return toArrayBuffer(hmac(keyHash(key), keyMaterial(key), bytes));
      });
    }
    verify(algorithm, key, signature, data) {
      const count = arguments.length;
      return settle(() => {
        requireArgs('verify', 4, count);
        requireKey(key, 'verify');
        const expected = sourceBytes(signature, 'verify', 2);
        const bytes = sourceBytes(data, 'verify', 3);
        const name = algorithmName(algorithm, 'Algorithm');
        if (toLowerCase(name) !== 'hmac' && OTHER_ALGORITHMS[toLowerCase(name)] !== 1)
          throw unsupported(name);
        if (toLowerCase(name) !== 'hmac' || !hasUsage(key, 'verify'))
          throw domException('Unable to use this key to verify', 'InvalidAccessError');
        const actual = hmac(keyHash(key), keyMaterial(key), bytes);
        const length = typedArrayLength(actual);
        if (typedArrayLength(expected) !== length) return false;
        let difference = 0; // every byte compared, whatever differs first
        for (let i = 0; i < length; i++) difference |= actual[i] ^ expected[i];
        return difference === 0;
      });
    }
    digest(algorithm, data) {
      const count = arguments.length;
      return settle(() => {
        requireArgs('digest', 2, count);
        const bytes = sourceBytes(data, 'digest', 1);
        const hash = hashName(algorithm);
        const result = host('digest', hash, bytesToLatin1(bytes));
        if (!hostOk(result))
          throw domException(
            'The operation failed for an operation-specific reason',
            'OperationError',
          );
        return toArrayBuffer(latin1ToBytes(hostPayload(result)));
      });
    }
    generateKey(algorithm, extractable, usages) {
      const count = arguments.length;
      return settle(() => {
        requireArgs('generateKey', 3, count);
        const hash = hmacParams(algorithm, 'HmacKeyGenParams');
        extractable = !!extractable;
        usages = keyUsages(usages, 'generateKey', 2);
        let length = algorithm.length === undefined ? BLOCK_BITS[hash] : +algorithm.length;
        if (length === 0) {
          const cause = nodeError(
            RangeErrorCtor,
            'ERR_OUT_OF_RANGE',
            'The value of "options.length" is out of range. It must be >= 8 && <= 2147483647. Received 0',
          );
          throw domException('The operation failed for an operation-specific reason', {
            name: 'OperationError',
            cause: cause,
          });
        }
        if (!isInteger(length) || length < 0 || length % 8 !== 0) {
          throw nodeError(
            TypeErrorCtor,
            'ERR_INVALID_ARG_VALUE',
            "The property 'algorithm.length' must be a multiple of 8. Received " +
              toStr(algorithm.length),
          );
        }
        if (usages.length === 0)
          throw domException('Usages cannot be empty when creating a key.', 'SyntaxError');
        return new CryptoKey(
          TOKEN,
          extractable,
          { name: 'HMAC', length: length, hash: { name: hash } },
          usages,
          randomBytes(length / 8),
        );
      });
    }
    deriveKey() {
      return notHere('deriveKey', 5, arguments.length);
    }
    deriveBits() {
      return notHere('deriveBits', 2, arguments.length);
    }
    importKey(format, keyData, algorithm, extractable, usages) {
      const count = arguments.length;
      return settle(() => {
        requireArgs('importKey', 4, count);
        format = keyFormat(format, 'importKey');
        const raw = format === 'jwk' ? undefined : sourceBytes(keyData, 'importKey', 1);
        const hash = hmacParams(algorithm, 'HmacImportParams');
        extractable = !!extractable;
        usages = keyUsages(usages, 'importKey', 4);
        let material;
        if (format === 'raw') material = new Uint8ArrayCtor(raw);
        else if (format === 'jwk') {
          if (keyData === null || typeof keyData !== 'object' || !keyData.kty)
            throw domException('Invalid keyData', 'DataError');
          if (keyData.kty !== 'oct') throw domException('Invalid JWK "kty" Parameter', 'DataError');
          if (usages.length > 0 && keyData.use !== undefined && keyData.use !== 'sig')
            throw domException('Invalid JWK "use" Parameter', 'DataError');
          if (keyData.key_ops !== undefined) {
            const ops = keyData.key_ops;
            if (!isArray(ops)) throw domException('Invalid JWK "key_ops" Parameter', 'DataError');
            for (let i = 0; i < usages.length; i++) {
              let listed = false;
              for (let k = 0; k < ops.length; k++) if (ops[k] === usages[i]) listed = true;
              if (!listed) throw domException('Key operations and usage mismatch', 'DataError');
            }
          }
          if (keyData.ext === false && extractable)
            throw domException('JWK "ext" Parameter and extractable mismatch', 'DataError');
          if (keyData.alg !== undefined && keyData.alg !== JWK_ALGS[hash])
            throw domException('JWK "alg" does not match the requested algorithm', 'DataError');
          if (typeof keyData.k !== 'string') {
            const cause = nodeError(
              TypeErrorCtor,
              'ERR_CRYPTO_INVALID_JWK',
              'Invalid JWK secret key format',
            );
            throw domException('Invalid keyData', { name: 'DataError', cause: cause });
          }
          material = base64Decode(keyData.k, true);
        } else
          throw domException(
            'Unable to import HMAC key with format ' + format,
            'NotSupportedError',
          );
        const bits = typedArrayLength(material) * 8;
        const length = algorithm.length === undefined ? undefined : +algorithm.length;
        if (bits === 0 || length === 0)
          throw domException('Zero-length key is not supported', 'DataError');
        if (length !== undefined && length !== bits)
          throw domException('Invalid key length', 'DataError');
        if (usages.length === 0)
          throw domException('Usages cannot be empty when importing a secret key.', 'SyntaxError');
        return new CryptoKey(
          TOKEN,
          extractable,
          { name: 'HMAC', hash: { name: hash }, length: bits },
          usages,
          material,
        );
      });
    }
    exportKey(format, key) {
      const count = arguments.length;
      return settle(() => {
        requireArgs('exportKey', 2, count);
        format = keyFormat(format, 'exportKey');
        requireKey(key, 'exportKey');
        if (!key.extractable)
          throw domException('key is not extractable', 'InvalidAccessException');
        const material = keyMaterial(key);
        if (format === 'raw') return toArrayBuffer(material);
        if (format !== 'jwk')
          throw domException(
            'Unable to export HMAC key with format ' + format,
            'NotSupportedError',
          );
        // key_ops is the key's own usages array, as in Node.
        return {
          key_ops: key.usages,
          ext: key.extractable,
          kty: 'oct',
          k: base64Encode(material, true),
          alg: JWK_ALGS[keyHash(key)],
        };
      });
    }
    wrapKey() {
      return notHere('wrapKey', 4, arguments.length);
    }
    unwrapKey() {
      return notHere('unwrapKey', 7, arguments.length);
    }
  }
  defineProperty(SubtleCrypto.prototype, SymbolToStringTag, {
    value: 'SubtleCrypto',
    configurable: true,
  });
  const subtle = new SubtleCrypto(TOKEN);

  class Crypto {
    constructor(token) {
      if (token !== TOKEN) throw illegal();
    }
    get subtle() {
      return subtle;
    }
    getRandomValues(array) {
      if (arguments.length === 0) {
        throw nodeError(
          TypeErrorCtor,
          'ERR_MISSING_ARGS',
          failedTo('getRandomValues', 'Crypto') + '1 argument required, but only 0 present.',
        );
      }
      const kind = array !== null && typeof array === 'object' ? typedArrayTag(array) : undefined;
      if (kind === undefined || INTEGER_ARRAYS[kind] !== 1)
        throw domException(
          'The data argument must be an integer-type TypedArray',
          'TypeMismatchError',
        );
      const bytes = bytesOf(array);
      const size = typedArrayLength(bytes);
      if (size > 65536)
        throw domException('The requested length exceeds 65,536 bytes', 'QuotaExceededError');
      const random = randomBytes(size);
      for (let i = 0; i < size; i++) bytes[i] = random[i];
      return array;
    }
    randomUUID() {
      const result = host('uuid');
      if (!hostOk(result))
        throw domException(
          'The operation failed for an operation-specific reason',
          'OperationError',
        );
      return hostPayload(result);
    }
  }
  defineProperty(Crypto.prototype, SymbolToStringTag, { value: 'Crypto', configurable: true });
  CryptoClass = Crypto;
  SubtleCryptoClass = SubtleCrypto;
  CryptoKeyClass = CryptoKey;
  cryptoObject = new Crypto(TOKEN);
  return cryptoObject;
}
const getCryptoClass = () => {
  getCrypto();
  return CryptoClass;
};
const getSubtleCryptoClass = () => {
  getCrypto();
  return SubtleCryptoClass;
};
const getCryptoKeyClass = () => {
  getCrypto();
  return CryptoKeyClass;
};
