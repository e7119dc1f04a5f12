/**
 * Health: the pool (workers, restarts, queue), the isolation workers run under, the KV backend,
 * quarantined functions, and requests and errors over the last minutes as a small SVG chart
 * (drawn here: no charting library needed for two series of bars). Refreshed every 5 s.
 */
import { useEffect, useState } from 'preact/hooks';
import { admin } from '../api';
import type {
  ConfinementReport,
  ConsoleStatsAnswer,
  FunctionListAnswer,
  FunctionListing,
  HealthAnswer,
} from '../api';
import { when } from '../util';
import { describe } from './common';

const W = 600;
const H = 140;
const PAD = 24;

/** Bars of requests (and errors over them) per bucket; labelled, with the numbers in a table. */
export function TrafficChart({ traffic }: { traffic: ConsoleStatsAnswer['traffic'] }) {
  const buckets = traffic.buckets;
  const max = Math.max(1, ...buckets.map((b) => b.requests));
  const slots = Math.max(buckets.length, 30);
  const step = (W - PAD) / slots;
  const y = (n: number) => H - PAD - ((H - 2 * PAD) * n) / max;
  const requests = buckets.reduce((sum, b) => sum + b.requests, 0);
  const errors = buckets.reduce((sum, b) => sum + b.errors, 0);
  const minutes = Math.round((buckets.length * traffic.bucketSeconds) / 60);
  const summary = `Requests and errors per ${traffic.bucketSeconds} seconds over the last ${minutes || 1} minutes: ${requests} requests, ${errors} errors, at most ${max} in one bucket.`;
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        <line x1={PAD} y1={H - PAD} x2={W} y2={H - PAD} class="axis" />
        <line x1={PAD} y1={PAD} x2={PAD} y2={H - PAD} class="axis" />
        <text x={PAD - 4} y={PAD + 4} class="tick" text-anchor="end">
          {max}
        </text>
        <text x={PAD - 4} y={H - PAD} class="tick" text-anchor="end">
          0
        </text>
        {buckets.map((b, i) => {
          const x = PAD + (slots - buckets.length + i) * step;
          return (
            <g key={b.t}>
              <rect
                x={x + 1}
                y={y(b.requests)}
                width={Math.max(1, step - 2)}
                height={H - PAD - y(b.requests)}
                class="bar-requests"
              />
              {b.errors > 0 && (
                <rect
                  x={x + 1}
                  y={y(b.errors)}
                  width={Math.max(1, step - 2)}
                  height={H - PAD - y(b.errors)}
                  class="bar-errors"
                />
              )}
            </g>
          );
        })}
        <text x={W - 4} y={H - 6} class="tick" text-anchor="end">
          now
        </text>
      </svg>
      <figcaption>
        <span class="key key-exec" aria-hidden="true" /> requests{' '}
        <span class="key key-error" aria-hidden="true" /> errors, per {traffic.bucketSeconds} s —{' '}
        {requests} requests, {errors} errors
      </figcaption>
      <details>
        <summary>The numbers</summary>
        <table>
          <thead>
            <tr>
              <th scope="col">From</th>
              <th scope="col">Requests</th>
              <th scope="col">Errors</th>
            </tr>
          </thead>
          <tbody>
            {buckets.map((b) => (
              <tr key={b.t}>
                <td>{new Date(b.t).toLocaleTimeString()}</td>
                <td>{b.requests}</td>
                <td>{b.errors}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

export function HealthView() {
  const [health, setHealth] = useState<HealthAnswer>();
  const [stats, setStats] = useState<ConsoleStatsAnswer>();
  const [quarantined, setQuarantined] = useState<FunctionListing[]>([]);
  const [error, setError] = useState<string>();

  useEffect(() => {
    const load = async () => {
      try {
        const [h, s, f] = await Promise.all([
          admin<HealthAnswer>('health'),
          admin<ConsoleStatsAnswer>('console/stats'),
          admin<FunctionListAnswer>('functions'),
        ]);
        setHealth(h);
        setStats(s);
        setQuarantined(f.functions.filter((fn) => fn.quarantined));
        setError(undefined);
      } catch (err) {
        setError(describe(err));
      }
    };
    void load();
    const timer = setInterval(() => void load(), 5000);
    return () => clearInterval(timer);
  }, []);

  const pool = health?.pool;
  const isolation: Partial<ConfinementReport> = health?.isolation ?? {};
  return (
    <main id="main" tabIndex={-1}>
      <h2>Health</h2>
      {error && <p role="alert">{error}</p>}
      {health && pool && (
        <div class="cards">
          <section class="card" aria-labelledby="h-workers">
            <h3 id="h-workers">Workers</h3>
            <p class="big">
              {pool.workers} / {pool.configuredWorkers}
            </p>
            <p class="muted">
              running {pool.running} · solo lane {pool.solo.workers} workers, {pool.solo.running}{' '}
              running
            </p>
          </section>
          <section class="card" aria-labelledby="h-restarts">
            <h3 id="h-restarts">Restarts</h3>
            <p class="big">{pool.restarts}</p>
            <p class="muted">workers replaced since start</p>
          </section>
          <section class="card" aria-labelledby="h-queue">
            <h3 id="h-queue">Queue</h3>
            <p class="big">{pool.queued + pool.solo.queued}</p>
            <p class="muted">
              waiting for a worker
              {stats?.asyncDepth !== undefined
                ? ` · async: ${stats.asyncDepth} queued or running`
                : ''}
            </p>
          </section>
          <section class="card" aria-labelledby="h-backend">
            <h3 id="h-backend">Backend</h3>
            <p class="big">{health.kv ?? 'not open'}</p>
            <p class="muted">
              KV, secrets and async queue · up {Math.round(health.uptimeSeconds / 60)} min
            </p>
          </section>
          <section class="card wide" aria-labelledby="h-isolation">
            <h3 id="h-isolation">Isolation</h3>
            <dl class="facts">
              <dt>cgroups</dt>
              <dd>
                {isolation.cgroup ?? 'unknown'}
                {isolation.memoryLimitMb
                  ? ` (memory ${isolation.memoryLimitMb} MB${isolation.cpuQuota ? `, CPU ${isolation.cpuQuota}` : ''})`
                  : ''}
                {isolation.cgroupNote ? ` — ${isolation.cgroupNote}` : ''}
              </dd>
              <dt>User</dt>
              <dd>{isolation.user ?? 'unknown'}</dd>
              <dt>Permission model</dt>
              <dd>{isolation.permissionModel ? 'on (workers read only their own code)' : 'off'}</dd>
              <dt>Heap limit</dt>
              <dd>{isolation.heapLimitMb ? `${isolation.heapLimitMb} MB` : '–'}</dd>
            </dl>
          </section>
          <section class="card wide" aria-labelledby="h-quarantine">
            <h3 id="h-quarantine">Quarantined functions ({pool.quarantined})</h3>
            {quarantined.length === 0 ? (
              <p class="muted">None: no function version has broken a worker lately.</p>
            ) : (
              <ul>
                {quarantined.map((fn) => (
                  <li key={fn.name}>
                    <a href={`#/functions/${fn.name}`}>{fn.name}</a>: {fn.quarantine?.reason} (since{' '}
                    {when(fn.quarantine?.since)}, {fn.quarantine?.strikes} strikes)
                  </li>
                ))}
              </ul>
            )}
          </section>
        </div>
      )}
      {stats && (
        <section class="panel" aria-labelledby="h-traffic">
          <h3 id="h-traffic">Requests and errors</h3>
          <TrafficChart traffic={stats.traffic} />
        </section>
      )}
    </main>
  );
}
