/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope):
 * `fetch`, `Headers`, `Response`, `Request` (docs/spec.md §8).
 *
 * The request is performed by the server (under its egress policy), reached through
 * `serviceRequest()` of ../services.js: the sandbox sends one JSON text and gets one back, with the
 * bodies as base64. Everything a function sees is built here from the sandbox's own realm. Bodies
 * are whole byte buffers, never streams: a request body is read when the request is made, a
 * response arrives whole (at most FETCH_MAX_BYTES, cut server-side), and
 * `text()`/`json()`/`arrayBuffer()`/ `bytes()` read it once (bodyUsed), as in Node 20.
 *
 * Headers follow the WHATWG rules as Node 20 (undici) applies them: names are tokens, compared
 * case-insensitively and iterated in lower case, sorted, values of one name combined with ", "
 * except `set-cookie` (one entry per cookie; `getSetCookie()`); values are ByteStrings with leading
 * and trailing HTTP whitespace removed and no NUL, CR or LF. A body is a string (UTF-8), an
 * ArrayBuffer or view (copied when the request or response is made), or URLSearchParams
 * (form-encoded); anything else is a TypeError rather than the "[object Object]" Node would send.
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

/** A body as bytes (a private copy) and its default content type; null for no body. */
function extractBody(body, what) {
  if (body === undefined || body === null) return null;
  if (typeof body === 'string')
    return { bytes: utf8Encode(body), type: 'text/plain;charset=UTF-8' };
  const view = bytesOf(body);
  if (view !== undefined) {
    const bytes = new Uint8ArrayCtor(typedArrayLength(view));
    typedArraySet(bytes, view);
    return { bytes: bytes, type: null };
  }
  if (isObjectLike(body)) {
    getURLSearchParams();
    let list;
    try {
      list = paramsList(body);
    } catch (_) {
      /* not URLSearchParams */
    }
    if (list !== undefined)
      return {
        bytes: utf8Encode(serializeQuery(list)),
        type: 'application/x-www-form-urlencoded;charset=UTF-8',
      };
  }
  throw new TypeErrorCtor(
    what +
      ': a body must be a string, an ArrayBuffer, a typed array, a DataView or URLSearchParams (got ' +
      (body === null ? 'null' : typeof body === 'object' ? 'an object' : typeof body) +
      '; use JSON.stringify for an object; streams, Blob and FormData are not available)',
  );
}

/** Reads a body once: bodyUsed, then the bytes in the form asked for. A null body reads as empty. */
function consume(state, kind) {
  if (state.used)
    return new PromiseCtor((_, reject) =>
      reject(new TypeErrorCtor('Body is unusable: Body has already been read')),
    );
  let bytes = state.bytes;
  if (bytes === null) bytes = new Uint8ArrayCtor(0);
  else state.used = true;
  return new PromiseCtor((resolve) => {
    if (kind === 'arrayBuffer')
      resolve(
        arrayBufferSlice(
          typedArrayBuffer(bytes),
          typedArrayOffset(bytes),
          typedArrayOffset(bytes) + typedArrayBytes(bytes),
        ),
      );
    else if (kind === 'bytes') {
      const copy = new Uint8ArrayCtor(typedArrayLength(bytes));
      typedArraySet(copy, bytes);
      resolve(copy);
    } else {
      const TextDecoder = getTextDecoder();
      const text = new TextDecoder().decode(bytes);
      resolve(kind === 'json' ? jsonParse(text) : text);
    }
  });
}

/** Parses an absolute URL for a request: its href, or a TypeError as Node words it. */
function requestURL(input) {
  const parts = parseURL(input, undefined);
  if (parts === undefined) throw new TypeErrorCtor('Failed to parse URL from ' + input);
  if (parts[3] !== '' || parts[4] !== '')
    throw new TypeErrorCtor(
      'Request cannot be constructed from a URL that includes credentials: ' + input,
    );
  return parts;
}

/** What a Request or fetch(input, init) asks for: { href, protocol, method, headers, redirect, bytes }. */
let RequestClass;
let requestState;
function requestParts(input, init, what) {
  let parts;
  let method = 'GET';
  let headers;
  let redirect = 'follow';
  let bytes = null;
  if (RequestClass !== undefined && requestState.isRequest(input)) {
    const from = requestState.of(input);
    if (from.state.used)
      throw new TypeErrorCtor(
        'Cannot construct a Request with a Request object that has already been used.',
      );
    parts = from.parts;
    method = from.method;
    headers = from.headers;
    redirect = from.redirect;
    bytes = from.state.bytes;
  } else {
    // A URL object has no 'url' property: it is read as a string, its href.
    let url = input;
    if (isObjectLike(input) && typeof input.url === 'string') url = input.url;
    parts = requestURL(toStr(url));
  }
  const Headers = getHeaders();
  if (init !== undefined && init !== null) {
    if (!isObjectLike(init)) throw new TypeErrorCtor(what + ': Expected init to be an object.');
    if (init.method !== undefined) {
      const given = byteString(init.method);
      if (!isToken(given)) throw new TypeErrorCtor("'" + given + "' is not a valid HTTP method.");
      const lower = toLowerCase(given);
      if (FORBIDDEN_METHODS[lower] === 1)
        throw new TypeErrorCtor("'" + given + "' HTTP method is unsupported.");
      method = NORMALIZED_METHODS[lower] !== undefined ? NORMALIZED_METHODS[lower] : given;
    }
    if (init.redirect !== undefined) {
      const mode = toStr(init.redirect);
      if (REDIRECT_MODES[mode] !== 1)
        throw new TypeErrorCtor(
          what + ': ' + mode + ' is not an accepted type. Expected one of follow, manual, error.',
        );
      redirect = mode;
    }
    if (init.headers !== undefined) headers = new Headers(init.headers);
    const body = init.body;
    if (body !== undefined && body !== null) {
      if (method === 'GET' || method === 'HEAD')
        throw new TypeErrorCtor('Request with GET/HEAD method cannot have body.');
      const extracted = extractBody(body, what);
      bytes = extracted.bytes;
      if (headers === undefined) headers = new Headers(headers);
      if (extracted.type !== null && !headers.has('content-type'))
        headersState.append(headers, 'content-type', extracted.type);
    }
  }
  headers = new Headers(headers);
  return { parts: parts, method: method, headers: headers, redirect: redirect, bytes: bytes };
}

function getRequest() {
  if (RequestClass) return RequestClass;
  getHeaders();
  let check;
  let read;
  class Request {
    #parts;
    #method;
    #headers;
    #redirect;
    #state;
    constructor(input, init = undefined) {
      argsRequired(1, arguments.length, 'Request constructor');
      const parts = requestParts(input, init, 'Request constructor');
      this.#parts = parts.parts;
      this.#method = parts.method;
      this.#headers = parts.headers;
      this.#redirect = parts.redirect;
      this.#state = { used: false, bytes: parts.bytes };
    }
    get method() {
      check(this);
      return this.#method;
    }
    get url() {
      check(this);
      return this.#parts[0];
    }
    get headers() {
      check(this);
      return this.#headers;
    }
    get redirect() {
      check(this);
      return this.#redirect;
    }
    get bodyUsed() {
      check(this);
      return this.#state.used;
    }
    clone() {
      check(this);
      if (this.#state.used)
        throw new TypeErrorCtor('Request.clone: Body has already been consumed.');
      return new Request(this);
    }
    arrayBuffer() {
      return read(this, 'arrayBuffer');
    }
    bytes() {
      return read(this, 'bytes');
    }
    text() {
      return read(this, 'text');
    }
    json() {
      return read(this, 'json');
    }
    static {
      check = (self) => {
        if (self === null || typeof self !== 'object' || !(#parts in self))
          throw new TypeErrorCtor('Illegal invocation');
      };
      // A body method on a wrong receiver rejects (undici's consumeBody is an async function).
      read = (self, kind) => {
        if (self === null || typeof self !== 'object' || !(#parts in self))
          return new PromiseCtor((_, reject) => reject(new TypeErrorCtor('Illegal invocation')));
        return consume(self.#state, kind);
      };
      requestState = {
        isRequest: (value) => isObjectLike(value) && #parts in value,
        of: (request) => ({
          parts: request.#parts,
          method: request.#method,
          headers: request.#headers,
          redirect: request.#redirect,
          state: request.#state,
        }),
      };
    }
  }
  defineProperty(Request.prototype, SymbolToStringTag, { value: 'Request', configurable: true });
  enumerable(Request.prototype, [
    'method',
    'url',
    'headers',
    'redirect',
    'bodyUsed',
    'clone',
    'arrayBuffer',
    'bytes',
    'text',
    'json',
  ]);
  RequestClass = Request;
  return Request;
}

let ResponseClass;
let makeResponse;
function getResponse() {
  if (ResponseClass) return ResponseClass;
  const Headers = getHeaders();
  const INTERNAL = {}; // first constructor argument of a response built here
  let check;
  let read;
  function reasonPhrase(text) {
    for (let i = 0; i < text.length; i++) {
      const c = charCodeAt(text, i);
      if (!(c === 9 || (c >= 32 && c <= 126) || (c >= 0x80 && c <= 0xff))) return false;
    }
    return true;
  }
  class Response {
    #type = 'default';
    #url = '';
    #redirected = false;
    #status = 200;
    #statusText = '';
    #headers;
    #state;
    constructor(body = null, init = undefined) {
      if (body === INTERNAL) {
        this.#type = init.type;
        this.#url = init.url;
        this.#redirected = init.redirected;
        this.#status = init.status;
        this.#statusText = init.statusText;
        this.#headers = headersState.freeze(init.headers);
        this.#state = { used: false, bytes: init.bytes };
        return;
      }
      if (init !== undefined && init !== null && !isObjectLike(init))
        throw new TypeErrorCtor('Response constructor: Expected init to be an object.');
      let status = 200;
      if (init != null && init.status !== undefined) {
        status = +init.status;
        if (!(status >= 200 && status <= 599))
          throw new RangeErrorCtor('init["status"] must be in the range of 200 to 599, inclusive.');
        status = mathFloor(status);
      }
      let statusText = '';
      if (init != null && init.statusText !== undefined) {
        statusText = byteString(init.statusText);
        if (!reasonPhrase(statusText)) throw new TypeErrorCtor('Invalid statusText');
      }
      const headers = new Headers(
        init != null && init.headers !== undefined ? init.headers : undefined,
      );
      const extracted = extractBody(body, 'Response constructor');
      if (extracted !== null && NULL_BODY_STATUS[status] === 1)
        throw new TypeErrorCtor('Response constructor: Invalid response status code ' + status);
      if (extracted !== null && extracted.type !== null && !headers.has('content-type'))
        headersState.append(headers, 'content-type', extracted.type);
      this.#status = status;
      this.#statusText = statusText;
      this.#headers = headers;
      this.#state = { used: false, bytes: extracted === null ? null : extracted.bytes };
    }
    get type() {
      check(this);
      return this.#type;
    }
    get url() {
      check(this);
      return this.#url;
    }
    get redirected() {
      check(this);
      return this.#redirected;
    }
    get status() {
      check(this);
      return this.#status;
    }
    get ok() {
      check(this);
      return this.#status >= 200 && this.#status <= 299;
    }
    get statusText() {
      check(this);
      return this.#statusText;
    }
    get headers() {
      check(this);
      return this.#headers;
    }
    get bodyUsed() {
      check(this);
      return this.#state.used;
    }
    clone() {
      check(this);
      if (this.#state.used)
        throw new TypeErrorCtor('Response.clone: Body has already been consumed.');
      const copy = new Response(INTERNAL, {
        type: this.#type,
        url: this.#url,
        redirected: this.#redirected,
        status: this.#status,
        statusText: this.#statusText,
        headers: new Headers(this.#headers),
        bytes: this.#state.bytes,
      });
      // A clone keeps its headers' guard: a fetched response's headers stay immutable, a constructed one's do not.
      if (this.#type === 'default') copy.#headers = new Headers(this.#headers);
      return copy;
    }
    arrayBuffer() {
      return read(this, 'arrayBuffer');
    }
    bytes() {
      return read(this, 'bytes');
    }
    text() {
      return read(this, 'text');
    }
    json() {
      return read(this, 'json');
    }
    static error() {
      return new Response(INTERNAL, {
        type: 'error',
        url: '',
        redirected: false,
        status: 0,
        statusText: '',
        headers: new Headers(),
        bytes: null,
      });
    }
    static json(data = undefined, init = undefined) {
      const text = jsonStringify(data);
      if (text === undefined) throw new TypeErrorCtor('Value is not JSON serializable');
      // Bytes, so the constructor adds no text/plain type: application/json unless init's headers name one.
      const response = new Response(utf8Encode(text), init);
      if (!response.#headers.has('content-type'))
        headersState.append(response.#headers, 'content-type', 'application/json');
      return response;
    }
    static redirect(url, status = 302) {
      argsRequired(1, arguments.length, 'Response.redirect');
      const href = requestURL(toStr(url))[0];
      status = +status;
      if (REDIRECT_STATUS[status] !== 1)
        throw new RangeErrorCtor('Invalid status code ' + toStr(status));
      const headers = new Headers([['location', href]]);
      return new Response(INTERNAL, {
        type: 'default',
        url: '',
        redirected: false,
        status: status,
        statusText: '',
        headers: headers,
        bytes: null,
      });
    }
    static {
      check = (self) => {
        if (self === null || typeof self !== 'object' || !(#state in self))
          throw new TypeErrorCtor('Illegal invocation');
      };
      makeResponse = (data) => new Response(INTERNAL, data);
      read = (self, kind) => {
        if (self === null || typeof self !== 'object' || !(#state in self))
          return new PromiseCtor((_, reject) => reject(new TypeErrorCtor('Illegal invocation')));
        return consume(self.#state, kind);
      };
    }
  }
  defineProperty(Response.prototype, SymbolToStringTag, { value: 'Response', configurable: true });
  enumerable(Response.prototype, [
    'type',
    'url',
    'redirected',
    'status',
    'ok',
    'statusText',
    'headers',
    'bodyUsed',
    'clone',
    'arrayBuffer',
    'bytes',
    'text',
    'json',
  ]);
  enumerable(Response, ['error', 'json', 'redirect']);
  ResponseClass = Response;
  return Response;
}

/** The server's reply to a fetch, checked field by field; a malformed one is a TypeError. */
function responseFromReply(text, method) {
  let reply;
  try {
    reply = jsonParse(text);
  } catch (_) {
    reply = undefined;
  }
  const malformed = () => new TypeErrorCtor('fetch failed: the server sent a malformed reply');
  if (reply === null || typeof reply !== 'object') throw malformed();
  const status = reply.status;
  if (
    !isInteger(status) ||
    status < 100 ||
    status > 599 ||
    typeof reply.url !== 'string' ||
    typeof reply.body !== 'string' ||
    !isArray(reply.headers)
  )
    throw malformed();
  const Headers = getHeaders();
  const headers = new Headers();
  const pairs = reply.headers;
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i];
    if (!isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string')
      throw malformed();
    try {
      headersState.append(headers, pair[0], pair[1]);
    } catch (_) {
      /* a header Node would not have let through */
    }
  }
  getResponse();
  const nullBody = NULL_BODY_STATUS[status] === 1 || method === 'HEAD';
  return makeResponse({
    type: 'basic',
    url: reply.url,
    redirected: reply.redirected === true,
    status: status,
    statusText: typeof reply.statusText === 'string' ? reply.statusText : '',
    headers: headers,
    bytes: nullBody ? null : base64Decode(reply.body, false),
  });
}

function fetch(input, init = undefined) {
  const given = arguments.length;
  return new PromiseCtor((resolve, reject) => {
    argsRequired(1, given, 'fetch');
    const request = requestParts(input, init, 'fetch');
    const protocol = request.parts[2];
    if (protocol !== 'http:' && protocol !== 'https:')
      throw new TypeErrorCtor(
        'fetch failed: the URL scheme "' + protocol + '" is not supported (only http: and https:)',
      );
    const sorted = headersState.sorted(request.headers);
    const pairs = [];
    for (let i = 0; i < sorted.length; i += 2) pairs[pairs.length] = [sorted[i], sorted[i + 1]];
    const args = objectCreate(null);
    args.url = request.parts[0];
    args.method = request.method;
    args.headers = pairs;
    if (request.bytes !== null) args.body = base64Encode(request.bytes, false);
    args.redirect = request.redirect;
    const method = request.method;
    serviceRequest(
      'fetch',
      jsonStringify(args),
      (text) => {
        try {
          resolve(responseFromReply(text, method));
        } catch (err) {
          reject(err);
        }
      },
      (reply) => reject(serviceError(reply, true)),
    );
  });
}
