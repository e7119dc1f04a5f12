/**
 * Invocation records (docs/spec.md §6, §9): the list, filtered by function and status, and one record's
 * detail: console output, timings, cold or warm, and for an async invocation its state and
 * attempts.
 */
import { useEffect, useState } from 'preact/hooks';
import { admin } from '../api';
import type {
  InvocationAnswer,
  InvocationListAnswer,
  InvocationRecord,
  InvocationState,
} from '../api';
import { ms, prettyJson, when } from '../util';
import { describe } from './common';
import { ConsoleLines } from './response';

const STATUSES = [
  ['', 'any'],
  ['2xx', '2xx'],
  ['4xx', '4xx'],
  ['5xx', '5xx'],
  ['queued', 'async: queued'],
  ['running', 'async: running'],
  ['succeeded', 'async: succeeded'],
  ['failed', 'async: failed'],
] as const;

type Row = InvocationRecord | InvocationState;

export function InvocationsView(props: { fn: string; status: string; functions: string[] }) {
  const [rows, setRows] = useState<Row[]>();
  const [error, setError] = useState<string>();
  const [fn, setFn] = useState(props.fn);
  const [status, setStatus] = useState(props.status);

  const load = async () => {
    const query = new URLSearchParams({ limit: '100' });
    if (fn) query.set('fn', fn);
    if (status) query.set('status', status);
    try {
      const answer = await admin<InvocationListAnswer>(`invocations?${query.toString()}`);
      setRows(answer.invocations);
      setError(undefined);
    } catch (err) {
      setError(describe(err));
    }
  };

  useEffect(() => {
    setFn(props.fn);
    setStatus(props.status);
  }, [props.fn, props.status]);

  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 5000);
    return () => clearInterval(timer);
  }, [fn, status]);

  const filter = (next: { fn?: string; status?: string }) => {
    const query = new URLSearchParams();
    const f = next.fn ?? fn;
    const s = next.status ?? status;
    if (f) query.set('fn', f);
    if (s) query.set('status', s);
    const text = query.toString();
    history.replaceState(null, '', `#/invocations${text ? `?${text}` : ''}`);
    if (next.fn !== undefined) setFn(next.fn);
    if (next.status !== undefined) setStatus(next.status);
  };

  return (
    <main id="main" tabIndex={-1}>
      <h2>Invocations</h2>
      <p class="muted">
        The newest first: this server keeps the last records of synchronous invocations and async
        attempts in memory (RECORDS_MAX); async invocations are listed by their state.
      </p>
      <div class="row">
        <div class="field">
          <label for="f-function">Function</label>
          <select
            id="f-function"
            value={fn}
            onChange={(e) => filter({ fn: e.currentTarget.value })}
          >
            <option value="">all functions</option>
            {[...new Set([...props.functions, ...(fn ? [fn] : [])])].map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-status">Status</label>
          <select
            id="f-status"
            value={status}
            onChange={(e) => filter({ status: e.currentTarget.value })}
          >
            {STATUSES.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </div>
        <div class="actions">
          <button type="button" onClick={() => void load()}>
            Refresh
          </button>
        </div>
      </div>
      {error && <p role="alert">{error}</p>}
      {rows && (
        <div class="table-wrap">
          <table aria-label="Invocations" aria-live="off">
            <thead>
              <tr>
                <th scope="col">Started</th>
                <th scope="col">Function</th>
                <th scope="col">Status</th>
                <th scope="col">Outcome</th>
                <th scope="col">Duration</th>
                <th scope="col">Start</th>
                <th scope="col">Request id</th>
              </tr>
            </thead>
            <tbody>
              {rows.length === 0 && (
                <tr>
                  <td colSpan={7} class="muted">
                    No invocations match.
                  </td>
                </tr>
              )}
              {rows.map((row) =>
                'durationMs' in row ? (
                  <tr key={`${row.requestId}-${row.attempt ?? 0}-${row.start}`}>
                    <td>{when(row.start)}</td>
                    <td>{row.function}</td>
                    <td>
                      <span class={`status status-${Math.floor(row.status / 100)}xx`}>
                        {row.status}
                      </span>
                    </td>
                    <td>
                      {row.outcome}
                      {row.attempt ? ` (attempt ${row.attempt})` : ''}
                    </td>
                    <td>{ms(row.durationMs.total)}</td>
                    <td>{row.cold ? 'cold' : 'warm'}</td>
                    <td>
                      <a href={`#/invocations/${encodeURIComponent(row.requestId)}`}>
                        {row.requestId}
                      </a>
                    </td>
                  </tr>
                ) : (
                  <tr key={row.requestId}>
                    <td>{when(row.createdAt)}</td>
                    <td>{row.function}</td>
                    <td>{row.status}</td>
                    <td>
                      {row.error?.code ?? (row.response ? `answered ${row.response.status}` : '')}
                    </td>
                    <td>–</td>
                    <td>{row.attempts ?? 0} attempts</td>
                    <td>
                      <a href={`#/invocations/${encodeURIComponent(row.requestId)}`}>
                        {row.requestId}
                      </a>
                    </td>
                  </tr>
                ),
              )}
            </tbody>
          </table>
        </div>
      )}
    </main>
  );
}

function Attempt({ record }: { record: Partial<InvocationRecord> }) {
  const d = record.durationMs;
  return (
    <>
      <dl class="facts">
        {record.version && (
          <>
            <dt>Version</dt>
            <dd>
              <code>{record.version}</code>
            </dd>
          </>
        )}
        {record.start && (
          <>
            <dt>Started</dt>
            <dd>{when(record.start)}</dd>
          </>
        )}
        {record.status !== undefined && (
          <>
            <dt>Status</dt>
            <dd>
              {record.status} ({record.outcome})
            </dd>
          </>
        )}
        <dt>Start</dt>
        <dd>{record.cold ? 'cold (compiled its version first)' : 'warm'}</dd>
        {d && (
          <>
            <dt>Timings</dt>
            <dd>
              queue {ms(d.queue)} · exec {ms(d.exec)} · total {ms(d.total)}
            </dd>
          </>
        )}
        {record.attempt !== undefined && (
          <>
            <dt>Attempt</dt>
            <dd>{record.attempt}</dd>
          </>
        )}
        <dt>Effects</dt>
        <dd>{record.effects ? 'yes (a KV write or an unsafe fetch)' : 'none'}</dd>
        {record.reruns ? (
          <>
            <dt>Runs again</dt>
            <dd>{record.reruns}</dd>
          </>
        ) : null}
        {record.solo && (
          <>
            <dt>Lane</dt>
            <dd>alone (solo lane)</dd>
          </>
        )}
      </dl>
      <h3>Console output</h3>
      <ConsoleLines lines={record.logs ?? []} truncated={record.logsTruncated} />
    </>
  );
}

export function InvocationDetail({ id }: { id: string }) {
  const [record, setRecord] = useState<InvocationAnswer>();
  const [error, setError] = useState<string>();

  useEffect(() => {
    let stop = false;
    const load = async () => {
      try {
        const answer = await admin<InvocationAnswer>(`invocations/${encodeURIComponent(id)}`);
        if (stop) return;
        setRecord(answer);
        setError(undefined);
        // An async invocation still on its way is looked at again.
        const pending =
          'attempts' in answer && (answer.status === 'queued' || answer.status === 'running');
        if (pending) setTimeout(() => void load(), 1000);
      } catch (err) {
        if (!stop) setError(describe(err));
      }
    };
    void load();
    return () => {
      stop = true;
    };
  }, [id]);

  return (
    <main id="main" tabIndex={-1}>
      <p>
        <a href="#/invocations">All invocations</a>
      </p>
      <h2>
        Invocation <code>{id}</code>
      </h2>
      {error && <p role="alert">{error}</p>}
      {record && 'durationMs' in record && (
        <>
          <p>
            Function <a href={`#/functions/${record.function}`}>{record.function}</a>
          </p>
          <Attempt record={record} />
        </>
      )}
      {record && !('durationMs' in record) && (
        <>
          <dl class="facts">
            <dt>Function</dt>
            <dd>
              <a href={`#/functions/${record.function}`}>{record.function}</a>
            </dd>
            <dt>Async state</dt>
            <dd>
              <strong>{record.status}</strong>
            </dd>
            <dt>Attempts</dt>
            <dd>
              {record.attempts ?? 0}
              {record.retries !== undefined ? ` (up to ${Number(record.retries) + 1})` : ''}
            </dd>
            <dt>Queued</dt>
            <dd>{when(record.createdAt)}</dd>
            {typeof record.finishedAt === 'string' && (
              <>
                <dt>Finished</dt>
                <dd>{when(record.finishedAt)}</dd>
              </>
            )}
            {typeof record.nextAttemptAt === 'string' && (
              <>
                <dt>Next attempt</dt>
                <dd>{when(record.nextAttemptAt)}</dd>
              </>
            )}
          </dl>
          {record.error && (
            <p role="alert">
              {record.error.code}: {record.error.message}
            </p>
          )}
          {record.response && (
            <>
              <h3>Response {record.response.status}</h3>
              <pre class="body" tabIndex={0}>
                {prettyJson(record.response.body ?? '').text || '(no body)'}
              </pre>
            </>
          )}
          {record.lastAttempt && (
            <>
              <h3>Last attempt</h3>
              <Attempt record={record.lastAttempt} />
            </>
          )}
        </>
      )}
    </main>
  );
}
