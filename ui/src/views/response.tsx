/**
 * The "Response" region: the answer of an invocation or of a draft run, in one shape: status,
 * headers, body (pretty JSON, text, or an image for image/*), the Server-Timing split as a bar,
 * and the request id linking to its record.
 */
import type { DraftRunAnswer } from '../api';
import { consoleLine, ms, parseServerTiming, prettyJson } from '../util';

export interface Shown {
  kind: 'invoke' | 'draft';
  status: number;
  statusText: string;
  headers: [string, string][];
  body:
    | { type: 'empty' }
    | { type: 'json' | 'text'; text: string }
    | { type: 'image'; url: string; contentType: string; bytes: number }
    | { type: 'binary'; bytes: number; contentType: string };
  timing: Record<string, number>;
  /** Round trip as the browser saw it. */
  clientMs?: number;
  requestId?: string;
  /** A draft run's console output (a real invocation's is in its record). */
  logs?: string[];
  version?: string;
  location?: string;
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** Bytes as base64 (in slices: String.fromCharCode takes a bounded number of arguments). */
function base64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function bodyOf(contentType: string, bytes: Uint8Array): Shown['body'] {
  if (bytes.length === 0) return { type: 'empty' };
  const type = contentType.split(';')[0].trim().toLowerCase();
  if (type.startsWith('image/')) {
    // A data: URL, not a blob: one. A blob: URL has the console's origin: an SVG the function
    // answered, opened from it in a tab of its own, would run its scripts there. A data: URL's
    // document has an opaque origin (and browsers do not open one at the top level).
    const url = `data:${type};base64,${base64(bytes)}`;
    return { type: 'image', url, contentType: type, bytes: bytes.length };
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return { type: 'binary', bytes: bytes.length, contentType: type || 'unknown' };
  }
  if (/json/.test(type)) {
    const pretty = prettyJson(text);
    return pretty.json ? { type: 'json', text: pretty.text } : { type: 'text', text };
  }
  return { type: 'text', text };
}

/** What a fetch of a function answered. */
export async function fromFetch(res: Response, clientMs: number): Promise<Shown> {
  const bytes = new Uint8Array(await res.arrayBuffer());
  const headers = [...res.headers.entries()];
  return {
    kind: 'invoke',
    status: res.status,
    statusText: res.statusText || STATUS_TEXT[res.status] || '',
    headers,
    body: bodyOf(res.headers.get('content-type') ?? '', bytes),
    timing: parseServerTiming(res.headers.get('server-timing')),
    clientMs,
    requestId: res.headers.get('x-request-id') ?? undefined,
    version: res.headers.get('x-function-version') ?? undefined,
    location: res.headers.get('location') ?? undefined,
  };
}

/** What a draft run answered (src/http/admin/drafts.ts). */
export function fromDraft(answer: DraftRunAnswer, clientMs: number): Shown {
  const headers: [string, string][] = [];
  for (const [name, value] of Object.entries(answer.headers)) {
    for (const one of Array.isArray(value) ? value : [value])
      headers.push([name.toLowerCase(), one]);
  }
  const contentType = headers.find(([name]) => name === 'content-type')?.[1] ?? '';
  const bytes =
    answer.bodyEncoding === 'base64'
      ? Uint8Array.from(atob(answer.body), (c) => c.charCodeAt(0))
      : new TextEncoder().encode(answer.body);
  const { queue, exec, total } = answer.durationMs;
  const timing: Record<string, number> = { total };
  if (queue !== undefined) timing.queue = queue;
  if (exec !== undefined) timing.exec = exec;
  return {
    kind: 'draft',
    status: answer.status,
    statusText: STATUS_TEXT[answer.status] ?? '',
    headers,
    body: bodyOf(contentType, bytes),
    timing,
    clientMs,
    logs: answer.logs,
    version: answer.version,
  };
}

/** The queue / exec split of the total, as a bar. */
function TimingBar({ timing }: { timing: Record<string, number> }) {
  const total = timing.total;
  if (total === undefined) return null;
  const queue = timing.queue ?? 0;
  const exec = timing.exec ?? 0;
  const other = Math.max(0, total - queue - exec);
  const share = (value: number) => `${total > 0 ? (value / total) * 100 : 0}%`;
  const label = `Server timing: queue ${ms(queue)}, exec ${ms(exec)}, server ${ms(other)}, total ${ms(total)}`;
  return (
    <div class="timing">
      <div class="timing-bar" role="img" aria-label={label}>
        <span class="seg seg-queue" style={{ width: share(queue) }} />
        <span class="seg seg-exec" style={{ width: share(exec) }} />
        <span class="seg seg-other" style={{ width: share(other) }} />
      </div>
      <p class="timing-legend">
        <span class="key key-queue" aria-hidden="true" /> queue {ms(queue)}{' '}
        <span class="key key-exec" aria-hidden="true" /> exec {ms(exec)}{' '}
        <span class="key key-other" aria-hidden="true" /> server {ms(other)} · total {ms(total)}
      </p>
    </div>
  );
}

export function ResponseView({ shown, busy }: { shown?: Shown; busy: boolean }) {
  return (
    <section class="panel response" role="region" aria-label="Response" aria-busy={busy}>
      <h3>Response</h3>
      {busy && <p class="muted">Waiting for the answer…</p>}
      {!busy && !shown && (
        <p class="muted">Invoke the function or run the draft to see its answer here.</p>
      )}
      {!busy && shown && (
        <div>
          <p class="status-line">
            <strong
              class={`status status-${Math.floor(shown.status / 100)}xx`}
              data-testid="response-status"
            >
              {shown.status} {shown.statusText}
            </strong>
            {shown.kind === 'draft' && (
              <span class="badge badge-draft">draft run, not deployed</span>
            )}
            {shown.clientMs !== undefined && (
              <span class="muted"> · {ms(shown.clientMs)} round trip</span>
            )}
          </p>
          <TimingBar timing={shown.timing} />
          <dl class="facts">
            {shown.requestId && (
              <>
                <dt>Request id</dt>
                <dd>
                  <a href={`#/invocations/${encodeURIComponent(shown.requestId)}`}>
                    {shown.requestId}
                  </a>
                </dd>
              </>
            )}
            {shown.version && (
              <>
                <dt>Version</dt>
                <dd>
                  <code>{shown.version}</code>
                </dd>
              </>
            )}
            {shown.location && (
              <>
                <dt>Location</dt>
                <dd>
                  <code>{shown.location}</code>
                </dd>
              </>
            )}
          </dl>
          <details>
            <summary>Headers ({shown.headers.length})</summary>
            <table class="headers">
              <tbody>
                {shown.headers.map(([name, value], i) => (
                  <tr key={i}>
                    <th scope="row">{name}</th>
                    <td>{value}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
          <h4>Body</h4>
          <Body body={shown.body} />
          {shown.logs && (
            <>
              <h4>Console output</h4>
              <ConsoleLines lines={shown.logs} />
            </>
          )}
        </div>
      )}
    </section>
  );
}

function Body({ body }: { body: Shown['body'] }) {
  switch (body.type) {
    case 'empty':
      return <p class="muted">(no body)</p>;
    case 'image':
      return (
        <figure>
          <img
            src={body.url}
            alt={`response image (${body.contentType}, ${body.bytes} bytes)`}
            class="body-image"
          />
          <figcaption class="muted">
            {body.contentType}, {body.bytes} bytes
          </figcaption>
        </figure>
      );
    case 'binary':
      return (
        <p class="muted">
          {body.bytes} bytes of {body.contentType} (not text)
        </p>
      );
    default:
      return (
        <pre class={`body body-${body.type}`} data-testid="response-body" tabIndex={0}>
          {body.text}
        </pre>
      );
  }
}

export function ConsoleLines({ lines, truncated }: { lines: string[]; truncated?: boolean }) {
  if (lines.length === 0) return <p class="muted">(no console output)</p>;
  return (
    <pre class="console" tabIndex={0} aria-label="Console output">
      {lines.map((line, i) => {
        const { level, message } = consoleLine(line);
        return (
          <div key={i} class={`log log-${level}`}>
            <span class="log-level">{level}</span> {message}
          </div>
        );
      })}
      {truncated && <div class="muted">… (cut: the record keeps 8 KiB of output)</div>}
    </pre>
  );
}
