/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope):
 * `Headers`, and the checks that fetch's other classes share (tokens, ByteStrings, header values,
 * argument counts, iteration with no intrinsic lookup). fetch-request.js and fetch.js follow it.
 *
 * Headers follow the WHATWG rules as Node 20 (undici) applies them: names are tokens, compared
 * case-insensitively and iterated in lower case, sorted, values of one name combined with ", "
 * except `set-cookie` (one entry per cookie; `getSetCookie()`); values are ByteStrings with leading
 * and trailing HTTP whitespace removed and no NUL, CR or LF.
 */

const NULL_BODY_STATUS = { __proto__: null, 101: 1, 103: 1, 204: 1, 205: 1, 304: 1 };
const REDIRECT_STATUS = { __proto__: null, 301: 1, 302: 1, 303: 1, 307: 1, 308: 1 };
const NORMALIZED_METHODS = {
  __proto__: null,
  delete: 'DELETE',
  get: 'GET',
  head: 'HEAD',
  options: 'OPTIONS',
  post: 'POST',
  put: 'PUT',
};
const FORBIDDEN_METHODS = { __proto__: null, connect: 1, trace: 1, track: 1 };
const REDIRECT_MODES = { __proto__: null, follow: 1, manual: 1, error: 1 };
const TOKEN_PUNCTUATION = "!#$%&'*+-.^_|~" + '\x60';

function isTokenChar(c) {
  return (
    (c >= 48 && c <= 57) ||
    (c >= 65 && c <= 90) ||
    (c >= 97 && c <= 122) ||
    indexOf(TOKEN_PUNCTUATION, fromCharCode(c)) >= 0
  );
}
function isToken(text) {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) if (!isTokenChar(charCodeAt(text, i))) return false;
  return true;
}
const isHttpSpace = (c) => c === 9 || c === 10 || c === 13 || c === 32;

/** WebIDL ByteString: ToString, then every code unit at most 0xFF. */
function byteString(value) {
  const text = toStr(value);
  for (let i = 0; i < text.length; i++) {
    const c = charCodeAt(text, i);
    if (c > 0xff)
      throw new TypeErrorCtor(
        'Cannot convert argument to a ByteString because the character at index ' +
          i +
          ' has a value of ' +
          c +
          ' which is greater than 255.',
      );
  }
  return text;
}

/** A header value without leading and trailing HTTP whitespace; undefined when it holds NUL, CR or LF. */
function headerValue(text) {
  let start = 0;
  let end = text.length;
  while (start < end && isHttpSpace(charCodeAt(text, start))) start++;
  while (end > start && isHttpSpace(charCodeAt(text, end - 1))) end--;
  const value = stringSlice(text, start, end);
  for (let i = 0; i < value.length; i++) {
    const c = charCodeAt(value, i);
    if (c === 0 || c === 10 || c === 13) return undefined;
  }
  return value;
}

function argsRequired(count, given, what) {
  if (given < count)
    throw new TypeErrorCtor(
      what +
        ': ' +
        count +
        ' argument' +
        (count > 1 ? 's' : '') +
        ' required, but ' +
        (given > 0 ? 'only ' : '') +
        given +
        ' found.',
    );
}

const isObjectLike = (value) =>
  value !== null && (typeof value === 'object' || typeof value === 'function');

/** A value's own iterator as an array (the iterator protocol, read with no intrinsic lookup). */
function iterate(value, method) {
  const iterator = apply(method, value, []);
  const next = iterator.next;
  const out = [];
  for (;;) {
    const step = apply(next, iterator, []);
    if (!isObjectLike(step))
      throw new TypeErrorCtor('Iterator result ' + toStr(step) + ' is not an object');
    if (step.done) return out;
    out[out.length] = step.value;
  }
}

let HeadersClass;
let headersState;
function getHeaders() {
  if (HeadersClass) return HeadersClass;
  let check;
  // The header list: [lowerName, value, lowerName, value, …] in insertion order.
  class Headers {
    #list = [];
    #immutable = false;
    #sorted = null;
    constructor(init = undefined) {
      if (init === undefined) return;
      if (!isObjectLike(init))
        throw new TypeErrorCtor(
          'Headers constructor: Argument 1 could not be converted to one of: sequence<sequence<ByteString>>, record<ByteString, ByteString>.',
        );
      if (#list in init) {
        const list = init.#list;
        for (let i = 0; i < list.length; i++) this.#list[i] = list[i];
        return;
      }
      const method = init[SymbolIterator];
      if (method !== undefined && method !== null) {
        if (typeof method !== 'function')
          throw new TypeErrorCtor(
            'Headers constructor: Argument 1 could not be converted to one of: sequence<sequence<ByteString>>, record<ByteString, ByteString>.',
          );
        const pairs = iterate(init, method);
        for (let i = 0; i < pairs.length; i++) {
          const pairMethod = isObjectLike(pairs[i]) ? pairs[i][SymbolIterator] : undefined;
          if (typeof pairMethod !== 'function')
            throw new TypeErrorCtor(
              'Headers constructor: init[' +
                i +
                '] (' +
                toStr(typeof pairs[i] === 'symbol' ? 'a symbol' : pairs[i]) +
                ') is not iterable.',
            );
          const pair = iterate(pairs[i], pairMethod);
          if (pair.length !== 2)
            throw new TypeErrorCtor(
              'Headers constructor: expected name/value pair to be length 2, found ' +
                pair.length +
                '.',
            );
          this.#append(pair[0], pair[1]);
        }
        return;
      }
      const keys = ownKeys(init);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (typeof key === 'symbol') continue;
        const descriptor = getOwnPropertyDescriptor(init, key);
        if (descriptor === undefined || !descriptor.enumerable) continue;
        this.#append(key, init[key]);
      }
    }
    #name(name, what) {
      name = byteString(name);
      if (!isToken(name))
        throw new TypeErrorCtor('Headers.' + what + ': "' + name + '" is an invalid header name.');
      return toLowerCase(name);
    }
    #mutable() {
      if (this.#immutable) throw new TypeErrorCtor('immutable');
      this.#sorted = null;
    }
    #append(name, value) {
      const lower = this.#name(name, 'append');
      const normalized = headerValue(byteString(value));
      if (normalized === undefined)
        throw new TypeErrorCtor(
          'Headers.append: "' + toStr(value) + '" is an invalid header value.',
        );
      this.#mutable();
      const list = this.#list;
      list[list.length] = lower;
      list[list.length] = normalized;
    }
    append(name, value) {
      check(this);
      argsRequired(2, arguments.length, 'Headers.append');
      this.#append(name, value);
    }
    delete(name) {
      check(this);
      argsRequired(1, arguments.length, 'Headers.delete');
      const lower = this.#name(name, 'delete');
      this.#mutable();
      const list = this.#list;
      for (let i = 0; i < list.length;)
        if (list[i] === lower) arraySplice(list, i, 2);
        else i += 2;
    }
    get(name) {
      check(this);
      argsRequired(1, arguments.length, 'Headers.get');
      const lower = this.#name(name, 'get');
      const list = this.#list;
      let value = null;
      for (let i = 0; i < list.length; i += 2)
        if (list[i] === lower) value = value === null ? list[i + 1] : value + ', ' + list[i + 1];
      return value;
    }
    getSetCookie() {
      check(this);
      const list = this.#list;
      const out = [];
      for (let i = 0; i < list.length; i += 2)
        if (list[i] === 'set-cookie') out[out.length] = list[i + 1];
      return out;
    }
    has(name) {
      check(this);
      argsRequired(1, arguments.length, 'Headers.has');
      const lower = this.#name(name, 'has');
      const list = this.#list;
      for (let i = 0; i < list.length; i += 2) if (list[i] === lower) return true;
      return false;
    }
    set(name, value) {
      check(this);
      argsRequired(2, arguments.length, 'Headers.set');
      const lower = this.#name(name, 'set');
      const normalized = headerValue(byteString(value));
      if (normalized === undefined)
        throw new TypeErrorCtor('Headers.set: "' + toStr(value) + '" is an invalid header value.');
      this.#mutable();
      const list = this.#list;
      let found = false;
      for (let i = 0; i < list.length;) {
        if (list[i] !== lower) {
          i += 2;
          continue;
        }
        if (found) {
          arraySplice(list, i, 2);
          continue;
        }
        list[i + 1] = normalized;
        found = true;
        i += 2;
      }
      if (!found) {
        list[list.length] = lower;
        list[list.length] = normalized;
      }
    }
    /** The sorted and combined list, [name, value, …] (set-cookie: one entry per value). */
    #sortedList() {
      if (this.#sorted !== null) return this.#sorted;
      const list = this.#list;
      const names = [];
      const seen = objectCreate(null);
      for (let i = 0; i < list.length; i += 2)
        if (seen[list[i]] !== 1) {
          seen[list[i]] = 1;
          names[names.length] = list[i];
        }
      arraySort(names);
      const out = [];
      for (let n = 0; n < names.length; n++) {
        const name = names[n];
        let combined = null;
        for (let i = 0; i < list.length; i += 2) {
          if (list[i] !== name) continue;
          if (name === 'set-cookie') {
            out[out.length] = name;
            out[out.length] = list[i + 1];
          } else combined = combined === null ? list[i + 1] : combined + ', ' + list[i + 1];
        }
        if (combined !== null) {
          out[out.length] = name;
          out[out.length] = combined;
        }
      }
      this.#sorted = out;
      return out;
    }
    forEach(callback, thisArg = undefined) {
      check(this);
      if (typeof callback !== 'function')
        throw new TypeErrorCtor(
          "Failed to execute 'forEach' on 'Headers': parameter 1 is not of type 'Function'.",
        );
      for (let i = 0; ; i += 2) {
        const sorted = this.#sortedList();
        if (i >= sorted.length) return;
        apply(callback, thisArg, [sorted[i + 1], sorted[i], this]);
      }
    }
    keys() {
      check(this);
      return new HeadersIterator(this, 0);
    }
    values() {
      check(this);
      return new HeadersIterator(this, 1);
    }
    entries() {
      check(this);
      return new HeadersIterator(this, 2);
    }
    static {
      check = (self) => {
        if (self === null || typeof self !== 'object' || !(#list in self))
          throw new TypeErrorCtor('Illegal invocation');
      };
      headersState = {
        list: (headers) => headers.#list,
        sorted: (headers) => headers.#sortedList(),
        freeze: (headers) => {
          headers.#immutable = true;
          return headers;
        },
        append: (headers, name, value) => headers.#append(name, value),
        isHeaders: (value) => isObjectLike(value) && #list in value,
      };
    }
  }
  defineProperty(Headers.prototype, SymbolIterator, {
    value: Headers.prototype.entries,
    writable: true,
    configurable: true,
  });
  defineProperty(Headers.prototype, SymbolToStringTag, { value: 'Headers', configurable: true });
  enumerable(Headers.prototype, [
    'append',
    'delete',
    'get',
    'getSetCookie',
    'has',
    'set',
    'forEach',
    'keys',
    'values',
    'entries',
  ]);

  class HeadersIterator {
    #headers;
    #kind;
    #index = 0;
    constructor(headers, kind) {
      this.#headers = headers;
      this.#kind = kind;
    }
    next() {
      if (this === null || typeof this !== 'object' || !(#kind in this))
        throw new TypeErrorCtor(
          "'next' called on an object that does not implement interface Headers Iterator.",
        );
      const sorted = headersState.sorted(this.#headers);
      if (this.#index >= sorted.length) return { value: undefined, done: true };
      const name = sorted[this.#index];
      const value = sorted[this.#index + 1];
      this.#index += 2;
      return {
        value: this.#kind === 0 ? name : this.#kind === 1 ? value : [name, value],
        done: false,
      };
    }
  }
  setPrototypeOf(HeadersIterator.prototype, IteratorPrototype);
  defineProperty(HeadersIterator.prototype, SymbolToStringTag, {
    value: 'Headers Iterator',
    configurable: true,
  });
  HeadersClass = Headers;
  return Headers;
}
