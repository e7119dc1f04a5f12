/** Small pure helpers of the console: formats, Server-Timing, headers text, curl lines. */

/** `0.5 ms`, `12 ms`, `1.25 s`. */
export function ms(value: number | undefined): string {
  if (value === undefined || Number.isNaN(value)) return '–';
  if (value < 10) return `${value.toFixed(1)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

export function percent(rate: number | undefined): string {
  if (rate === undefined) return '–';
  return `${(rate * 100).toFixed(rate > 0 && rate < 0.01 ? 2 : 1)} %`;
}

export function when(iso: string | undefined): string {
  if (!iso) return '–';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** Server-Timing (`queue;dur=1.2, exec;dur=3.4, total;dur=5.0`) → name → ms. */
export function parseServerTiming(header: string | null): Record<string, number> {
  const out: Record<string, number> = {};
  if (!header) return out;
  for (const metric of header.split(',')) {
    const [name, ...params] = metric.trim().split(';');
    for (const param of params) {
      const [key, value] = param.trim().split('=');
      if (key === 'dur' && name) out[name.trim()] = Number(value);
    }
  }
  return out;
}

/** `Name: value` lines → a header object; blank lines and lines without a colon are errors. */
export function parseHeaders(text: string): { headers: Record<string, string>; error?: string } {
  const headers: Record<string, string> = {};
  const lines = text.split('\n');
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { headers, error: `headers line ${index + 1}: write "Name: value"` };
    const name = line.slice(0, colon).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      return { headers, error: `headers line ${index + 1}: "${name}" is not a header name` };
    }
    headers[name] = line.slice(colon + 1).trim();
  }
  return { headers };
}

/** A word for the shell, in single quotes (a quote inside becomes '\''). */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export interface InvokeInput {
  method: string;
  subpath: string;
  query: string;
  headers: string;
  body: string;
  async: boolean;
}

export const EMPTY_INPUT: InvokeInput = {
  method: 'GET',
  subpath: '',
  query: '',
  headers: '',
  body: '',
  async: false,
};

/** Methods that carry no body from a browser (fetch refuses one). */
export const BODYLESS = new Set(['GET', 'HEAD']);

/** The URL a function is invoked at, relative to the server (`/name/sub?q`). */
export function invokePath(name: string, input: Pick<InvokeInput, 'subpath' | 'query'>): string {
  const subpath = input.subpath.trim();
  const query = input.query.trim().replace(/^\?/, '');
  const sub = subpath === '' ? '' : subpath.startsWith('/') ? subpath : `/${subpath}`;
  return `/${name}${sub}${query ? `?${query}` : ''}`;
}

/** Whether an invocation sends its body (GET and HEAD send none, nor does an empty body). */
export function sendsBody(input: Pick<InvokeInput, 'method' | 'body'>): boolean {
  return input.body !== '' && !BODYLESS.has(input.method);
}

/**
 * The Content-Type a body is sent with when the Headers box names none: `application/json` for
 * a body that looks like JSON (an object or an array: it starts with `{` or `[`), else
 * `text/plain; charset=utf-8`. Undefined when no body is sent, or a Content-Type line is typed.
 */
export function defaultContentType(input: InvokeInput): string | undefined {
  if (!sendsBody(input)) return undefined;
  const { headers } = parseHeaders(input.headers);
  if (Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) return undefined;
  return /^\s*[[{]/.test(input.body) ? 'application/json' : 'text/plain; charset=utf-8';
}

/**
 * The request headers of an invocation, the same for Invoke, Run draft and Copy as curl: the
 * typed ones, and the Content-Type of the body when none is typed (defaultContentType).
 */
export function invokeHeaders(input: InvokeInput): Record<string, string> {
  const { headers } = parseHeaders(input.headers);
  const type = defaultContentType(input);
  if (type !== undefined) headers['Content-Type'] = type;
  return headers;
}

/** The headers a real invocation sends: invokeHeaders, plus Prefer: respond-async when async. */
export function requestHeaders(input: InvokeInput): Record<string, string> {
  const headers = invokeHeaders(input);
  if (input.async) headers.Prefer = 'respond-async';
  return headers;
}

/**
 * The same request as a curl command line, every header given with -H (so curl adds no
 * Content-Type of its own); the admin token is never in it: it is not sent.
 */
export function curlLine(origin: string, name: string, input: InvokeInput): string {
  // HEAD with -X would wait for a body that never comes: --head asks for the headers only.
  const parts = input.method === 'HEAD' ? ['curl', '--head'] : ['curl', '-i'];
  if (input.method !== 'GET' && input.method !== 'HEAD') parts.push('-X', input.method);
  for (const [key, value] of Object.entries(requestHeaders(input))) {
    parts.push('-H', shellQuote(`${key}: ${value}`));
  }
  if (sendsBody(input)) parts.push('--data-raw', shellQuote(input.body));
  parts.push(shellQuote(origin + invokePath(name, input)));
  return parts.join(' ');
}

/** Pretty JSON when the text is JSON, else the text. */
export function prettyJson(text: string): { text: string; json: boolean } {
  try {
    return { text: JSON.stringify(JSON.parse(text), null, 2), json: true };
  } catch {
    return { text, json: false };
  }
}

/** A console line `level\tmessage` → its parts. */
export function consoleLine(line: string): { level: string; message: string } {
  const tab = line.indexOf('\t');
  return tab < 0
    ? { level: 'log', message: line }
    : { level: line.slice(0, tab), message: line.slice(tab + 1) };
}

/** Hash routes: `#/functions/a/b` → ['functions', 'a/b'], with the query after `?`. */
export function parseRoute(hash: string): { view: string; rest: string; params: URLSearchParams } {
  const raw = hash.replace(/^#\/?/, '');
  const [pathPart, queryPart = ''] = raw.split('?');
  const slash = pathPart.indexOf('/');
  const view = slash < 0 ? pathPart : pathPart.slice(0, slash);
  const rest = slash < 0 ? '' : decodeURIComponent(pathPart.slice(slash + 1));
  return { view: view || 'functions', rest, params: new URLSearchParams(queryPart) };
}

export const SAVED_INPUTS_MAX = 10;

export interface SavedInput extends InvokeInput {
  label: string;
}

const inputsKey = (name: string) => `koa-faas.inputs.${name}`;

/** The saved test inputs of a function (localStorage, at most SAVED_INPUTS_MAX). */
export function savedInputs(name: string): SavedInput[] {
  try {
    const list = JSON.parse(localStorage.getItem(inputsKey(name)) ?? '[]') as SavedInput[];
    return Array.isArray(list) ? list.slice(0, SAVED_INPUTS_MAX) : [];
  } catch {
    return [];
  }
}

export function storeInputs(name: string, inputs: SavedInput[]): void {
  localStorage.setItem(inputsKey(name), JSON.stringify(inputs.slice(0, SAVED_INPUTS_MAX)));
}

/** A starting point for a new function. */
export const TEMPLATE = `// Runs at /<name>; event: method, path, subpath, query, headers, body.
module.exports = async (event, context) => {
  console.log('called with', event.method, event.subpath);
  return { hello: event.query.name ?? 'world' };
};
`;

export const TEMPLATE_TS = `// Runs at /<name>; types are stripped, not checked.
interface Event {
  method: string;
  subpath: string;
  query: Record<string, string>;
  body?: unknown;
}

export default async (event: Event) => {
  console.log('called with', event.method, event.subpath);
  return { hello: event.query.name ?? 'world' };
};
`;
