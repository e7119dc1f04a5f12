/**
 * The globals script, part 2 (assembled by ../../globals.ts, in install()'s scope): what every
 * global shares beyond the intrinsics. Node-shaped errors (`code`, the "Received …" tail),
 * `DOMException` (a sandbox class: name, message and code are prototype getters, as in Node), byte
 * helpers (BufferSource → a Uint8Array view; bytes ↔ latin1 strings, the bridge's byte encoding),
 * `host(op, a, b, c)`, the only caller of the host bridge (`hostCall`, install()'s first
 * parameter), and `lazy()`, which installs a global built on first use.
 */

/** ToString, as a template literal does it (a Symbol throws). */
function toStr(value) {
  if (typeof value === 'symbol')
    throw new TypeErrorCtor('Cannot convert a Symbol value to a string');
  return StringCtor(value);
}

/** Node's "Received …" tail of ERR_INVALID_ARG_TYPE messages. */
function received(value) {
  if (value === null || value === undefined) return ' Received ' + value;
  if (typeof value === 'function') return ' Received function ' + (value.name || '');
  if (typeof value === 'object') {
    try {
      if (value.constructor && value.constructor.name)
        return ' Received an instance of ' + value.constructor.name;
    } catch (_) {
      /* unreadable */
    }
    return ' Received an object';
  }
  let shown =
    typeof value === 'string'
      ? "'" + value + "'"
      : typeof value === 'bigint'
        ? toStr(value) + 'n'
        : toStr(value);
  if (shown.length > 28) shown = stringSlice(shown, 0, 25) + '...';
  return ' Received type ' + typeof value + ' (' + shown + ')';
}

/** An error shaped like Node's internal errors: the class, an enumerable code. */
function nodeError(Ctor, code, message) {
  const error = new Ctor(message);
  defineProperty(error, 'code', {
    value: code,
    writable: true,
    enumerable: true,
    configurable: true,
  });
  return error;
}

/** Node's ERR_MISSING_ARGS: missingArgs('"url" argument'), missingArgs('"a" and "b" arguments'). */
function missingArgs(what) {
  return nodeError(TypeErrorCtor, 'ERR_MISSING_ARGS', 'The ' + what + ' must be specified');
}

function invalidArgType(name, expected, value) {
  return nodeError(
    TypeErrorCtor,
    'ERR_INVALID_ARG_TYPE',
    'The "' + name + '" argument must be ' + expected + '.' + received(value),
  );
}

const DOM_CODES = {
  __proto__: null,
  IndexSizeError: 1,
  HierarchyRequestError: 3,
  WrongDocumentError: 4,
  InvalidCharacterError: 5,
  NoModificationAllowedError: 7,
  NotFoundError: 8,
  NotSupportedError: 9,
  InvalidStateError: 11,
  SyntaxError: 12,
  InvalidModificationError: 13,
  NamespaceError: 14,
  InvalidAccessError: 15,
  TypeMismatchError: 17,
  SecurityError: 18,
  NetworkError: 19,
  AbortError: 20,
  URLMismatchError: 21,
  QuotaExceededError: 22,
  TimeoutError: 23,
  InvalidNodeTypeError: 24,
  DataCloneError: 25,
};
const DOM_CONSTANTS = [
  'INDEX_SIZE_ERR',
  1,
  'DOMSTRING_SIZE_ERR',
  2,
  'HIERARCHY_REQUEST_ERR',
  3,
  'WRONG_DOCUMENT_ERR',
  4,
  'INVALID_CHARACTER_ERR',
  5,
  'NO_DATA_ALLOWED_ERR',
  6,
  'NO_MODIFICATION_ALLOWED_ERR',
  7,
  'NOT_FOUND_ERR',
  8,
  'NOT_SUPPORTED_ERR',
  9,
  'INUSE_ATTRIBUTE_ERR',
  10,
  'INVALID_STATE_ERR',
  11,
  'SYNTAX_ERR',
  12,
  'INVALID_MODIFICATION_ERR',
  13,
  'NAMESPACE_ERR',
  14,
  'INVALID_ACCESS_ERR',
  15,
  'VALIDATION_ERR',
  16,
  'TYPE_MISMATCH_ERR',
  17,
  'SECURITY_ERR',
  18,
  'NETWORK_ERR',
  19,
  'ABORT_ERR',
  20,
  'URL_MISMATCH_ERR',
  21,
  'QUOTA_EXCEEDED_ERR',
  22,
  'TIMEOUT_ERR',
  23,
  'INVALID_NODE_TYPE_ERR',
  24,
  'DATA_CLONE_ERR',
  25,
];

let DOMExceptionClass;
let domField;
function getDOMException() {
  if (DOMExceptionClass) return DOMExceptionClass;
  class DOMException extends ErrorCtor {
    #name;
    #message;
    constructor(message = '', options = 'Error') {
      super();
      this.#message = toStr(message);
      if (options !== null && typeof options === 'object') {
        this.#name = 'name' in options ? toStr(options.name) : 'Error';
        if ('cause' in options)
          defineProperty(this, 'cause', {
            value: options.cause,
            writable: true,
            configurable: true,
          });
      } else {
        this.#name = toStr(options);
      }
    }
    get name() {
      return domField(this, 0);
    }
    get message() {
      return domField(this, 1);
    }
    get code() {
      const code = DOM_CODES[domField(this, 0)];
      return code === undefined ? 0 : code;
    }
    static {
      domField = (self, which) => {
        if (self === null || typeof self !== 'object' || !(#name in self))
          throw nodeError(
            TypeErrorCtor,
            'ERR_INVALID_THIS',
            'Value of "this" must be of DOMException',
          );
        return which === 0 ? self.#name : self.#message;
      };
    }
  }
  defineProperty(DOMException.prototype, SymbolToStringTag, {
    value: 'DOMException',
    configurable: true,
  });
  for (let i = 0; i < DOM_CONSTANTS.length; i += 2) {
    const descriptor = { value: DOM_CONSTANTS[i + 1], enumerable: true };
    defineProperty(DOMException, DOM_CONSTANTS[i], descriptor);
    defineProperty(DOMException.prototype, DOM_CONSTANTS[i], descriptor);
  }
  DOMExceptionClass = DOMException;
  return DOMException;
}

function domException(message, name) {
  const DOMException = getDOMException();
  return new DOMException(message, name);
}

/** A Uint8Array over the bytes of an ArrayBuffer, SharedArrayBuffer or view; else undefined. */
function bytesOf(source) {
  if (source === null || typeof source !== 'object') return undefined;
  if (typedArrayTag(source) !== undefined) {
    return new Uint8ArrayCtor(
      typedArrayBuffer(source),
      typedArrayOffset(source),
      typedArrayBytes(source),
    );
  }
  if (isView(source))
    return new Uint8ArrayCtor(
      dataViewBuffer(source),
      dataViewOffset(source),
      dataViewBytes(source),
    );
  try {
    arrayBufferBytes(source);
  } catch (_) {
    try {
      if (sharedBufferBytes === undefined) return undefined;
      sharedBufferBytes(source);
    } catch (_) {
      return undefined;
    }
  }
  return new Uint8ArrayCtor(source);
}

function bytesToLatin1(bytes) {
  let text = '';
  const length = typedArrayLength(bytes);
  for (let i = 0; i < length; i += 8192)
    text += apply(fromCharCode, undefined, subarray(bytes, i, i + 8192));
  return text;
}

function latin1ToBytes(text) {
  const bytes = new Uint8ArrayCtor(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = charCodeAt(text, i);
  return bytes;
}

/** Code units (a Uint16Array, the first 'length') to a string, in chunks the stack takes. */
function unitsToString(units, length) {
  let text = '';
  for (let i = 0; i < length; i += 8192)
    text += apply(fromCharCode, undefined, subarray(units, i, mathMin(i + 8192, length)));
  return text;
}

/** The bridge's largest string (../../host-bridge.ts MAX_BRIDGE_CHARS). */
const MAX_BRIDGE_CHARS = 32 * 1024 * 1024;

/** Calls the host bridge with primitives only; the result is '+payload' or '!message'. */
function host(op, a, b, c) {
  const result = hostCall(op, a, b, c);
  if (typeof result !== 'string' || result.length === 0)
    throw new TypeErrorCtor('the sandbox host bridge failed');
  return result;
}
const hostOk = (result) => charCodeAt(result, 0) === 43;
const hostPayload = (result) => stringSlice(result, 1);

/**
 * Installs a global that is built on first use: a getter that replaces itself with a plain
 * data property, so a context that never touches it pays only for the accessor.
 */
function lazy(name, build, enumerable) {
  const settle = (value) =>
    defineProperty(global, name, {
      value: value,
      writable: true,
      enumerable: enumerable,
      configurable: true,
    });
  defineProperty(global, name, {
    get: function () {
      const value = build();
      settle(value);
      return value;
    },
    set: function (value) {
      settle(value);
    },
    enumerable: enumerable,
    configurable: true,
  });
}
