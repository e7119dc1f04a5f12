/**
 * `npm run bench:replicas`: GET /hello on one koa-faas server directly, and through HAProxy in
 * front of 1, 2 and 3 replicas (docs/spec.md §10), side by side in one run, with the CPU each part spent
 * per request. The cluster is the replica tests' (test/replicas/cluster.ts): a real redis-server,
 * three `node dist/src/main.js` with REDIS_URL (WORKERS=2 each) and HAProxy running the shipped
 * configuration (deploy/haproxy/haproxy.cfg) on its own ports; one HAProxy per row, each with the
 * first N replicas, and one more in front of one replica that reuses idle connections to it
 * (without `option http-server-close`), to show what a connection per request costs. All rows
 * run with all three replicas started, so idle replicas cost every row alike.
 *
 * On a machine with few cores this shows the cost of the balancer's hop, not scaling: every
 * replica, its workers, HAProxy and the load generator share the same cores.
 *
 *   node dist/bench/replicas.js [--connections 32] [--duration 10] [--runs 3] [--warmup 2]
 *                               [--json file]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { CLUSTER_MISSING, call, startCluster } from '../test/replicas/cluster';
import type { Cluster } from '../test/replicas/cluster';
import { startHaproxy } from '../test/support/haproxy';
import type { Haproxy } from '../test/support/haproxy';
import { freePort, median, processTree, treeCpu } from './measure';

const ROOT = path.join(__dirname, '..', '..');

interface Options {
  connections: number;
  duration: number;
  runs: number;
  warmup: number;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      connections: { type: 'string', default: '32' },
      duration: { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '2' },
      json: { type: 'string' },
    },
  });
  const number = (name: string, raw: string, min: number) => {
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be ≥ ${min}`);
    return value;
  };
  return {
    connections: Math.round(number('connections', values.connections, 1)),
    duration: number('duration', values.duration, 1),
    runs: Math.round(number('runs', values.runs, 1)),
    warmup: number('warmup', values.warmup, 0),
    json: values.json,
  };
}

/** One row: where the load goes, and which processes serve it. */
interface Target {
  name: string;
  port: number;
  /** Roots of the process trees that serve it (replicas with their workers). */
  replicaPids: number[];
  haproxyPid?: number;
}

interface RunResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  /** CPU µs per answered request: the replicas (servers + workers), HAProxy, the load generator. */
  cpuReplicasUs: number;
  cpuHaproxyUs: number;
  cpuLoadUs: number;
}

function load(url: string, connections: number, seconds: number): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon({ url, connections, duration: seconds, timeout: 10 }, (err, result) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(result);
    });
  });
}

/** CPU ms used so far by these process trees (all replicas, whichever the row uses). */
function cpuOf(roots: number[]): number {
  let total = 0;
  for (const root of roots) {
    for (const { ms } of treeCpu(root).values()) total += ms;
  }
  return total;
}

async function measure(target: Target, allReplicas: number[], opts: Options): Promise<RunResult> {
  const url = `http://127.0.0.1:${target.port}/hello`;
  if (opts.warmup > 0) await load(url, opts.connections, opts.warmup);
  // Every replica's CPU, used or not by this row: an idle one's timers count against the row too.
  const replicasBefore = cpuOf(allReplicas);
  const haproxyBefore = target.haproxyPid ? cpuOf([target.haproxyPid]) : 0;
  const loadBefore = process.cpuUsage();
  const result = await load(url, opts.connections, opts.duration);
  const loadCpu = process.cpuUsage(loadBefore);
  const answered = Math.max(1, result.requests.total);
  const perRequest = (ms: number) => (ms * 1000) / answered;
  return {
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
    cpuReplicasUs: perRequest(cpuOf(allReplicas) - replicasBefore),
    cpuHaproxyUs: target.haproxyPid ? perRequest(cpuOf([target.haproxyPid]) - haproxyBefore) : 0,
    cpuLoadUs: perRequest((loadCpu.user + loadCpu.system) / 1000),
  };
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '—');

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r, ri) =>
      r
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
        .join('  ')
        .concat(ri === 0 ? `\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : ''),
    )
    .join('\n');
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  if (CLUSTER_MISSING) {
    console.log(`bench:replicas skipped: ${CLUSTER_MISSING}`);
    return;
  }
  const startedAt = new Date();
  console.log(
    `koa-faas replicas bench — ${startedAt.toISOString()} — node ${process.version}, nproc ` +
      `${os.availableParallelism()}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, load average ` +
      `${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  console.log(
    `${opts.connections} connections, ${opts.duration} s per measurement after a ${opts.warmup} s ` +
      `warm-up, median of ${opts.runs} runs (rows interleaved), GET /hello; three replicas ` +
      '(WORKERS=2, LOG_LEVEL=warn, REDIS_URL) run in every row.',
  );
  const hello = fs.readFileSync(path.join(ROOT, 'functions', 'hello.js'), 'utf8');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-bench-replicas-'));
  let cluster: Cluster | undefined;
  const balancers: Haproxy[] = [];
  try {
    cluster = await startCluster({ files: { hello }, checkMs: 1000 });
    const replicas = cluster.replicas;
    const allPids = replicas.map((r) => r.pid() as number);
    const targets: Target[] = [
      { name: 'direct (1 server)', port: replicas[0].port, replicaPids: [allPids[0]] },
    ];
    const rows = [
      { n: 1, reuse: false },
      { n: 2, reuse: false },
      { n: 3, reuse: false },
      { n: 1, reuse: true },
    ];
    for (const { n, reuse } of rows) {
      const dir = path.join(work, `haproxy-${n}${reuse ? '-reuse' : ''}`);
      fs.mkdirSync(dir);
      const balancer = await startHaproxy(dir, {
        bind: `127.0.0.1:${await freePort()}`,
        servers: replicas.slice(0, n).map((r) => ({
          name: r.name,
          address: `127.0.0.1:${r.port}`,
        })),
        checkMs: 1000,
        reuse,
      });
      balancers.push(balancer);
      targets.push({
        name: `HAProxy + ${n} replica${n > 1 ? 's' : ''}${reuse ? ', reuse' : ''}`,
        port: balancer.port,
        replicaPids: allPids.slice(0, n),
        haproxyPid: balancer.pid,
      });
    }
    for (const target of targets) {
      // Up and answering (each balancer's checks have passed) before any measurement.
      for (let i = 0; ; i++) {
        const reply = await call(target.port, 'GET', '/hello').catch(() => undefined);
        if (reply?.status === 200) break;
        if (i > 100) throw new Error(`${target.name} does not answer /hello`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const runs = new Map<string, RunResult[]>(targets.map((t) => [t.name, []]));
    for (let run = 0; run < opts.runs; run++) {
      // Rotate the order every run, so drift on the machine affects every row alike.
      const order = targets.map((_, i) => targets[(i + run) % targets.length]);
      for (const target of order) {
        const result = await measure(target, allPids, opts);
        runs.get(target.name)?.push(result);
        console.log(
          `run ${run + 1}/${opts.runs} ${target.name.padEnd(20)} ${fmt(result.rps).padStart(6)} req/s  ` +
            `p50 ${fmt(result.p50, 1)} ms  p99 ${fmt(result.p99, 1)} ms  errors ${result.errors}  ` +
            `non-2xx ${result.non2xx}`,
        );
      }
    }
    const summary = targets.map((t) => {
      const rs = runs.get(t.name) ?? [];
      const pick = (f: (r: RunResult) => number) => median(rs.map(f));
      return {
        name: t.name,
        rps: pick((r) => r.rps),
        p50: pick((r) => r.p50),
        p99: pick((r) => r.p99),
        errors: rs.reduce((sum, r) => sum + r.errors, 0),
        non2xx: rs.reduce((sum, r) => sum + r.non2xx, 0),
        cpuReplicasUs: pick((r) => r.cpuReplicasUs),
        cpuHaproxyUs: pick((r) => r.cpuHaproxyUs),
        cpuLoadUs: pick((r) => r.cpuLoadUs),
        runs: rs,
      };
    });
    const direct = summary[0];
    console.log('');
    console.log(
      `Hello through HAProxy (median of ${opts.runs} runs; errors and non-2xx summed; CPU µs per ` +
        'request: all three replicas with their workers + HAProxy + the load generator):',
    );
    console.log(
      table([
        ['target', 'req/s', 'vs direct', 'p50 ms', 'p99 ms', 'errors', 'non-2xx', 'CPU µs/req'],
        ...summary.map((s) => [
          s.name,
          fmt(s.rps),
          `${fmt((s.rps / direct.rps) * 100)} %`,
          fmt(s.p50, 1),
          fmt(s.p99, 1),
          String(s.errors),
          String(s.non2xx),
          `${fmt(s.cpuReplicasUs)} + ${fmt(s.cpuHaproxyUs)} (+${fmt(s.cpuLoadUs)})`,
        ]),
      ]),
    );
    console.log(
      `\nThis machine has ${os.availableParallelism()} cores, shared by every replica (a server ` +
        'and 2 workers each), HAProxy and the load generator: more replicas cannot add ' +
        'throughput here. The rows show what the balancer hop costs; replicas scale across ' +
        'machines (or cores a single server does not use), and give availability on any. ' +
        'The shipped configuration opens a new connection to a replica per request (option ' +
        'http-server-close: a crashed replica then fails only what was in flight on it); ' +
        '", reuse" is the same without it, keeping idle connections to the replicas.',
    );
    const processes = allPids.reduce((n, pid) => n + processTree(pid).length, 0);
    console.log(`(${processes} replica processes, ${balancers.length} HAProxy processes running.)`);
    if (opts.json) {
      fs.writeFileSync(
        opts.json,
        JSON.stringify(
          {
            date: startedAt.toISOString(),
            node: process.version,
            nproc: os.availableParallelism(),
            cpu: os.cpus()[0]?.model,
            loadAverageAtStart: os.loadavg(),
            options: opts,
            rows: summary,
          },
          null,
          2,
        ) + '\n',
      );
      console.log(`wrote ${opts.json}`);
    }
  } finally {
    for (const balancer of balancers) await balancer.close();
    await cluster?.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error('bench:replicas failed:', err);
  process.exitCode = 1;
});
