/**
 * `GET /_/invocations/stream?fn=&status=` (docs/http-api.md "Following invocations"): the
 * invocation records kept from now on, as Server-Sent Events (text/event-stream), behind the
 * admin token. With REDIS_URL a stream carries every replica's records (shared-records.ts).
 *
 * | what is sent | when |
 * |---|---|
 * | `: connected` | at once, with the headers |
 * | `event: invocation` + `data: <record JSON>` | per record that matches `fn` and `status` |
 * | `: keep-alive` | after KEEP_ALIVE_MS without anything else, so proxies keep the connection |
 * | `event: end` + `data: {"code":"SHUTTING_DOWN",…}`, then the end of the answer | when the server begins to stop |
 *
 * At most MAX_STREAMS are open per server: past it `429 TOO_MANY_REQUESTS` (Retry-After); while
 * the server stops, `503 SHUTTING_DOWN`. A client that disconnects is forgotten at once; one that
 * reads so slowly that more than MAX_BEHIND_BYTES wait for it is disconnected.
 */
import type { ServerResponse } from 'node:http';
import type Router from '@koa/router';
import type { Middleware } from 'koa';
import { InvalidBodyError, ShuttingDownError, TooManyRequestsError } from '../../errors';
import { statusMatcher } from '../../observe/records';
import type { InvocationRecord, RecordLog } from '../../observe/records';
import type { InvocationStreamEnd } from './api';

/** Streams open at once per server, at most. */
export const MAX_STREAMS = 16;
/** Silence after which a `: keep-alive` comment is sent, in ms. */
export const KEEP_ALIVE_MS = 15_000;
/** Bytes written and not yet taken by the client, past which it is disconnected. */
export const MAX_BEHIND_BYTES = 1024 * 1024;

export interface InvocationStreamOptions {
  maxStreams?: number;
  keepAliveMs?: number;
}

/** The open streams of one server: admits them, feeds them, ends them all when it stops. */
export class InvocationStreams {
  readonly #records: RecordLog;
  readonly #max: number;
  readonly #keepAliveMs: number;
  /** Each open stream's end: `end(true)` says goodbye first (the server is stopping). */
  readonly #open = new Set<(goodbye: boolean) => void>();
  #closed = false;

  constructor(records: RecordLog, options: InvocationStreamOptions = {}) {
    this.#records = records;
    this.#max = options.maxStreams ?? MAX_STREAMS;
    this.#keepAliveMs = options.keepAliveMs ?? KEEP_ALIVE_MS;
  }

  /** Streams open now. */
  get size(): number {
    return this.#open.size;
  }

  /**
   * Starts a stream on `res`: writes the headers and `: connected`, then the matching records.
   * @throws ShuttingDownError once close() was called; TooManyRequestsError at the limit.
   */
  open(res: ServerResponse, filter: { fn?: string; status?: string }): void {
    if (this.#closed) throw new ShuttingDownError('the server is shutting down');
    if (this.#open.size >= this.#max) {
      const err = new TooManyRequestsError(
        `${this.#max} invocation streams are open on this server: close one, or try again later`,
      );
      err.headers = { 'Retry-After': '5' };
      throw err;
    }
    // The client left while its request was checked: nothing to open.
    if (res.destroyed) return;
    const matchStatus = statusMatcher(filter.status);
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      // nginx would otherwise buffer the answer, and nothing would arrive until it ends.
      'X-Accel-Buffering': 'no',
    });
    const write = (text: string) => {
      res.write(text);
      if (res.writableLength > MAX_BEHIND_BYTES) end(false);
      else keepAlive.refresh();
    };
    const keepAlive = setInterval(() => write(': keep-alive\n\n'), this.#keepAliveMs).unref();
    const stop = this.#records.follow((record: InvocationRecord) => {
      if (filter.fn !== undefined && record.function !== filter.fn) return;
      if (!matchStatus(record.status)) return;
      write(`event: invocation\ndata: ${JSON.stringify(record)}\n\n`);
    });
    const end = (goodbye: boolean) => {
      if (!this.#open.delete(end)) return;
      stop();
      clearInterval(keepAlive);
      if (goodbye && !res.destroyed) {
        const reason: InvocationStreamEnd = {
          code: 'SHUTTING_DOWN',
          message: 'the server is shutting down',
        };
        res.end(`event: end\ndata: ${JSON.stringify(reason)}\n\n`);
      } else if (!res.writableEnded) {
        res.destroy();
      }
    };
    this.#open.add(end);
    res.once('close', () => end(false));
    write(': connected\n\n');
  }

  /** Ends every stream with an `end` event, and refuses new ones (the server is stopping). */
  close(): void {
    this.#closed = true;
    for (const end of [...this.#open]) end(true);
  }
}

/** A record status filter: an exact HTTP status (`504`) or a class (`5xx`). */
const STATUS = /^(?:[1-5]\d\d|[1-5]xx)$/i;

/** Registers `GET /invocations/stream` on the admin router; before `/invocations/:id`. */
export function invocationStreamRoute(
  router: Router,
  streams: InvocationStreams,
  auth: Middleware,
): void {
  router.get('/invocations/stream', auth, (ctx) => {
    const fn = typeof ctx.query.fn === 'string' && ctx.query.fn !== '' ? ctx.query.fn : undefined;
    const status = typeof ctx.query.status === 'string' ? ctx.query.status : undefined;
    if (status !== undefined && status !== '' && !STATUS.test(status)) {
      throw new InvalidBodyError(
        `status '${status}': a stream filters records by an HTTP status (504) or class (5xx)`,
      );
    }
    streams.open(ctx.res, { fn, status });
    // Written by the stream, not by Koa.
    ctx.respond = false;
  });
}
