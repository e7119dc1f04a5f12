/**
 * Prometheus metrics (prom-client) on a registry of our own, so two servers in one process (as in
 * the tests) never share counters. Label sets are fixed and bounded: `function` is the name of a
 * function that exists (names that do not exist share the value `_unknown`), `outcome` is `ok`
 * or an error code of docs/spec.md §3 (of a lingering close: drained, closed, timeout, bytes), `reason`
 * one of timeout, crash, memory, unresponsive.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PoolStats } from '../pool/sandbox-pool';

export const UNKNOWN_FUNCTION = '_unknown';

const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export interface InvocationObservation {
  /** A function that exists, or undefined. */
  fn?: string;
  outcome: string;
  totalMs: number;
  queueMs?: number;
  cold?: boolean;
}

export class Metrics {
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;
  private readonly invocations: Counter<'function' | 'outcome'>;
  private readonly duration: Histogram<'function'>;
  private readonly queueWait: Histogram;
  private readonly coldStarts: Counter<'function'>;
  private readonly restarts: Counter<'reason'>;
  private readonly serviceCalls: Counter<'op' | 'backend' | 'outcome'>;
  private readonly serviceDuration: Histogram<'op' | 'backend'>;
  private readonly reruns: Counter<'reason'>;
  private readonly quarantines: Counter<'event'>;
  private readonly lingering: Counter<'outcome'>;
  private readonly asyncQueued: Counter<'function'>;
  private readonly asyncDone: Counter<'function' | 'status'>;
  private readonly callbacks: Counter<'outcome'>;
  private readonly ticks: Counter<'function'>;
  private readonly misses: Counter<'function'>;
  private readonly skips: Counter<'function'>;
  /** Async invocations queued or running (the queue's count); unset until the queue opens. */
  asyncDepth?: () => Promise<number>;

  constructor(poolStats: () => PoolStats) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.invocations = new Counter({
      name: 'faas_invocations_total',
      help: 'Function invocations, by function and outcome (ok or an error code).',
      labelNames: ['function', 'outcome'],
      registers,
    });
    this.duration = new Histogram({
      name: 'faas_invocation_duration_seconds',
      help: 'Time from the request reaching runFaaS to its answer, by function.',
      labelNames: ['function'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.queueWait = new Histogram({
      name: 'faas_queue_wait_seconds',
      help: 'Time an invocation waited for a worker.',
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.coldStarts = new Counter({
      name: 'faas_cold_starts_total',
      help: 'Invocations that compiled their function version in their worker first.',
      labelNames: ['function'],
      registers,
    });
    this.restarts = new Counter({
      name: 'faas_worker_restarts_total',
      help: 'Worker processes replaced, by reason (timeout, crash, memory, unresponsive).',
      labelNames: ['reason'],
      registers,
    });
    this.serviceCalls = new Counter({
      name: 'faas_service_calls_total',
      help: 'Calls of the services in context (kv.get, kv.put, …, fetch), by op, backend (sqlite, redis, egress) and outcome (ok, error).',
      labelNames: ['op', 'backend', 'outcome'],
      registers,
    });
    this.serviceDuration = new Histogram({
      name: 'faas_service_call_duration_seconds',
      help: 'Time a service call took in the server, by op and backend.',
      labelNames: ['op', 'backend'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.reruns = new Counter({
      name: 'faas_reruns_total',
      help: 'Invocations run again because that could not matter (docs/spec.md §3), by reason: suspect (alone, after its worker died) or blocked (another invocation held its worker).',
      labelNames: ['reason'],
      registers,
    });
    this.quarantines = new Counter({
      name: 'faas_quarantine_events_total',
      help: 'Quarantine changes, by event: quarantined, struck again, lifted (ran cleanly), replaced (a new version).',
      labelNames: ['event'],
      registers,
    });
    new Gauge({
      name: 'faas_quarantined_functions',
      help: 'Function versions quarantined now (they run alone on the solo lane).',
      registers,
      collect() {
        this.set(poolStats().quarantined);
      },
    });
    new Gauge({
      name: 'faas_solo_workers',
      help: 'Live solo workers (one invocation at a time: suspects and quarantined functions).',
      registers,
      collect() {
        this.set(poolStats().solo.workers);
      },
    });
    this.lingering = new Counter({
      name: 'faas_lingering_closes_total',
      help: 'Connections closed in stages after an answer sent before the request body ended (an early 413 or 417), by outcome: drained (the body ended), closed (by the client), timeout, bytes (a bound hit).',
      labelNames: ['outcome'],
      registers,
    });
    this.asyncQueued = new Counter({
      name: 'faas_async_queued_total',
      help: 'Async invocations accepted (202), by function.',
      labelNames: ['function'],
      registers,
    });
    this.asyncDone = new Counter({
      name: 'faas_async_finished_total',
      help: 'Async invocations finished on this server, by function and status (succeeded, failed).',
      labelNames: ['function', 'status'],
      registers,
    });
    this.callbacks = new Counter({
      name: 'faas_async_callbacks_total',
      help: 'X-Callback-Url deliveries tried, by outcome (delivered, retried, failed).',
      labelNames: ['outcome'],
      registers,
    });
    this.ticks = new Counter({
      name: 'faas_schedule_ticks_total',
      help: 'Schedule ticks fired (queued as async invocations) by this server, by function.',
      labelNames: ['function'],
      registers,
    });
    this.misses = new Counter({
      name: 'faas_schedule_misses_total',
      help: 'Schedule ticks missed (too late, or could not be queued), by function.',
      labelNames: ['function'],
      registers,
    });
    this.skips = new Counter({
      name: 'faas_schedule_skips_total',
      help:
        'Schedule ticks skipped because the previous run of the schedule was still queued or ' +
        'running (config.overlap "skip"), by function.',
      labelNames: ['function'],
      registers,
    });
    const asyncDepth = () => this.asyncDepth;
    new Gauge({
      name: 'faas_async_queue_depth',
      help: 'Async invocations queued or running (across replicas with Redis).',
      registers,
      async collect() {
        const depth = asyncDepth();
        if (depth) this.set(await depth().catch(() => 0));
      },
    });
    new Gauge({
      name: 'faas_queue_depth',
      help: 'Invocations waiting for a worker.',
      registers,
      collect() {
        this.set(poolStats().queued);
      },
    });
    new Gauge({
      name: 'faas_running_invocations',
      help: 'Invocations running in workers.',
      registers,
      collect() {
        this.set(poolStats().running);
      },
    });
    new Gauge({
      name: 'faas_workers_alive',
      help: 'Live worker processes.',
      registers,
      collect() {
        this.set(poolStats().workers);
      },
    });
  }

  /**
   * The per-function children of the invocation metrics, made once per function and outcome:
   * prom-client hashes a label object on every call otherwise (~2 % of a request).
   */
  private readonly perFunction = new Map<
    string,
    {
      duration: ReturnType<Histogram<'function'>['labels']>;
      outcomes: Map<string, { inc(): void }>;
    }
  >();

  observeInvocation({ fn, outcome, totalMs, queueMs, cold }: InvocationObservation): void {
    const name = fn ?? UNKNOWN_FUNCTION;
    let children = this.perFunction.get(name);
    if (children === undefined) {
      children = { duration: this.duration.labels(name), outcomes: new Map() };
      this.perFunction.set(name, children);
    }
    let counter = children.outcomes.get(outcome);
    if (counter === undefined) {
      counter = this.invocations.labels(name, outcome);
      children.outcomes.set(outcome, counter);
    }
    counter.inc();
    if (fn === undefined) return;
    children.duration.observe(totalMs / 1000);
    if (queueMs !== undefined) this.queueWait.observe(queueMs / 1000);
    if (cold) this.coldStarts.inc({ function: name });
  }

  /** One service call (see services/host-calls.ts): op and backend come from a fixed set. */
  serviceCall(op: string, backend: string, outcome: string, seconds: number): void {
    this.serviceCalls.inc({ op, backend, outcome });
    this.serviceDuration.observe({ op, backend }, seconds);
  }

  /** One lingering close (http/linger.ts) ended: drained, closed, timeout or bytes. */
  lingeringClose(outcome: string): void {
    this.lingering.inc({ outcome });
  }

  /** An async invocation accepted (202). */
  asyncAccepted(fn: string): void {
    this.asyncQueued.inc({ function: fn });
  }

  asyncFinished(fn: string, status: string): void {
    this.asyncDone.inc({ function: fn, status });
  }

  callback(outcome: 'delivered' | 'retried' | 'failed'): void {
    this.callbacks.inc({ outcome });
  }

  scheduleTick(fn: string): void {
    this.ticks.inc({ function: fn });
  }

  scheduleMiss(fn: string): void {
    this.misses.inc({ function: fn });
  }

  scheduleSkip(fn: string): void {
    this.skips.inc({ function: fn });
  }

  workerRestarted(reason: string): void {
    this.restarts.inc({ reason });
  }

  /** An invocation ran again (sandbox-pool.ts RerunReason). */
  rerun(reason: string): void {
    this.reruns.inc({ reason });
  }

  /** A quarantine changed (pool/quarantine.ts QuarantineEvent). */
  quarantineEvent(event: string): void {
    this.quarantines.inc({ event });
  }

  /** Invocation counts by function and outcome, since start. */
  async invocationCounts(): Promise<Map<string, Record<string, number>>> {
    const counts = new Map<string, Record<string, number>>();
    for (const { labels, value } of (await this.invocations.get()).values) {
      const fn = String(labels.function);
      const entry = counts.get(fn) ?? {};
      entry[String(labels.outcome)] = value;
      counts.set(fn, entry);
    }
    return counts;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
