/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope):
 * `Response` and `fetch` itself (docs/spec.md §8).
 *
 * The request is performed by the server (under its egress policy), reached through
 * `serviceRequest()` of ../services.js: the sandbox sends one JSON text and gets one back, with the
 * bodies as base64. Everything a function sees is built here from the sandbox's own realm. A
 * response arrives whole (at most FETCH_MAX_BYTES, cut server-side).
 */

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
