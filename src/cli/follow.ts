/**
 * `logs --follow`: reads `GET /_/invocations/stream` (Server-Sent Events, docs/http-api.md) and
 * hands each record to the caller as it arrives; once the stream is open, a `following …` line on
 * stderr says so. With a backlog (`--since`), the stream is
 * opened first and the backlog read after, so that no record falls between the two; a record in
 * both is handed over once.
 *
 * How it ends: SIGINT (Ctrl-C) resolves (exit 0); anything else is a CliError (exit 1, one
 * line): a refused stream (the server's code and message, e.g. a wrong token), a server that
 * ends the stream (it is stopping), goes away, or sends nothing for IDLE_MS.
 */
import type { InvocationRecord, InvocationStreamEnd } from '../http/admin/api';
import { ADMIN_TIMEOUT_MS, CliError, errorLine, unreachable } from './client';
import type { Settings } from './settings';
import { note } from './output';
import { SseParser } from './sse';

/**
 * Silence after which the server is taken for gone, in ms: it sends a keep-alive comment every
 * 15 s (invocation-stream.ts KEEP_ALIVE_MS), so this is three of them missed.
 */
export const IDLE_MS = 45_000;

export interface FollowOptions {
  /** The stream's query: `fn` and `status` (an HTTP status or class). */
  query: URLSearchParams;
  /** Recent records to hand over first, newest first (as `GET /_/invocations` lists them). */
  backlog?: () => Promise<InvocationRecord[]>;
  /** Told of each record, oldest first. */
  print(record: InvocationRecord): void;
}

/** A record's identity: an async invocation has one record per attempt under one id. */
const keyOf = (record: InvocationRecord) =>
  `${record.requestId}\n${record.attempt ?? 0}\n${record.start}`;

/**
 * Follows the server's records until SIGINT (resolves) or the stream ends (rejects).
 * @throws CliError saying why the stream ended or could not start.
 */
export async function follow(settings: Settings, options: FollowOptions): Promise<void> {
  const url = `${settings.url}/_/invocations/stream?${options.query}`;
  const controller = new AbortController();
  let stopped: 'interrupted' | 'idle' | 'connect' | undefined;
  const stop = (why: typeof stopped) => {
    stopped ??= why;
    controller.abort();
  };
  const interrupt = () => stop('interrupted');
  process.once('SIGINT', interrupt);
  const connecting = setTimeout(() => stop('connect'), ADMIN_TIMEOUT_MS);
  let idle: NodeJS.Timeout | undefined;
  try {
    let response: Response;
    try {
      response = await fetch(url, {
        headers: {
          accept: 'text/event-stream',
          ...(settings.token === undefined ? {} : { authorization: `Bearer ${settings.token}` }),
        },
        signal: controller.signal,
      });
    } catch (err) {
      if (stopped === 'interrupted') return;
      if (stopped === 'connect') {
        throw new CliError(`no answer from ${settings.url} within ${ADMIN_TIMEOUT_MS / 1000} s`);
      }
      throw new CliError(unreachable(settings.url, err, ADMIN_TIMEOUT_MS));
    } finally {
      clearTimeout(connecting);
    }
    if (!response.ok || response.body === null) {
      throw new CliError(errorLine(response.status, await response.text()));
    }
    idle = setTimeout(() => stop('idle'), IDLE_MS);
    note(`following ${settings.url} (Ctrl-C to stop)`);

    // Until the backlog is handed over, streamed records wait; after, they go straight out.
    const seen = new Set<string>();
    let waiting: InvocationRecord[] | undefined = options.backlog ? [] : undefined;
    const take = (record: InvocationRecord) => {
      if (waiting) waiting.push(record);
      else if (!seen.has(keyOf(record))) options.print(record);
    };
    const reading = read(response.body, take, () => idle?.refresh());
    // A stream that fails while the backlog is read is reported by `reading` below.
    reading.catch(() => undefined);
    if (options.backlog) {
      const backlog = await options.backlog();
      for (const record of backlog.reverse()) {
        seen.add(keyOf(record));
        options.print(record);
      }
      const streamed = waiting ?? [];
      waiting = undefined;
      for (const record of streamed) take(record);
    }
    let ended: InvocationStreamEnd | undefined;
    try {
      ended = await reading;
    } catch (err) {
      if (stopped === 'interrupted') return;
      if (stopped === 'idle') {
        throw new CliError(`no word from ${settings.url} in ${IDLE_MS / 1000} s: stopped`);
      }
      throw new CliError(`lost the stream from ${settings.url}: ${causeOf(err)}`);
    }
    if (stopped === 'interrupted') return;
    throw new CliError(
      ended
        ? `the server ended the stream: ${ended.code}: ${ended.message}`
        : `the server ended the stream`,
    );
  } finally {
    clearTimeout(connecting);
    clearTimeout(idle);
    process.off('SIGINT', interrupt);
    // Whatever ended it (a failed backlog too), the stream must not keep the process alive.
    controller.abort();
  }
}

/**
 * Reads the event stream to its end: each `invocation` event's record to `take`; resolves with
 * the `end` event's reason, if the server sent one. @throws what reading throws.
 */
async function read(
  body: ReadableStream<Uint8Array>,
  take: (record: InvocationRecord) => void,
  alive: () => void,
): Promise<InvocationStreamEnd | undefined> {
  const parser = new SseParser();
  let ended: InvocationStreamEnd | undefined;
  for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
    alive();
    for (const event of parser.push(chunk)) {
      if (event.type === 'invocation') take(JSON.parse(event.data) as InvocationRecord);
      else if (event.type === 'end') ended = JSON.parse(event.data) as InvocationStreamEnd;
    }
  }
  return ended;
}

/** Why a stream broke, in a few words (undici puts the socket's error in `cause`). */
function causeOf(err: unknown): string {
  const error = err as Error & { cause?: Error };
  return error.cause?.message ?? error.message;
}
