/**
 * The soak's HTTP side: one traffic call (a body larger than a chunk is streamed with back
 * pressure, and the call ends when the answer is read whole, even while the body is still
 * being sent: an early 413 must reach the client), the admin reads (health, metrics, functions)
 * and the effect check's read of every `eff:*` key through the admin KV route.
 */
import http from 'node:http';
import type { RequestSpec } from './soak-traffic';

export const HOST = '127.0.0.1';
/** A body is written in pieces of this size, each after the socket took the last. */
const CHUNK = 64 * 1024;
/** Bytes of an answer kept (the rest is counted, not kept). */
const MAX_BODY_KEEP = 64 * 1024;

export interface Answer {
  status?: number;
  body?: string;
  requestId?: string;
  retryAfter?: string;
  /** Why there is no whole answer: a client timeout or a connection error. */
  error?: string;
  /** Bytes of the request body handed to the socket by the time the call ended. */
  bodySent: number;
}

/** Resolves when the request can take more (or will take none: closed). */
function drained(req: http.ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      req.off('drain', done).off('close', done);
      resolve();
    };
    req.on('drain', done).on('close', done);
  });
}

/** One request of the traffic; never rejects (a failure is in `error`). */
export function call(
  agent: http.Agent,
  port: number,
  spec: RequestSpec,
  rid: string,
  timeoutMs: number,
): Promise<Answer> {
  return new Promise((resolve) => {
    let done = false;
    let head = false;
    let sent = 0;
    const headers: Record<string, string> = { 'X-Request-Id': rid, ...spec.headers };
    if (spec.body && !spec.chunked) headers['Content-Length'] = String(spec.body.length);
    const req = http.request({
      host: HOST,
      port,
      method: spec.method,
      path: spec.path,
      headers,
      agent,
    });
    const finish = (answer: Omit<Answer, 'bodySent'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...answer, bodySent: sent });
      // Answered before the body was all sent (an early 413): stop sending, drop the connection.
      if (answer.error !== undefined || !req.writableEnded) req.destroy();
    };
    const failed = (what: string) => (err: NodeJS.ErrnoException) =>
      finish({
        error: `${what}${err.code ?? err.message}${head ? ' after the answer began' : ''}`,
      });
    req.on('response', (res) => {
      head = true;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (size < MAX_BODY_KEEP) chunks.push(chunk);
        size += chunk.length;
      });
      res.on('end', () =>
        finish({
          status: res.statusCode,
          body: Buffer.concat(chunks).toString('utf8'),
          requestId: res.headers['x-request-id'] as string | undefined,
          retryAfter: res.headers['retry-after'],
        }),
      );
      res.on('error', failed('response '));
      res.on('close', () => {
        if (!res.complete) finish({ error: 'answer cut short' });
      });
    });
    req.on('error', failed(''));
    const timer = setTimeout(() => finish({ error: 'client timeout' }), timeoutMs);
    const body = spec.body;
    if (!body) {
      req.end();
      return;
    }
    if (body.length <= CHUNK) {
      sent = body.length;
      req.end(body);
      return;
    }
    void (async () => {
      for (let offset = 0; offset < body.length; offset += CHUNK) {
        if (done || req.destroyed) return;
        const piece = body.subarray(offset, offset + CHUNK);
        sent += piece.length;
        if (!req.write(piece)) await drained(req);
      }
      if (!done && !req.destroyed) req.end();
    })();
  });
}

// ---------------------------------------------------------------------------------------------
// Admin reads, each on its own short-lived connection

export interface AdminAnswer {
  status: number;
  text: string;
}

export function adminGet(
  port: number,
  urlPath: string,
  token?: string,
  timeoutMs = 5000,
): Promise<AdminAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
    const req = http.get({ host: HOST, port, path: urlPath, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${urlPath}: timeout`)));
    req.on('error', reject);
  });
}

/** The JSON of a 200, or undefined (any failure: the caller tolerates absent routes). */
export async function adminJson(port: number, urlPath: string, token?: string): Promise<unknown> {
  try {
    const answer = await adminGet(port, urlPath, token);
    return answer.status === 200 ? (JSON.parse(answer.text) as unknown) : undefined;
  } catch {
    return undefined;
  }
}

export interface PoolFigures {
  workers: number;
  running: number;
  queued: number;
  restarts: number;
  /** Whatever else /_/health says of the pool (a solo lane, quarantines, …). */
  [field: string]: unknown;
}

export async function poolFigures(port: number): Promise<PoolFigures | undefined> {
  const health = (await adminJson(port, '/_/health')) as { pool?: PoolFigures } | undefined;
  return health?.pool;
}

/** Prometheus text → `name{labels}` → value (samples only, comments skipped). */
export async function metricSamples(port: number): Promise<Map<string, number> | undefined> {
  try {
    const answer = await adminGet(port, '/_/metrics');
    if (answer.status !== 200) return undefined;
    const samples = new Map<string, number>();
    for (const line of answer.text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const space = line.lastIndexOf(' ');
      const value = Number(line.slice(space + 1));
      if (space > 0 && Number.isFinite(value)) samples.set(line.slice(0, space), value);
    }
    return samples;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The effect check

export interface KeyRead {
  /** Key → its value, for every key with the prefix. */
  values: Map<string, unknown>;
  /** Reads that failed (the check cannot pass with any). */
  errors: string[];
}

/**
 * Every key of function `fn` that starts with `prefix`, with its value: the admin list, page by
 * page, then one GET per key (8 at a time).
 */
export async function readKeys(
  port: number,
  token: string,
  fn: string,
  prefix: string,
): Promise<KeyRead> {
  const keys: string[] = [];
  const errors: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const query = `prefix=${encodeURIComponent(prefix)}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    let list: { keys: { key: string }[]; cursor?: string };
    try {
      const answer = await adminGet(port, `/_/kv/${fn}?${query}`, token);
      if (answer.status !== 200) {
        errors.push(`list: ${answer.status} ${answer.text.slice(0, 200)}`);
        break;
      }
      list = JSON.parse(answer.text) as typeof list;
    } catch (err) {
      errors.push(`list: ${String(err)}`);
      break;
    }
    keys.push(...list.keys.map((k) => k.key));
    cursor = list.cursor;
    if (!cursor) break;
  }
  const values = new Map<string, unknown>();
  let next = 0;
  const reader = async () => {
    while (next < keys.length) {
      const key = keys[next++];
      try {
        const answer = await adminGet(port, `/_/kv/${fn}/${encodeURIComponent(key)}`, token);
        if (answer.status === 200) values.set(key, JSON.parse(answer.text));
        else errors.push(`${key}: ${answer.status} ${answer.text.slice(0, 200)}`);
      } catch (err) {
        errors.push(`${key}: ${String(err)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, reader));
  return { values, errors };
}
