/**
 * The functions: status (ok, compile error, quarantined), version, invocations since the server
 * started (by outcome, from the metrics), and error rate and p50/p99 from the recent records.
 */
import type { ConsoleStatsAnswer, FunctionListing } from '../api';
import { ms, percent } from '../util';
import { StatusBadge } from './function';

export function FunctionsView(props: {
  functions?: FunctionListing[];
  stats?: ConsoleStatsAnswer;
  error?: string;
  onRefresh(): void;
}) {
  const { functions, stats } = props;
  return (
    <main id="main" tabIndex={-1}>
      <header class="view-head">
        <h2>Functions</h2>
        <div class="actions">
          <button
            type="button"
            class="primary"
            onClick={() => {
              location.hash = '#/new';
            }}
          >
            New function
          </button>
          <button type="button" onClick={props.onRefresh}>
            Refresh
          </button>
        </div>
      </header>
      {props.error && <p role="alert">{props.error}</p>}
      {functions && (
        <div class="table-wrap">
          <table aria-label="Functions">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Version</th>
                <th scope="col">Invocations</th>
                <th scope="col">Error rate</th>
                <th scope="col">p50</th>
                <th scope="col">p99</th>
              </tr>
            </thead>
            <tbody>
              {functions.length === 0 && (
                <tr>
                  <td colSpan={7} class="muted">
                    No functions yet: choose New function, or drop a .js file into FUNCTIONS_DIR.
                  </td>
                </tr>
              )}
              {functions.map((fn) => {
                const figures = stats?.functions[fn.name];
                const total = Object.values(fn.invocations ?? {}).reduce((a, b) => a + b, 0);
                return (
                  <tr key={fn.name}>
                    <th scope="row">
                      <a href={`#/functions/${fn.name}`}>{fn.name}</a>
                    </th>
                    <td>
                      <StatusBadge detail={fn} />
                      {fn.status === 'compile_error' && fn.line ? (
                        <span class="muted"> line {fn.line}</span>
                      ) : null}
                    </td>
                    <td>
                      <code>{fn.version.slice(0, 8)}</code>
                    </td>
                    <td>{total}</td>
                    <td>{figures ? percent(figures.errorRate) : '–'}</td>
                    <td>{figures ? ms(figures.p50) : '–'}</td>
                    <td>{figures ? ms(figures.p99) : '–'}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {stats && (
        <p class="muted">
          Error rate and p50/p99 come from the last {stats.records.count} invocation records this
          server keeps; invocations count every call since it started.
        </p>
      )}
    </main>
  );
}
