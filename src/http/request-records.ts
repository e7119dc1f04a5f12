/**
 * The one place a finished function request becomes its invocation record and its metrics
 * (docs/spec.md §7): called by the error boundary once the answer is written.
 */
import type { Metrics } from '../observe/metrics';
import { IsoTime } from '../observe/records';
import type { RecordLog } from '../observe/records';
import type { RequestObserver } from './error-handler';

const round = <T extends number | undefined>(ms: T): T =>
  (ms === undefined ? ms : Math.round(ms * 100) / 100) as T;

/** An observer that records invocations in `records` and counts them in `metrics`. */
export function recordRequests(metrics: Metrics, records: RecordLog): RequestObserver {
  const isoTime = new IsoTime();
  return (ctx, state, totalMs) => {
    if (state.fn === undefined || ctx.path.startsWith('/_/')) return;
    // An async request was only queued (respond-async.ts): its attempts are observed as they run.
    if (state.outcome === 'queued') return;
    const outcome = state.outcome as string;
    const exists = state.version !== undefined;
    metrics.observeInvocation({
      fn: exists ? state.fn : undefined,
      outcome,
      totalMs,
      queueMs: state.queueMs,
      cold: state.cold,
    });
    if (!exists) return;
    records.add({
      requestId: state.requestId,
      function: state.fn,
      version: state.version as string,
      start: isoTime.format(Date.now() - totalMs),
      status: ctx.status,
      outcome,
      cold: state.cold,
      effects: state.effects,
      ...(state.reruns ? { reruns: state.reruns } : {}),
      ...(state.solo ? { solo: true } : {}),
      durationMs: { queue: round(state.queueMs), exec: round(state.execMs), total: round(totalMs) },
      logs: state.logs ?? [],
    });
  };
}
