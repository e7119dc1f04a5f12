/**
 * A part of the globals script (assembled by ../../../globals.ts, in buildParts()'s scope): `URL`.
 *
 * URL parsing and every URL setter are Node's own (../../../host-bridge.ts: the host parses a
 * string with Node's URL and returns its parts as JSON text); the URL object itself is a sandbox
 * class that keeps those parts. Its `URLSearchParams` is url-search-params.js's. A URL's `searchParams` is live: changing it marks the URL, whose query is rewritten (one bridge
 * call) the next time `href`, `search` or a setter needs it, as Node does; setting `href` or
 * `search` re-parses the list.
 */

/** new URL(input, base) by Node's parser: the parts array, or undefined when invalid. */
function parseURL(input, base) {
  if (input.length > MAX_BRIDGE_CHARS || (base !== undefined && base.length > MAX_BRIDGE_CHARS))
    return undefined;
  const result = host('url', input, base);
  return hostOk(result) ? jsonParse(hostPayload(result)) : undefined;
}

function invalidURL(input, base) {
  const error = nodeError(TypeErrorCtor, 'ERR_INVALID_URL', 'Invalid URL');
  defineProperty(error, 'input', {
    value: input,
    writable: true,
    enumerable: true,
    configurable: true,
  });
  if (base !== undefined)
    defineProperty(error, 'base', {
      value: base,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  return error;
}

let URLClass;
function getURL() {
  if (URLClass) return URLClass;
  const URLSearchParams = getURLSearchParams();
  const PARTS = {}; // first constructor argument of a URL made from parts already parsed
  let check;
  class URL {
    // [href, origin, protocol, username, password, host, hostname, port, pathname, search, hash]
    #parts;
    #params = null;
    #dirty = false;
    constructor(input, base = undefined) {
      if (arguments.length === 0) throw missingArgs('"url" argument');
      if (input === PARTS) {
        this.#parts = base;
        return;
      }
      input = toStr(input);
      if (base !== undefined) base = toStr(base);
      const parts = parseURL(input, base);
      if (parts === undefined) throw invalidURL(input, base);
      this.#parts = parts;
    }
    static parse(input, base = undefined) {
      if (arguments.length === 0) throw missingArgs('"url" argument');
      const parts = parseURL(toStr(input), base === undefined ? undefined : toStr(base));
      return parts === undefined ? null : new URL(PARTS, parts);
    }
    static canParse(input, base = undefined) {
      if (arguments.length === 0) throw missingArgs('"url" argument');
      return parseURL(toStr(input), base === undefined ? undefined : toStr(base)) !== undefined;
    }
    #sync() {
      if (!this.#dirty) return;
      this.#dirty = false;
      const params = this.#params;
      const query = paramsList(params).length > 0 ? '?' + serializeQuery(paramsList(params)) : '';
      const result = host('url-set', this.#parts[0], 'search', query);
      if (hostOk(result)) this.#parts = jsonParse(hostPayload(result));
    }
    /** Runs one of Node's setters on this URL; the new parts, or undefined when it refused. */
    #set(field, value) {
      this.#sync();
      if (value.length > MAX_BRIDGE_CHARS) return undefined;
      const result = host('url-set', this.#parts[0], field, value);
      if (!hostOk(result)) return undefined;
      this.#parts = jsonParse(hostPayload(result));
      if ((field === 'href' || field === 'search') && this.#params !== null)
        paramsReset(this.#params, this.#parts[9]);
      return this.#parts;
    }
    toString() {
      check(this);
      this.#sync();
      return this.#parts[0];
    }
    get href() {
      check(this);
      this.#sync();
      return this.#parts[0];
    }
    set href(value) {
      check(this);
      value = toStr(value);
      if (this.#set('href', value) === undefined) throw invalidURL(value);
    }
    get origin() {
      check(this);
      return this.#parts[1];
    }
    get protocol() {
      check(this);
      return this.#parts[2];
    }
    set protocol(value) {
      check(this);
      this.#set('protocol', toStr(value));
    }
    get username() {
      check(this);
      return this.#parts[3];
    }
    set username(value) {
      check(this);
      this.#set('username', toStr(value));
    }
    get password() {
      check(this);
      return this.#parts[4];
    }
    set password(value) {
      check(this);
      this.#set('password', toStr(value));
    }
    get host() {
      check(this);
      return this.#parts[5];
    }
    set host(value) {
      check(this);
      this.#set('host', toStr(value));
    }
    get hostname() {
      check(this);
      return this.#parts[6];
    }
    set hostname(value) {
      check(this);
      this.#set('hostname', toStr(value));
    }
    get port() {
      check(this);
      return this.#parts[7];
    }
    set port(value) {
      check(this);
      this.#set('port', toStr(value));
    }
    get pathname() {
      check(this);
      return this.#parts[8];
    }
    set pathname(value) {
      check(this);
      this.#set('pathname', toStr(value));
    }
    get search() {
      check(this);
      this.#sync();
      return this.#parts[9];
    }
    set search(value) {
      check(this);
      this.#set('search', toStr(value));
    }
    get searchParams() {
      check(this);
      if (this.#params === null) {
        this.#params = new URLSearchParams(this.#parts[9]);
        paramsAttach(this.#params, this);
      }
      return this.#params;
    }
    get hash() {
      check(this);
      return this.#parts[10];
    }
    set hash(value) {
      check(this);
      this.#set('hash', toStr(value));
    }
    toJSON() {
      check(this);
      this.#sync();
      return this.#parts[0];
    }
    static {
      check = (self) => {
        // Node's URL has no explicit check: V8's own private-member error.
        if (self === null || typeof self !== 'object' || !(#parts in self))
          throw new TypeErrorCtor('Receiver must be an instance of class URL');
      };
      urlParamsChanged = (url) => {
        url.#dirty = true;
      };
    }
  }
  defineProperty(URL.prototype, SymbolToStringTag, { value: 'URL', configurable: true });
  enumerable(URL.prototype, [
    'toString',
    'href',
    'origin',
    'protocol',
    'username',
    'password',
    'host',
    'hostname',
    'port',
    'pathname',
    'search',
    'searchParams',
    'hash',
    'toJSON',
  ]);
  enumerable(URL, ['parse', 'canParse']);
  URLClass = URL;
  return URL;
}
