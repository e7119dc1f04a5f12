/**
 * The soak's bar: from the facts of one run (every call's answer, the soak's kills, the worker
 * exits the server logged, the `eff:*` keys in KV, the pool after the traffic, the shutdown),
 * the figures per kind and per healthy group, and one check per rule of the blast-radius bar (docs/spec.md §3). The run
 * passes when every check does.
 */
import type { Answer, KeyRead, PoolFigures } from './soak-http';
import { blame, checkCrash, judge, VERDICTS } from './soak-judge';
import type { Evidence, Sample, Verdict } from './soak-judge';
import type { RssFigures, WorkerDeath } from './soak-server';
import { GROUPS, HEALTHY_GROUPS, KINDS } from './soak-traffic';
import type { Group } from './soak-traffic';

const MB = 1024 * 1024;
/** A timeout kill and the 504 the pool answered with it arrive at most this far apart. */
const BLAME_MATCH_MS = 250;
/** Server RSS may grow by this much over the run (beyond it: a leak, or worth a look). */
const SERVER_RSS_GROWTH_LIMIT = 128 * MB;
/** One worker's RSS may not exceed its heap limit by more than this (Node itself, code). */
const WORKER_RSS_HEADROOM = 160 * MB;
/** Exits a hostile call causes; any other exit the soak did not cause is unexplained. */
const HOSTILE_REASONS = ['memory', 'timeout', 'unresponsive'];
/** Metrics, /_/functions fields, pool fields and log lines about the blast-radius machinery (docs/spec.md §3). */
export const ISSUE10_WORDS = /re-?run|r[au]n again|attempt|quarantin|solo|suspect/i;

export interface RunFacts {
  options: {
    seconds: number;
    connections: number;
    killEvery: number;
    lenient: boolean;
  };
  config: { workers: number; timeoutMs: number; workerMemoryMb: number; maxBodyBytes: number };
  t0: number;
  trafficMs: number;
  sent: number;
  samples: Sample[];
  kills: { t: number; pid: number }[];
  /** Kill ticks with no shared worker alive to kill. */
  killSkips: number;
  killFailures: string[];
  /** Pids of solo workers seen (never killed). */
  soloSeen: number[];
  deaths: WorkerDeath[];
  logCounts: Map<string, number>;
  rawTail: string[];
  serverDied?: string;
  health: { polls: number; failures: string[]; maxMs: number };
  recovery: { recovered: boolean; ms: number; pool?: PoolFigures; sharedWorkers: number };
  poolStart?: PoolFigures;
  lastCall: Answer;
  rss: { start: RssFigures; end: RssFigures; peak: number };
  shutdown: {
    exitCode: number | null;
    exitSignal: string | null;
    exitMs: number;
    hung: boolean;
    orphansAtExit: number[];
    orphansAfter3s: number[];
  };
  processesSeen: number;
  kv: KeyRead;
  metrics: { start?: Map<string, number>; end?: Map<string, number> };
  functions?: unknown;
}

export interface Check {
  name: string;
  pass: boolean;
  detail: string;
}

export interface KindFigures {
  name: string;
  group: Group;
  sent: number;
  verdicts: Record<Verdict, number>;
  /** Calls that fail the bar (unexpected, unanswered, and collateral unless --lenient). */
  failed: number;
  classes: Record<string, number>;
  expected: string[];
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface GroupFigures {
  group: Group;
  sent: number;
  /** 200 with the exact body (effect: and its key at 1). */
  exact: number;
  /** Answers other than 200 that the group allows (effect: 502). */
  allowed: number;
  overloaded: number;
  failed: number;
  /** Answers whose body says `context.attempt` > 1. */
  ranAgain: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface Failure {
  kind: string;
  rid: string;
  startMs: number;
  endMs: number;
  cls: string;
  message?: string;
  blame: string;
  /** Workers that died while it was in flight (2 or more: it may have been lost twice). */
  deathsInFlight: number;
}

export interface Summary {
  pass: boolean;
  checks: Check[];
  perKind: KindFigures[];
  groups: GroupFigures[];
  mix: Record<Group, number>;
  byStatus: Record<string, number>;
  byCode: Record<string, number>;
  failures: Failure[];
  deathReasons: Record<string, number>;
  timeoutKillCauses: Record<string, number>;
  effects: { keys: number; maxValue: number; crashedAfterEffect: number; crashedBefore: number };
  issue10: {
    ranAgainSeen: number;
    metrics: Record<string, number>;
    functions: Record<string, unknown>;
    pool: Record<string, unknown>;
    logs: Record<string, number>;
  };
  uploads: { sent: number; read413: number; medianBodySent: number };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
const countOf = (record: Record<string, number>) =>
  Object.entries(record)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ×${v}`)
    .join(', ');

function latencies(samples: Sample[]): { p50Ms: number; p99Ms: number; maxMs: number } {
  const list = samples
    .filter((s) => s.status !== undefined)
    .map((s) => s.end - s.start)
    .sort((a, b) => a - b);
  return {
    p50Ms: percentile(list, 50),
    p99Ms: percentile(list, 99),
    maxMs: list.length ? list[list.length - 1] : NaN,
  };
}

export function analyse(f: RunFacts): Summary {
  const checks: Check[] = [];
  const check = (name: string, pass: boolean, detail: string) =>
    checks.push({ name, pass, detail });
  const deliberate = new Set(f.kills.map((k) => k.pid));
  const evidence: Evidence = {
    kills: f.kills,
    deaths: f.deaths,
    hostileDeaths: f.deaths.filter(
      (d) => !deliberate.has(d.pid) && HOSTILE_REASONS.includes(d.reason),
    ),
    blockingCalls: f.samples
      .filter((s) => KINDS[s.kind].blocks)
      .map((s) => ({ start: s.start, end: s.end })),
  };
  const allowed = new Set<Verdict>(['expected', 'overloaded']);
  if (f.options.lenient) {
    allowed.add('killCollateral');
    allowed.add('neighbourCollateral');
  }

  // Every call: its verdict, and what the soak can blame for a failure.
  const verdictOf = new Map<Sample, Verdict>();
  const failures: Failure[] = [];
  for (const s of f.samples) {
    checkCrash(s, evidence);
    const kind = KINDS[s.kind];
    const verdict = judge(s, kind, evidence);
    verdictOf.set(s, verdict);
    if (!allowed.has(verdict)) {
      const blamed = kind.invokes ? blame(s, evidence) : undefined;
      failures.push({
        kind: kind.name,
        rid: s.rid,
        startMs: s.start - f.t0,
        endMs: s.end - f.t0,
        cls: s.cls,
        message: s.message,
        blame:
          blamed === 'killCollateral'
            ? "the soak's kill"
            : blamed === 'neighbourCollateral'
              ? 'a hostile neighbour'
              : 'nothing the soak knows',
        deathsInFlight: new Set(
          [...f.kills, ...f.deaths].filter((d) => d.t >= s.start && d.t <= s.end).map((d) => d.pid),
        ).size,
      });
    }
  }

  const perKind: KindFigures[] = KINDS.map((kind, index) => {
    const mine = f.samples.filter((s) => s.kind === index);
    const verdicts = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Record<Verdict, number>;
    const classes: Record<string, number> = {};
    for (const s of mine) {
      verdicts[verdictOf.get(s) as Verdict]++;
      classes[s.cls] = (classes[s.cls] ?? 0) + 1;
    }
    const failed = mine.filter((s) => !allowed.has(verdictOf.get(s) as Verdict)).length;
    return {
      name: kind.name,
      group: kind.group,
      sent: mine.length,
      verdicts,
      failed,
      classes,
      expected: kind.expected,
      ...latencies(mine),
    };
  });

  const inGroup = (group: Group) => f.samples.filter((s) => KINDS[s.kind].group === group);
  const mix = Object.fromEntries(
    GROUPS.map((g) => [g, f.samples.length ? inGroup(g).length / f.samples.length : 0]),
  ) as Record<Group, number>;
  const groups: GroupFigures[] = HEALTHY_GROUPS.map((group) => {
    const mine = inGroup(group);
    return {
      group,
      sent: mine.length,
      exact: mine.filter((s) => s.cls === '200').length,
      allowed: mine.filter((s) => s.cls !== '200' && verdictOf.get(s) === 'expected').length,
      overloaded: mine.filter((s) => verdictOf.get(s) === 'overloaded').length,
      failed: mine.filter((s) => !allowed.has(verdictOf.get(s) as Verdict)).length,
      ranAgain: mine.filter((s) => (s.attempt ?? 1) > 1).length,
      ...latencies(mine),
    };
  });

  const byStatus: Record<string, number> = {};
  const byCode: Record<string, number> = {};
  for (const s of f.samples) {
    const key = s.status === undefined ? 'none' : String(s.status);
    byStatus[key] = (byStatus[key] ?? 0) + 1;
    if (s.code) byCode[s.code] = (byCode[s.code] ?? 0) + 1;
  }

  // 1. Nothing lost.
  const unanswered = f.samples.filter((s) => s.status === undefined);
  const neverFinished = f.sent - f.samples.length;
  check(
    'every request answered',
    unanswered.length === 0 && neverFinished === 0 && !f.serverDied,
    `${f.samples.length - unanswered.length} of ${f.sent}` +
      (unanswered.length ? `; unanswered: ${countOf(tally(unanswered.map((s) => s.cls)))}` : '') +
      (neverFinished ? `; ${neverFinished} never finished` : '') +
      (f.serverDied ? `; the server died: ${f.serverDied}` : ''),
  );

  // 2. Effect-free healthy calls: their exact 200, whatever their neighbours and the kills did.
  const pure = f.samples.filter((s) => ['sync', 'async'].includes(KINDS[s.kind].group));
  const pureFailed = failures.filter((x) => ['sync', 'async'].includes(groupOf(x.kind)));
  check(
    f.options.lenient
      ? 'effect-free healthy → 200, exact body (--lenient: collateral allowed)'
      : 'effect-free healthy → 200, exact body',
    pureFailed.length === 0 && pure.length > 0,
    `${pure.filter((s) => s.cls === '200').length} of ${pure.length}` +
      (f.options.lenient ? collateralNote(pure, verdictOf) : '') +
      describeFailures(pureFailed) +
      overloadedNote(pure, verdictOf),
  );

  // 3. Effectful healthy calls: 200 (ran once: 1), 502, or 504 naming the neighbour that blocked
  // its worker twice; never anything else, never run twice.
  const effectful = inGroup('effect');
  const effectFailed = failures.filter((x) => groupOf(x.kind) === 'effect');
  check(
    'effectful healthy → 200 (value 1), 502, or 504 naming a blocking neighbour',
    effectFailed.length === 0 && effectful.length > 0,
    `200 ×${effectful.filter((s) => s.cls === '200').length}, 502 ×${
      effectful.filter((s) => s.cls === '502 WORKER_CRASHED').length
    }, 504 blocked ×${effectful.filter((s) => s.cls === '504 BLOCKED_BY_NEIGHBOUR').length} of ${
      effectful.length
    }` +
      (f.options.lenient ? collateralNote(effectful, verdictOf) : '') +
      describeFailures(effectFailed) +
      overloadedNote(effectful, verdictOf),
  );

  // 4. The effects themselves: one key per call that ran, each at most 1.
  const effects = effectCheck(f, effectful);
  check('KV: every eff:* key ≤ 1 (no effect twice)', effects.problems.length === 0, effects.detail);

  // 5. Hostile calls: what their kind must get (429 from a quarantine queue, 503 counted apart).
  const uploadKind = 'upload 5 MB';
  const hostileFailed = failures.filter(
    (x) => groupOf(x.kind) === 'hostile' && x.kind !== uploadKind,
  );
  const hostile = f.samples.filter(
    (s) => KINDS[s.kind].group === 'hostile' && KINDS[s.kind].name !== uploadKind,
  );
  check(
    'hostile → its own error',
    hostileFailed.length === 0,
    `${hostile.length - hostileFailed.length} of ${hostile.length}` +
      (hostileFailed.length
        ? `; ${[...new Set(hostileFailed.map((x) => x.kind))]
            .map(
              (k) =>
                `${k}: ${countOf(tally(hostileFailed.filter((x) => x.kind === k).map((x) => x.cls)))}`,
            )
            .join('; ')}`
        : ''),
  );

  // 6. Uploads over MAX_BODY: a 413 the client reads whole (not EPIPE / ECONNRESET).
  const uploads = f.samples.filter((s) => KINDS[s.kind].name === uploadKind);
  const uploadFailed = failures.filter((x) => x.kind === uploadKind);
  const read413 = uploads.filter((s) => s.cls === '413 PAYLOAD_TOO_LARGE');
  const medianBodySent = percentile(
    read413.map((s) => s.bodySent).sort((a, b) => a - b),
    50,
  );
  check(
    'upload 5 MB → 413, read by the client',
    uploadFailed.length === 0 && uploads.length > 0,
    `${read413.length} of ${uploads.length}` +
      (uploadFailed.length ? `; ${countOf(tally(uploadFailed.map((x) => x.cls)))}` : '') +
      (read413.length ? `; median ${mb(medianBodySent)} sent before it was read` : ''),
  );

  // 7. Every worker exit explained; every timeout kill blamed on a call that can overrun.
  const unexplained = f.deaths.filter(
    (d) => !deliberate.has(d.pid) && !HOSTILE_REASONS.includes(d.reason),
  );
  const timeoutKillCauses: Record<string, number> = {};
  const misblamed: string[] = [];
  for (const d of f.deaths.filter((x) => x.reason === 'timeout' && !deliberate.has(x.pid))) {
    const near = f.samples
      .filter((s) => s.code === 'FUNCTION_TIMEOUT' && Math.abs(s.end - d.t) <= BLAME_MATCH_MS)
      .sort((a, b) => Math.abs(a.end - d.t) - Math.abs(b.end - d.t));
    const culprit = near.find((s) => KINDS[s.kind].mayOverrun) ?? near[0];
    const key = culprit ? KINDS[culprit.kind].name : 'unknown';
    timeoutKillCauses[key] = (timeoutKillCauses[key] ?? 0) + 1;
    if (culprit && !KINDS[culprit.kind].mayOverrun) misblamed.push(`${key} ${culprit.rid}`);
  }
  const safetyDeadlines = f.logCounts.get('error: invocation safety deadline fired') ?? 0;
  check(
    'worker exits explained',
    unexplained.length === 0 && misblamed.length === 0 && safetyDeadlines === 0,
    unexplained.length || misblamed.length || safetyDeadlines
      ? [
          unexplained.length
            ? `${unexplained.length} exits the soak did not cause and cannot explain (${countOf(tally(unexplained.map((d) => d.reason)))})`
            : '',
          misblamed.length
            ? `${misblamed.length} timeout kills answered 504 to a call that cannot overrun (${misblamed.slice(0, 5).join(', ')})`
            : '',
          safetyDeadlines ? `the pool's safety deadline fired ${safetyDeadlines} times` : '',
        ]
          .filter(Boolean)
          .join('; ')
      : `${f.deaths.length} exits: ${f.kills.length} the soak's kills, the rest memory/timeout/unresponsive`,
  );

  // 8. The admin side stays up.
  check(
    '/_/health answers during the traffic',
    f.health.failures.length === 0 && f.health.polls > 0,
    `${f.health.polls - f.health.failures.length} of ${f.health.polls} polls, slowest ${Math.round(f.health.maxMs)} ms` +
      (f.health.failures.length ? `; ${f.health.failures.slice(0, 3).join('; ')}` : ''),
  );

  // 9. Recovery: the shared pool at full strength, idle, and serving.
  const r = f.recovery;
  check(
    'recovery',
    r.recovered && f.lastCall.status === 200,
    r.recovered
      ? `idle with ${r.sharedWorkers} shared workers ${Math.round(r.ms)} ms after the traffic; a last call → ${f.lastCall.status ?? f.lastCall.error}`
      : `not within ${Math.round(r.ms)} ms: ${JSON.stringify(r.pool)}, ${r.sharedWorkers} shared workers; a last call → ${f.lastCall.status ?? f.lastCall.error}`,
  );

  // 10. Shutdown: SIGTERM → exit 0, no worker left.
  const sd = f.shutdown;
  check(
    'SIGTERM → exit 0, no orphans',
    !sd.hung && sd.exitCode === 0 && sd.orphansAtExit.length === 0,
    (sd.hung
      ? 'the server hung after SIGTERM (killed)'
      : `exit ${sd.exitSignal ?? sd.exitCode} in ${Math.round(sd.exitMs)} ms`) +
      `; orphans ${sd.orphansAtExit.length}` +
      (sd.orphansAtExit.length ? ` (${sd.orphansAfter3s.length} still alive 3 s later)` : ''),
  );

  // 11. Memory within bounds.
  const growth = f.rss.end.server - f.rss.start.server;
  const workerLimit = f.config.workerMemoryMb * MB + WORKER_RSS_HEADROOM;
  const fat = f.rss.end.workers.filter((bytes) => bytes > workerLimit);
  check(
    'memory',
    growth <= SERVER_RSS_GROWTH_LIMIT && fat.length === 0,
    `server ${mb(f.rss.start.server)} → ${mb(f.rss.end.server)} (${growth >= 0 ? '+' : ''}${mb(growth)}, limit +${mb(SERVER_RSS_GROWTH_LIMIT)}); ` +
      `workers at the end ${f.rss.end.workers.map(mb).join(', ') || '—'} (limit ${mb(workerLimit)} each)`,
  );

  const deathReasons: Record<string, number> = {};
  for (const d of f.deaths) {
    const key = deliberate.has(d.pid) ? `${d.reason} (soak's kill)` : d.reason;
    deathReasons[key] = (deathReasons[key] ?? 0) + 1;
  }

  return {
    pass: checks.every((c) => c.pass),
    checks,
    perKind,
    groups,
    mix,
    byStatus,
    byCode,
    failures,
    deathReasons,
    timeoutKillCauses,
    effects: effects.figures,
    issue10: issue10Figures(f, groups),
    uploads: { sent: uploads.length, read413: read413.length, medianBodySent },
  };
}

function groupOf(kindName: string): Group {
  return (KINDS.find((k) => k.name === kindName) as (typeof KINDS)[number]).group;
}

function tally(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

function describeFailures(failed: Failure[]): string {
  if (failed.length === 0) return '';
  const twice = failed.filter((x) => x.deathsInFlight > 1).length;
  return (
    `; failed ${failed.length}: ${countOf(tally(failed.map((x) => x.cls)))}` +
    ` (blame: ${countOf(tally(failed.map((x) => x.blame)))})` +
    (twice ? `, ${twice} with 2+ worker deaths while in flight` : '')
  );
}

/** With --lenient: the failures accepted as collateral. */
function collateralNote(samples: Sample[], verdictOf: Map<Sample, Verdict>): string {
  const kill = samples.filter((s) => verdictOf.get(s) === 'killCollateral').length;
  const neighbour = samples.filter((s) => verdictOf.get(s) === 'neighbourCollateral').length;
  return kill + neighbour
    ? `; accepted as collateral: of the soak's kills ×${kill}, of hostile neighbours ×${neighbour}`
    : '';
}

function overloadedNote(samples: Sample[], verdictOf: Map<Sample, Verdict>): string {
  const n = samples.filter((s) => verdictOf.get(s) === 'overloaded').length;
  return n ? `; 503 OVERLOADED ×${n} (counted apart)` : '';
}

/**
 * The effect check: every key is `eff:<rid>` of an effectful call of this run, at 1; a 200's key
 * is there, a 503's is not. A 502's key tells whether its invocation had made its effect.
 */
function effectCheck(
  f: RunFacts,
  effectful: Sample[],
): { problems: string[]; detail: string; figures: Summary['effects'] } {
  const byRid = new Map(effectful.map((s) => [s.rid, s]));
  const problems: string[] = [...f.kv.errors.slice(0, 3).map((e) => `read: ${e}`)];
  if (f.kv.errors.length > 3) problems.push(`${f.kv.errors.length - 3} more read errors`);
  let maxValue = 0;
  const twice: string[] = [];
  const stray: string[] = [];
  for (const [key, value] of f.kv.values) {
    if (typeof value === 'number') maxValue = Math.max(maxValue, value);
    if (value !== 1) twice.push(`${key}=${JSON.stringify(value)}`);
    if (!byRid.has(key.slice('eff:'.length))) stray.push(key);
  }
  if (twice.length) problems.push(`${twice.length} keys not 1: ${twice.slice(0, 5).join(', ')}`);
  if (stray.length)
    problems.push(`${stray.length} keys of no call: ${stray.slice(0, 5).join(', ')}`);
  const has = (s: Sample) => f.kv.values.has(`eff:${s.rid}`);
  const missing = effectful.filter((s) => s.cls === '200' && !has(s));
  if (missing.length)
    problems.push(
      `${missing.length} calls answered 200 with no key: ${missing
        .slice(0, 5)
        .map((s) => s.rid)
        .join(', ')}`,
    );
  const ranAnyway = effectful.filter((s) => s.code === 'OVERLOADED' && has(s));
  if (ranAnyway.length)
    problems.push(
      `${ranAnyway.length} calls answered 503 but ran: ${ranAnyway
        .slice(0, 5)
        .map((s) => s.rid)
        .join(', ')}`,
    );
  const crashed = effectful.filter((s) => s.cls === '502 WORKER_CRASHED');
  const crashedAfterEffect = crashed.filter(has).length;
  const crashedBefore = crashed.length - crashedAfterEffect;
  const detail =
    `${f.kv.values.size} keys, max ${maxValue || '—'}; 502s: ${crashedAfterEffect} after the effect, ` +
    `${crashedBefore} before it (made none: docs/spec.md §3 runs those again)` +
    (problems.length ? `; ${problems.join('; ')}` : '');
  return {
    problems,
    detail,
    figures: { keys: f.kv.values.size, maxValue, crashedAfterEffect, crashedBefore },
  };
}

/** Re-runs and quarantines, from wherever the server shows them (tolerating their absence). */
function issue10Figures(f: RunFacts, groups: GroupFigures[]): Summary['issue10'] {
  const metrics: Record<string, number> = {};
  for (const [key, value] of f.metrics.end ?? []) {
    const name = key.split('{')[0];
    if (!ISSUE10_WORDS.test(name) && name !== 'faas_worker_restarts_total') continue;
    if (name.endsWith('_bucket') || name.endsWith('_sum')) continue;
    const delta = value - (f.metrics.start?.get(key) ?? 0);
    if (delta !== 0 || ISSUE10_WORDS.test(name)) metrics[key] = delta;
  }
  const functions: Record<string, unknown> = {};
  const list = (f.functions as { functions?: Record<string, unknown>[] } | undefined)?.functions;
  for (const fn of list ?? []) {
    for (const [field, value] of Object.entries(fn)) {
      if (ISSUE10_WORDS.test(field) && value !== undefined && value !== false && value !== null)
        functions[`${String(fn.name)}.${field}`] = value;
    }
  }
  const known = ['workers', 'configuredWorkers', 'running', 'queued', 'restarts', 'closing'];
  const pool = Object.fromEntries(
    Object.entries(f.recovery.pool ?? {}).filter(([field]) => !known.includes(field)),
  );
  const logs = Object.fromEntries([...f.logCounts].filter(([line]) => ISSUE10_WORDS.test(line)));
  return {
    ranAgainSeen: groups.reduce((sum, g) => sum + g.ranAgain, 0),
    metrics,
    functions,
    pool,
    logs,
  };
}
