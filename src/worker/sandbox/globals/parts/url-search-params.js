/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope):
 * `URLSearchParams`, sandbox code: the list operations and the application/x-www-form-urlencoded
 * parser and serializer, as in Node's lib/internal/url.js. The URL class (url.js) follows it.
 */

function isFormSafe(c) {
  return (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    c === 0x2a ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5f
  );
}
const HEX = '0123456789ABCDEF';
/** 2 when text[i] starts a surrogate pair, else 1. */
function unitsAt(text, i) {
  const c = charCodeAt(text, i);
  return c >= 0xd800 &&
    c <= 0xdbff &&
    i + 1 < text.length &&
    (charCodeAt(text, i + 1) & 0xfc00) === 0xdc00
    ? 2
    : 1;
}
const formBytes = new Uint8ArrayCtor(4);

/** The application/x-www-form-urlencoded byte serializer, over the UTF-8 of 'text'. */
function formEncode(text) {
  let out = '';
  let plain = 0;
  for (let i = 0; i < text.length; i++) {
    const c = charCodeAt(text, i);
    if (isFormSafe(c)) continue;
    out += stringSlice(text, plain, i);
    if (c === 0x20) out += '+';
    else {
      const units = unitsAt(text, i);
      const size = utf8Write(stringSlice(text, i, i + units), formBytes, 4);
      i += units - 1;
      for (let k = 0; k < size; k++) out += '%' + HEX[formBytes[k] >> 4] + HEX[formBytes[k] & 15];
    }
    plain = i + 1;
  }
  return plain === 0 ? text : out + stringSlice(text, plain);
}

function hexValue(c) {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

let formDecoder;
/** '+' → space, then percent-decoding, then UTF-8 decode without BOM (replacement on errors). */
function formDecode(text) {
  if (indexOf(text, '%') < 0 && indexOf(text, '+') < 0) return text;
  const bytes = new Uint8ArrayCtor(utf8Size(text));
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = charCodeAt(text, i);
    if (c === 0x2b) bytes[n++] = 0x20;
    else if (
      c === 0x25 &&
      i + 2 < text.length &&
      hexValue(charCodeAt(text, i + 1)) >= 0 &&
      hexValue(charCodeAt(text, i + 2)) >= 0
    ) {
      bytes[n++] = hexValue(charCodeAt(text, i + 1)) * 16 + hexValue(charCodeAt(text, i + 2));
      i += 2;
    } else if (c < 0x80) bytes[n++] = c;
    else {
      const units = unitsAt(text, i);
      n += utf8Write(stringSlice(text, i, i + units), subarray(bytes, n), 4);
      i += units - 1;
    }
  }
  if (!formDecoder) formDecoder = new (getTextDecoder())('utf-8', { ignoreBOM: true });
  return formDecoder.decode(subarray(bytes, 0, n));
}

/** A query string (leading '?' ignored) → the flat list [name, value, name, value, …]. */
function parseQuery(query) {
  const list = [];
  let start = charCodeAt(query, 0) === 0x3f ? 1 : 0;
  while (start <= query.length) {
    let end = indexOf(query, '&', start);
    if (end < 0) end = query.length;
    if (end > start) {
      const eq = indexOf(query, '=', start);
      const split = eq >= 0 && eq < end;
      list[list.length] = formDecode(stringSlice(query, start, split ? eq : end));
      list[list.length] = split ? formDecode(stringSlice(query, eq + 1, end)) : '';
    }
    start = end + 1;
  }
  return list;
}

function serializeQuery(list) {
  let out = '';
  for (let i = 0; i < list.length; i += 2)
    out += (i ? '&' : '') + formEncode(list[i]) + '=' + formEncode(list[i + 1]);
  return out;
}

const usv = (value) => toWellFormed(toStr(value));

/** Makes the named members of a class prototype enumerable, as Node's WebIDL classes have them. */
function enumerable(proto, names) {
  for (let i = 0; i < names.length; i++) {
    const descriptor = getOwnPropertyDescriptor(proto, names[i]);
    descriptor.enumerable = true;
    defineProperty(proto, names[i], descriptor);
  }
}

let URLSearchParamsClass;
let paramsList;
let paramsReset;
let paramsAttach;
let urlParamsChanged;
function getURLSearchParams() {
  if (URLSearchParamsClass) return URLSearchParamsClass;
  let check;
  const invalidTuple = () =>
    nodeError(
      TypeErrorCtor,
      'ERR_INVALID_TUPLE',
      'Each query pair must be an iterable [name, value] tuple',
    );
  class URLSearchParams {
    #list = [];
    #url = null;
    constructor(init = undefined) {
      if (init === undefined || init === null) return;
      if (typeof init !== 'object' && typeof init !== 'function') {
        const text = usv(init);
        this.#list = text ? parseQuery(text) : [];
        return;
      }
      const method = init[SymbolIterator];
      const list = this.#list;
      if (method === this[SymbolIterator] && #list in init) {
        const other = init.#list;
        for (let i = 0; i < other.length; i++) list[i] = other[i];
      } else if (method !== undefined && method !== null) {
        if (typeof method !== 'function')
          throw nodeError(TypeErrorCtor, 'ERR_ARG_NOT_ITERABLE', 'Query pairs must be iterable');
        for (const pair of init) {
          if (pair === null || pair === undefined) throw invalidTuple();
          if (isArray(pair)) {
            if (pair.length !== 2) throw invalidTuple();
            list[list.length] = usv(pair[0]);
            list[list.length] = usv(pair[1]);
            continue;
          }
          if (
            (typeof pair !== 'object' && typeof pair !== 'function') ||
            typeof pair[SymbolIterator] !== 'function'
          )
            throw invalidTuple();
          let count = 0;
          for (const element of pair) {
            list[list.length] = usv(element);
            count++;
          }
          if (count !== 2) throw invalidTuple();
        }
      } else {
        const seen = new MapCtor();
        const keys = ownKeys(init);
        for (let i = 0; i < keys.length; i++) {
          const descriptor = getOwnPropertyDescriptor(init, keys[i]);
          if (descriptor === undefined || !descriptor.enumerable) continue;
          const name = usv(keys[i]);
          const value = usv(init[keys[i]]);
          if (mapHas(seen, name)) list[mapGet(seen, name)] = value;
          else {
            mapSet(seen, name, list.length + 1);
            list[list.length] = name;
            list[list.length] = value;
          }
        }
      }
    }
    #changed() {
      if (this.#url !== null) urlParamsChanged(this.#url);
    }
    get size() {
      check(this);
      return this.#list.length / 2;
    }
    append(name, value) {
      check(this);
      if (arguments.length < 2) throw missingArgs('"name" and "value" arguments');
      const list = this.#list;
      list[list.length] = usv(name);
      list[list.length] = usv(value);
      this.#changed();
    }
    delete(name, value = undefined) {
      check(this);
      if (arguments.length < 1) throw missingArgs('"name" argument');
      const list = this.#list;
      name = usv(name);
      if (value !== undefined) value = usv(value);
      for (let i = 0; i < list.length;) {
        if (list[i] === name && (value === undefined || list[i + 1] === value))
          arraySplice(list, i, 2);
        else i += 2;
      }
      this.#changed();
    }
    get(name) {
      check(this);
      if (arguments.length < 1) throw missingArgs('"name" argument');
      const list = this.#list;
      name = usv(name);
      for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
      return null;
    }
    getAll(name) {
      check(this);
      if (arguments.length < 1) throw missingArgs('"name" argument');
      const list = this.#list;
      const values = [];
      name = usv(name);
      for (let i = 0; i < list.length; i += 2)
        if (list[i] === name) values[values.length] = list[i + 1];
      return values;
    }
    has(name, value = undefined) {
      check(this);
      if (arguments.length < 1) throw missingArgs('"name" argument');
      const list = this.#list;
      name = usv(name);
      if (value !== undefined) value = usv(value);
      for (let i = 0; i < list.length; i += 2)
        if (list[i] === name && (value === undefined || list[i + 1] === value)) return true;
      return false;
    }
    set(name, value) {
      check(this);
      if (arguments.length < 2) throw missingArgs('"name" and "value" arguments');
      const list = this.#list;
      name = usv(name);
      value = usv(value);
      let found = false;
      for (let i = 0; i < list.length;) {
        if (list[i] !== name) i += 2;
        else if (!found) {
          list[i + 1] = value;
          found = true;
          i += 2;
        } else arraySplice(list, i, 2);
      }
      if (!found) {
        list[list.length] = name;
        list[list.length] = value;
      }
      this.#changed();
    }
    sort() {
      check(this);
      const list = this.#list;
      const pairs = [];
      for (let i = 0; i < list.length; i += 2) pairs[i / 2] = [list[i], list[i + 1]];
      // Stable (V8's sort is), by UTF-16 code units, as the spec says.
      arraySort(pairs, (a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      for (let i = 0; i < pairs.length; i++) {
        list[2 * i] = pairs[i][0];
        list[2 * i + 1] = pairs[i][1];
      }
      this.#changed();
    }
    entries() {
      check(this);
      return new URLSearchParamsIterator(this, 2);
    }
    forEach(callback, thisArg = undefined) {
      check(this);
      if (typeof callback !== 'function')
        throw invalidArgType('callback', 'of type function', callback);
      for (let i = 0; i < this.#list.length; i += 2)
        apply(callback, thisArg, [this.#list[i + 1], this.#list[i], this]);
    }
    keys() {
      check(this);
      return new URLSearchParamsIterator(this, 0);
    }
    values() {
      check(this);
      return new URLSearchParamsIterator(this, 1);
    }
    toString() {
      check(this);
      return serializeQuery(this.#list);
    }
    static {
      check = (self) => {
        if (self === null || typeof self !== 'object' || !(#list in self))
          throw nodeError(
            TypeErrorCtor,
            'ERR_INVALID_THIS',
            'Value of "this" must be of type URLSearchParams',
          );
      };
      paramsList = (params) => params.#list;
      paramsReset = (params, query) => {
        params.#list = parseQuery(query);
      };
      paramsAttach = (params, url) => {
        params.#url = url;
      };
    }
  }
  defineProperty(URLSearchParams.prototype, SymbolIterator, {
    value: URLSearchParams.prototype.entries,
    writable: true,
    configurable: true,
  });
  defineProperty(URLSearchParams.prototype, SymbolToStringTag, {
    value: 'URLSearchParams',
    configurable: true,
  });
  enumerable(URLSearchParams.prototype, [
    'size',
    'append',
    'delete',
    'get',
    'getAll',
    'has',
    'set',
    'sort',
    'entries',
    'forEach',
    'keys',
    'values',
    'toString',
  ]);

  class URLSearchParamsIterator {
    #params;
    #kind;
    #index = 0;
    constructor(params, kind) {
      this.#params = params;
      this.#kind = kind;
    }
    next() {
      if (this === null || typeof this !== 'object' || !(#kind in this))
        throw nodeError(
          TypeErrorCtor,
          'ERR_INVALID_THIS',
          'Value of "this" must be of type URLSearchParamsIterator',
        );
      const list = paramsList(this.#params);
      if (this.#index >= list.length) return { value: undefined, done: true };
      const name = list[this.#index];
      const value = list[this.#index + 1];
      this.#index += 2;
      return {
        value: this.#kind === 0 ? name : this.#kind === 1 ? value : [name, value],
        done: false,
      };
    }
  }
  setPrototypeOf(URLSearchParamsIterator.prototype, IteratorPrototype);
  defineProperty(URLSearchParamsIterator.prototype, SymbolToStringTag, {
    value: 'URLSearchParams Iterator',
    configurable: true,
  });
  URLSearchParamsClass = URLSearchParams;
  return URLSearchParams;
}
