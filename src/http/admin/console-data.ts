/**
 * Figures the web console shows that the rest of the admin API does not answer, behind the
 * bearer token:
 *
 * | route | answer |
 * |-------|--------|
 * | `GET /_/console/stats` | `{ functions, records, traffic, asyncDepth? }` (below) |
 *
 * - `functions`: per function name, from the invocation records this server keeps (RECORDS_MAX,
 *   the newest first): `{ count, errors, errorRate, p50, p99, last }`. `errors` counts records
 *   whose outcome is an error code of docs/spec.md §3 (a status the function chose itself, even a 500,
 *   is not one);
 *   `p50`/`p99` are total durations in ms (nearest rank); `last` the newest record's start.
 * - `records`: `{ count, since? }`: how many records these figures come from, and the oldest's
 *   start, so the console can say what window they cover.
 * - `traffic`: `{ bucketSeconds, buckets: [{ t, requests, errors }] }`, oldest first: invocations
 *   (sync and async attempts) and those that ended in an error, per bucket, over the last
 *   minutes, sampled from the `faas_invocations_total` counter this server already keeps. The
 *   last bucket is the one still filling (`t` is each bucket's start, epoch ms).
 * - `asyncDepth`: async invocations queued or running, when the queue is open.
 *
 * Like the metrics, these are this replica's own (docs/spec.md §10).
 */
import type Router from '@koa/router';
import type { Middleware } from 'koa';
import type { Metrics } from '../../observe/metrics';
import type { InvocationRecord, RecordLog } from '../../observe/records';
import type { ConsoleStatsAnswer, FunctionFigures, TrafficBucket, TrafficFigures } from './api';

/**
 * Whether an outcome is an error of the invocation: an error code of docs/spec.md §3. `ok` and a status
 * the function chose itself (the error boundary records `418` for a function's own 418) are not.
 */
export function isError(outcome: string): boolean {
  return outcome !== 'ok' && outcome !== 'skipped' && !/^\d{3}$/.test(outcome);
}

/**
 * Requests and errors per bucket over the last minutes, from the invocation counter: a timer
 * reads the totals every `bucketSeconds` and keeps the differences (a fixed ring, so its memory
 * never grows). `start()` and `stop()` belong to the server's lifecycle.
 */
export class TrafficSeries {
  private readonly buckets: TrafficBucket[] = [];
  private last = { requests: 0, errors: 0 };
  private bucketStart = Date.now();
  private timer?: NodeJS.Timeout;
  private sampling: Promise<void> = Promise.resolve();

  constructor(
    private readonly metrics: Metrics,
    readonly bucketSeconds = 10,
    readonly keep = 90,
  ) {}

  /**
   * Samples a bucket every `bucketSeconds` from now on. The first bucket counts from zero: the
   * server starts it as it starts listening, before any invocation.
   */
  start(): void {
    if (this.timer) return;
    this.bucketStart = Date.now();
    this.timer = setInterval(() => {
      this.sampling = this.sampling.then(() => this.close());
    }, this.bucketSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The closed buckets, oldest first, and the one filling now. */
  async series(): Promise<TrafficFigures> {
    await this.sampling;
    const totals = await this.totals();
    const filling = {
      t: this.bucketStart,
      requests: totals.requests - this.last.requests,
      errors: totals.errors - this.last.errors,
    };
    return { bucketSeconds: this.bucketSeconds, buckets: [...this.buckets, filling] };
  }

  /** Closes the current bucket. */
  private async close(): Promise<void> {
    const totals = await this.totals();
    const now = Date.now();
    this.buckets.push({
      t: this.bucketStart,
      requests: totals.requests - this.last.requests,
      errors: totals.errors - this.last.errors,
    });
    if (this.buckets.length > this.keep - 1) this.buckets.shift();
    this.last = totals;
    this.bucketStart = now;
  }

  private async totals(): Promise<{ requests: number; errors: number }> {
    let requests = 0;
    let errors = 0;
    for (const outcomes of (await this.metrics.invocationCounts()).values()) {
      for (const [outcome, count] of Object.entries(outcomes)) {
        requests += count;
        if (isError(outcome)) errors += count;
      }
    }
    return { requests, errors };
  }
}

/** The value at quantile `q` of sorted values (nearest rank). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1];
}

/** Per-function figures from records (newest first, as the records answer them). */
export function figuresOf(records: readonly InvocationRecord[]): Record<string, FunctionFigures> {
  const byFunction = new Map<string, InvocationRecord[]>();
  for (const record of records) {
    const list = byFunction.get(record.function) ?? [];
    list.push(record);
    byFunction.set(record.function, list);
  }
  const figures: Record<string, FunctionFigures> = {};
  for (const [name, list] of byFunction) {
    const durations = list.map((r) => r.durationMs.total).sort((a, b) => a - b);
    const errors = list.filter((r) => isError(r.outcome)).length;
    figures[name] = {
      count: list.length,
      errors,
      errorRate: errors / list.length,
      p50: percentile(durations, 0.5),
      p99: percentile(durations, 0.99),
      last: list[0].start,
    };
  }
  return figures;
}

export interface ConsoleDataSources {
  records: RecordLog;
  metrics: Metrics;
  traffic?: TrafficSeries;
}

/** Registers /_/console/stats on the admin router (its prefix is /_). */
export function consoleDataRoutes(
  router: Router,
  sources: ConsoleDataSources,
  auth: Middleware,
): void {
  router.get('/console/stats', auth, async (ctx) => {
    const { records, metrics, traffic } = sources;
    const all = await records.query({ limit: records.max });
    const depth = metrics.asyncDepth
      ? await metrics.asyncDepth().catch(() => undefined)
      : undefined;
    ctx.set('Cache-Control', 'no-store');
    const answer: ConsoleStatsAnswer = {
      functions: Object.fromEntries(
        Object.entries(figuresOf(all)).sort(([a], [b]) => (a < b ? -1 : 1)),
      ),
      records: {
        count: all.length,
        ...(all.length > 0 ? { since: all[all.length - 1].start } : {}),
      },
      traffic: traffic ? await traffic.series() : { bucketSeconds: 10, buckets: [] },
      ...(depth === undefined ? {} : { asyncDepth: depth }),
    };
    ctx.body = answer;
  });
}
