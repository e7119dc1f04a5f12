/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope): request
 * and response bodies, and `Request` (docs/spec.md §8).
 *
 * A body is a string (UTF-8), an ArrayBuffer or view (copied when the request or response is made),
 * or URLSearchParams (form-encoded); anything else is a TypeError rather than the "[object Object]"
 * Node would send. Bodies are whole byte buffers, never streams: a request body is read when the
 * request is made, and `text()`/`json()`/`arrayBuffer()`/`bytes()` read a body once (bodyUsed), as
 * in Node 20.
 */

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
