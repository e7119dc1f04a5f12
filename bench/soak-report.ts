/**
 * The soak's report: a few lines of context, then three Markdown tables (healthy latency, every
 * kind's outcomes, the bar) that read in a terminal and paste into BENCHMARKS.md as they are,
 * and the whole run as JSON (`--json`).
 */
import type { RunFacts, Summary } from './soak-checks';
import { KINDS } from './soak-traffic';

const MB = 1024 * 1024;
const ms = (value: number) => (Number.isFinite(value) ? `${Math.round(value)} ms` : '—');
const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const countOf = (record: Record<string, number>, sep = ' ') =>
  Object.entries(record)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}${sep}${v}`)
    .join(', ');

/** A Markdown table with its columns padded (`r` aligns right). */
function table(head: string[], align: ('l' | 'r')[], rows: string[][]): string[] {
  const cell = (text: string) => text.replace(/\|/g, '\\|');
  const all = [head, ...rows].map((row) => row.map(cell));
  const widths = head.map((_, i) => Math.max(3, ...all.map((row) => row[i].length)));
  const line = (row: string[]) =>
    `| ${row.map((c, i) => (align[i] === 'r' ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (align[i] === 'r' ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(all[0]), rule, ...all.slice(1).map(line)];
}

export function headline(f: RunFacts): string {
  const o = f.options;
  const c = f.config;
  return (
    `koa-faas soak — ${o.seconds} s, ${o.connections} connections, ` +
    `${o.killEvery > 0 ? `SIGKILL a shared worker every ${o.killEvery} s` : 'no kills'}; ` +
    `WORKERS=${c.workers}, FUNCTION_TIMEOUT_MS=${c.timeoutMs}, WORKER_MEMORY_MB=${c.workerMemoryMb}, ` +
    `MAX_BODY=${c.maxBodyBytes / MB}mb${o.lenient ? '; --lenient' : ''}`
  );
}

/** The three tables, for the terminal and for BENCHMARKS.md. */
export function markdown(s: Summary): string[] {
  const out: string[] = [];
  out.push(
    'Healthy calls (latency over every answer of the group; "ran again": `context.attempt` > 1):',
  );
  out.push('');
  out.push(
    ...table(
      [
        'healthy',
        'calls',
        '200 exact',
        'also allowed',
        '503',
        'failed',
        'ran again',
        'p50',
        'p99',
        'max',
      ],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      s.groups.map((g) => [
        g.group === 'effect' ? 'effect (kv.incr)' : g.group,
        String(g.sent),
        String(g.exact),
        g.group === 'effect' ? `${g.allowed} (502)` : '—',
        String(g.overloaded),
        String(g.failed),
        String(g.ranAgain),
        ms(g.p50Ms),
        ms(g.p99Ms),
        ms(g.maxMs),
      ]),
    ),
  );
  out.push('');
  out.push('Every kind (✗: an outcome the kind must not get):');
  out.push('');
  out.push(
    ...table(
      ['kind', 'group', 'sent', 'failed', 'p50', 'p99', 'outcomes'],
      ['l', 'l', 'r', 'r', 'r', 'r', 'l'],
      s.perKind
        .filter((k) => k.sent > 0)
        .map((k) => [
          k.name,
          k.group,
          String(k.sent),
          String(k.failed),
          ms(k.p50Ms),
          ms(k.p99Ms),
          Object.entries(k.classes)
            .sort((a, b) => b[1] - a[1])
            .map(
              ([cls, n]) =>
                `${cls} ×${n}${k.expected.includes(cls) || cls === '503 OVERLOADED' ? '' : ' ✗'}`,
            )
            .join(', '),
        ]),
    ),
  );
  out.push('');
  out.push(`The bar (${s.pass ? 'PASS' : 'FAIL'}):`);
  out.push('');
  out.push(
    ...table(
      ['check', '', 'result'],
      ['l', 'l', 'l'],
      s.checks.map((c) => [c.name, c.pass ? '✓' : '✗', c.detail]),
    ),
  );
  return out;
}

export function printReport(f: RunFacts, s: Summary): void {
  const line = (label: string, text: string) => console.log(`${label.padEnd(12)}${text}`);
  const answered = f.samples.filter((x) => x.status !== undefined).length;
  console.log('');
  console.log(headline(f));
  line(
    'requests',
    `sent ${f.sent}, answered ${answered} (${((f.samples.length * 1000) / f.trafficMs).toFixed(0)} req/s over ${(f.trafficMs / 1000).toFixed(1)} s)`,
  );
  line(
    'mix',
    `healthy ${pct(s.mix.sync + s.mix.async + s.mix.effect)} (sync ${pct(s.mix.sync)}, async ${pct(s.mix.async)}, ` +
      `effect ${pct(s.mix.effect)}), hostile ${pct(s.mix.hostile)}`,
  );
  line('by status', countOf(s.byStatus));
  line('by code', countOf(s.byCode) || '—');
  console.log('');
  for (const text of markdown(s)) console.log(text);
  console.log('');
  // A kill of a worker still starting: the server logs no exit for it and starts another.
  const logged = new Set(f.deaths.map((d) => d.pid));
  const unready = f.kills.filter((k) => !logged.has(k.pid)).length;
  line(
    'kills',
    `${f.kills.length} SIGKILLs of shared workers` +
      (unready
        ? ` (${unready} of a worker not yet ready: no exit logged, the pool starts another)`
        : '') +
      (f.killSkips ? ` (${f.killSkips} ticks found none alive)` : '') +
      (f.killFailures.length ? ` (${f.killFailures.length} failed)` : '') +
      `; solo workers seen (never killed): ${f.soloSeen.length}`,
  );
  line(
    'exits',
    `${countOf(s.deathReasons) || 'none'}` +
      (Object.keys(s.timeoutKillCauses).length
        ? `; the pool's timeout kills were for: ${countOf(s.timeoutKillCauses)}`
        : ''),
  );
  const i10 = s.issue10;
  line(
    're-runs',
    `${i10.ranAgainSeen} healthy answers with context.attempt > 1` +
      (Object.keys(i10.metrics).length
        ? `; /_/metrics: ${countOf(i10.metrics, ' ')}`
        : '; /_/metrics: —'),
  );
  line(
    'quarantine',
    [
      Object.keys(i10.functions).length ? `/_/functions: ${JSON.stringify(i10.functions)}` : '',
      Object.keys(i10.pool).length ? `/_/health pool: ${JSON.stringify(i10.pool)}` : '',
      Object.keys(i10.logs).length ? `logs: ${countOf(i10.logs, ' ×')}` : '',
    ]
      .filter(Boolean)
      .join('; ') || 'nothing shown by /_/functions, /_/health or the log',
  );
  line(
    'restarts',
    `${f.recovery.pool?.restarts ?? '?'} (pool, /_/health; ${f.poolStart?.restarts ?? '?'} at start); ` +
      `${f.processesSeen} worker processes seen in all`,
  );
  line(
    'rss',
    `start ${mb(f.rss.start.total)}, end ${mb(f.rss.end.total)} (server ${mb(f.rss.end.server)} + workers ` +
      `${f.rss.end.workers.map(mb).join(' + ')}), peak ${mb(f.rss.peak)}`,
  );
  const otherLogs = [...f.logCounts].filter(([key]) => key !== 'warn: worker exited');
  if (otherLogs.length > 0) line('server logs', otherLogs.map(([k, v]) => `${k} ×${v}`).join('; '));
  if (s.failures.length > 0) {
    console.log(`calls that failed the bar (${s.failures.length}; first 12, time from start):`);
    for (const x of s.failures.slice(0, 12)) {
      console.log(
        `  +${ms(x.startMs)}…+${ms(x.endMs)} ${x.kind} ${x.rid} → ${x.cls}` +
          `${x.message ? `: ${x.message.slice(0, 120)}` : ''} [blame: ${x.blame}` +
          `${x.deathsInFlight > 1 ? `; ${x.deathsInFlight} workers died while it ran` : ''}]`,
      );
    }
    const shown = s.failures.slice(0, 12);
    const around = (t: number) =>
      shown.some((x) => t - f.t0 >= x.startMs - 1500 && t - f.t0 <= x.endMs + 1500);
    const nearKills = f.kills
      .filter((k) => around(k.t))
      .map((k) => `+${ms(k.t - f.t0)} pid ${k.pid}`);
    const nearExits = f.deaths
      .filter((d) => around(d.t))
      .map((d) => `+${ms(d.t - f.t0)} pid ${d.pid} ${d.reason}`);
    console.log(`  soak's kills near them: ${nearKills.join(', ') || 'none'}`);
    console.log(`  worker exits near them: ${nearExits.join(', ') || 'none'}`);
  }
  if (!s.pass && f.rawTail.length > 0) {
    console.log(`server output (tail):\n  ${f.rawTail.slice(-10).join('\n  ')}`);
  }
  const failed = s.checks.filter((c) => !c.pass);
  console.log(
    `verdict     ${s.pass ? 'PASS' : `FAIL\n${failed.map((c) => `  - ${c.name}: ${c.detail}`).join('\n')}`}`,
  );
}

/** The whole run, for --json. */
export function jsonReport(f: RunFacts, s: Summary): unknown {
  return {
    options: f.options,
    server: f.config,
    pass: s.pass,
    checks: s.checks,
    requests: {
      sent: f.sent,
      answered: f.samples.filter((x) => x.status !== undefined).length,
      trafficMs: f.trafficMs,
      byStatus: s.byStatus,
      byCode: s.byCode,
    },
    mix: s.mix,
    healthy: s.groups,
    perKind: s.perKind,
    effects: s.effects,
    uploads: s.uploads,
    issue10: s.issue10,
    kills: f.kills.map((k) => ({ atMs: k.t - f.t0, pid: k.pid })),
    killSkips: f.killSkips,
    soloWorkersSeen: f.soloSeen,
    workerExits: f.deaths.map((d) => ({
      ...d,
      t: d.t - f.t0,
      deliberate: f.kills.some((k) => k.pid === d.pid),
    })),
    deathReasons: s.deathReasons,
    timeoutKillCauses: s.timeoutKillCauses,
    health: f.health,
    recovery: f.recovery,
    restarts: {
      start: f.poolStart?.restarts,
      end: f.recovery.pool?.restarts,
      processesSeen: f.processesSeen,
    },
    rss: f.rss,
    shutdown: f.shutdown,
    serverLogs: Object.fromEntries(f.logCounts),
    failures: s.failures,
    ranAgain: f.samples
      .filter((x) => (x.attempt ?? 1) > 1)
      .map((x) => ({
        kind: KINDS[x.kind].name,
        start: x.start - f.t0,
        end: x.end - f.t0,
        cls: x.cls,
        rid: x.rid,
        attempt: x.attempt,
      })),
    hostileCalls: f.samples
      .filter((x) => KINDS[x.kind].mayOverrun)
      .map((x) => ({
        kind: KINDS[x.kind].name,
        start: x.start - f.t0,
        end: x.end - f.t0,
        cls: x.cls,
        rid: x.rid,
      })),
  };
}
