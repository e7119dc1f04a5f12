/**
 * `npm run soak`: the real server (`node dist/src/main.js`, WORKERS=2, FUNCTION_TIMEOUT_MS=1000,
 * 64 MB heaps, MAX_BODY=1mb, KV in a temporary DATA_DIR) under the blast-radius mix for a while — about
 * 70 % healthy calls (sync, async, and effectful through `context.kv`) and 30 % hostile ones
 * (throws, sync loops, endless microtasks, never-settling promises, memory bombs, giant and
 * unserialisable results, bad names, unknown functions, 5 MB uploads) — while one of the shared
 * pool's workers is SIGKILLed every few seconds (never a quarantine's solo worker).
 *
 *   node dist/bench/soak.js [--seconds 60] [--connections 16] [--kill-every 3] [--json file]
 *                           [--markdown file] [--lenient] [--max-requests N]
 *
 * The bar (bench/soak-checks.ts): every request answered; every effect-free healthy call its
 * exact 200, whatever its neighbours or the kills did; every effectful one 200 (having run once),
 * 502, or 504 naming the neighbour that blocked its worker twice, and no `eff:*` key in KV above 1; every hostile call its own error (a quarantine's 429
 * allowed; 503 OVERLOADED allowed everywhere, counted apart); every 5 MB upload a 413 the client
 * reads; every worker exit explained; /_/health up throughout; the pool back at full strength
 * after; SIGTERM → exit 0 with no worker left; memory within bounds. Exits 0 only when all hold.
 * `--lenient` accepts healthy failures the soak can blame on its own kill or a hostile
 * neighbour (the bar before the blast-radius rules).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sleep } from './measure';
import { analyse } from './soak-checks';
import type { RunFacts } from './soak-checks';
import { adminGet, adminJson, call, metricSamples, poolFigures, readKeys } from './soak-http';
import type { PoolFigures } from './soak-http';
import { classOf } from './soak-judge';
import type { Sample } from './soak-judge';
import { jsonReport, headline, markdown, printReport } from './soak-report';
import { rssNow, SERVER_ENTRY, startServer } from './soak-server';
import type { ServerUnderTest, SoakConfig } from './soak-server';
import { FUNCTIONS, KindPicker, KINDS, MAX_BODY_BYTES } from './soak-traffic';

const WORKERS = 2;
const TIMEOUT_MS = 1000;
const WORKER_MEMORY_MB = 64;
/** Far above anything the server may take (queue wait + timeout + a re-run): unanswered. */
const CLIENT_TIMEOUT_MS = 10_000;
/** The server must be back to full strength this soon after the traffic stops. */
const RECOVERY_MS = 10_000;
/** SIGTERM → exit: the server's grace (timeout + 1 s) plus its own 5 s backstop, plus slack. */
const EXIT_WAIT_MS = 15_000;

interface Options {
  seconds: number;
  connections: number;
  /** Seconds between deliberate SIGKILLs of a shared worker; 0 = none. */
  killEvery: number;
  json?: string;
  markdown?: string;
  /** Accept healthy failures the soak can blame on its kills or hostile neighbours. */
  lenient: boolean;
  /** Hard cap on requests, whatever the time. */
  maxRequests: number;
}

function numberOption(name: string, raw: string | undefined, fallback: number, min: number) {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min)
    throw new Error(`--${name} must be a number ≥ ${min}`);
  return value;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      connections: { type: 'string' },
      'kill-every': { type: 'string' },
      json: { type: 'string' },
      markdown: { type: 'string' },
      lenient: { type: 'boolean', default: false },
      'max-requests': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      'usage: node dist/bench/soak.js [--seconds 60] [--connections 16] [--kill-every 3]\n' +
        '                               [--json file] [--markdown file] [--lenient] [--max-requests N]',
    );
    process.exit(0);
  }
  const seconds = numberOption('seconds', values.seconds, 60, 1);
  return {
    seconds,
    connections: Math.floor(numberOption('connections', values.connections, 16, 1)),
    killEvery: numberOption('kill-every', values['kill-every'], 3, 0),
    json: values.json,
    markdown: values.markdown,
    lenient: values.lenient ?? false,
    maxRequests: Math.floor(
      numberOption('max-requests', values['max-requests'], Math.max(10_000, seconds * 20_000), 1),
    ),
  };
}

let current: ServerUnderTest | undefined;
let tempDir: string | undefined;

function cleanup(): void {
  current?.killAll();
  if (tempDir) {
    fs.rmSync(tempDir, { recursive: true, force: true });
    tempDir = undefined;
  }
}

function writeFunctions(dir: string): void {
  for (const [file, source] of Object.entries(FUNCTIONS)) {
    const full = path.join(dir, file);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    fs.writeFileSync(full, source);
  }
}

/** Waits until the shared pool is at full strength and idle; how long it took. */
async function recover(server: ServerUnderTest, port: number): Promise<RunFacts['recovery']> {
  const from = performance.now();
  let pool: PoolFigures | undefined;
  let sharedWorkers = 0;
  while (server.alive && performance.now() - from < RECOVERY_MS) {
    pool = await poolFigures(port);
    sharedWorkers = server.sharedWorkers().length;
    if (
      pool &&
      pool.workers >= WORKERS &&
      sharedWorkers === WORKERS &&
      pool.running === 0 &&
      pool.queued === 0
    ) {
      return { recovered: true, ms: performance.now() - from, pool, sharedWorkers };
    }
    await sleep(100);
  }
  return { recovered: false, ms: performance.now() - from, pool, sharedWorkers };
}

/** SIGTERM, watching for workers until the server is gone; then who outlived it. */
async function stop(server: ServerUnderTest): Promise<RunFacts['shutdown']> {
  const termAt = performance.now();
  let hung = false;
  if (server.alive) {
    server.child.kill('SIGTERM');
    const watcher = setInterval(() => server.scanWorkers(), 20);
    await Promise.race([server.exited, sleep(EXIT_WAIT_MS)]);
    clearInterval(watcher);
    if (server.alive) {
      hung = true;
      server.child.kill('SIGKILL');
      await server.exited;
    }
  }
  const orphansAtExit = server.survivors();
  let orphansAfter3s: number[] = [];
  if (orphansAtExit.length > 0) {
    await sleep(3000);
    orphansAfter3s = server.survivors();
  }
  server.killAll();
  return {
    exitCode: server.exit?.code ?? null,
    exitSignal: server.exit?.signal ?? null,
    exitMs: (server.exit?.t ?? NaN) - termAt,
    hung,
    orphansAtExit,
    orphansAfter3s,
  };
}

async function soak(options: Options): Promise<boolean> {
  if (!fs.existsSync(SERVER_ENTRY))
    throw new Error(`${SERVER_ENTRY} is missing: run npm run build`);
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-soak-'));
  // Workers may run as an unprivileged user; the server reads the folder, they do not.
  fs.chmodSync(tempDir, 0o755);
  const config: SoakConfig = {
    workers: WORKERS,
    timeoutMs: TIMEOUT_MS,
    workerMemoryMb: WORKER_MEMORY_MB,
    maxBodyBytes: MAX_BODY_BYTES,
    functionsDir: path.join(tempDir, 'functions'),
    dataDir: path.join(tempDir, 'data'),
    adminToken: crypto.randomBytes(24).toString('hex'),
  };
  fs.mkdirSync(config.functionsDir, { mode: 0o755 });
  writeFunctions(config.functionsDir);

  const { server, port } = await startServer(config, (s) => (current = s));
  server.scanWorkers();

  // Warm-up: the effect-free healthy functions once each, so the start figures include warm
  // workers (the effectful one is left alone: every eff:* key must belong to a call of the run).
  const warmAgent = new http.Agent({ keepAlive: false });
  for (const p of ['/hello?n=0', '/async-hello?n=0&ms=20', '/nested/deep/?n=0']) {
    await call(warmAgent, port, { method: 'GET', path: p }, 'soak-warm', CLIENT_TIMEOUT_MS);
  }
  await sleep(200);
  server.scanWorkers();
  const rssStart = rssNow(server.pid);
  const poolStart = await poolFigures(port);
  const metricsStart = await metricSamples(port);

  // Background: workers (for kills, orphans and the solo ones), RSS peak, /_/health.
  let rssPeak = rssStart.total;
  const soloSeen = new Set<number>();
  const scanner = setInterval(() => {
    for (const w of server.describedWorkers()) if (w.solo) soloSeen.add(w.pid);
  }, 100);
  const rssSampler = setInterval(() => {
    if (server.alive) rssPeak = Math.max(rssPeak, rssNow(server.pid).total);
  }, 1000);
  const health = { polls: 0, failures: [] as string[], maxMs: 0 };
  let polling = true;
  const healthPoller = (async () => {
    while (polling && server.alive) {
      const at = performance.now();
      try {
        const answer = await adminGet(port, '/_/health');
        if (answer.status !== 200)
          health.failures.push(`${answer.status} ${answer.text.slice(0, 100)}`);
      } catch (err) {
        health.failures.push(String(err));
      }
      health.polls++;
      health.maxMs = Math.max(health.maxMs, performance.now() - at);
      await sleep(1000);
    }
  })();

  const kills: RunFacts['kills'] = [];
  const killFailures: string[] = [];
  let killSkips = 0;
  const killer =
    options.killEvery > 0
      ? setInterval(() => {
          // Only the shared pool's workers: a suspect running alone on a killed solo worker
          // would be blamed for the kill.
          const live = server.sharedWorkers();
          if (live.length === 0) return void killSkips++;
          const victim = live[Math.floor(Math.random() * live.length)];
          try {
            process.kill(victim.pid, 'SIGKILL');
            kills.push({ t: performance.now(), pid: victim.pid });
          } catch (err) {
            killFailures.push(`${victim.pid}: ${String(err)}`);
          }
        }, options.killEvery * 1000)
      : undefined;

  // Traffic: `connections` closed loops over one keep-alive agent.
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections });
  const picker = new KindPicker(KINDS);
  const samples: Sample[] = [];
  const t0 = performance.now();
  const endAt = t0 + options.seconds * 1000;
  let sent = 0;
  const loop = async () => {
    while (performance.now() < endAt && sent < options.maxRequests && server.alive) {
      const kindIndex = picker.pick();
      const kind = KINDS[kindIndex];
      const n = ++sent;
      const rid = `soak-${n}`;
      const spec = kind.request(n);
      const start = performance.now();
      const answer = await call(agent, port, spec, rid, CLIENT_TIMEOUT_MS);
      const end = performance.now();
      samples.push({
        kind: kindIndex,
        n,
        rid,
        start,
        end,
        bodySent: answer.bodySent,
        ...classOf(kind, spec, answer, rid, n, end - start, TIMEOUT_MS),
      });
    }
  };
  const progress = setInterval(() => {
    const elapsed = (performance.now() - t0) / 1000;
    process.stderr.write(
      `  … ${elapsed.toFixed(0)} s: ${samples.length} answered, ${kills.length} kills\n`,
    );
  }, 10_000);
  await Promise.all(Array.from({ length: options.connections }, loop));
  const trafficMs = performance.now() - t0;
  clearInterval(progress);
  if (killer) clearInterval(killer);
  agent.destroy();
  polling = false;
  await healthPoller;
  const serverDied = server.alive ? undefined : JSON.stringify(server.exit);

  const recovery = await recover(server, port);
  // A last call: the server still serves after all that.
  const lastCall = server.alive
    ? await call(warmAgent, port, { method: 'GET', path: '/hello?n=0' }, 'soak-last', 5000)
    : { error: 'server gone', bodySent: 0 };
  const metricsEnd = await metricSamples(port);
  const functions = await adminJson(port, '/_/functions');
  const kv = server.alive
    ? await readKeys(port, config.adminToken, 'effect', 'eff:')
    : { values: new Map<string, unknown>(), errors: ['the server is gone'] };
  await sleep(500);
  server.scanWorkers();
  const rssEnd = rssNow(server.pid);
  clearInterval(scanner);
  clearInterval(rssSampler);
  const shutdown = await stop(server);

  const facts: RunFacts = {
    options: {
      seconds: options.seconds,
      connections: options.connections,
      killEvery: options.killEvery,
      lenient: options.lenient,
    },
    config: {
      workers: WORKERS,
      timeoutMs: TIMEOUT_MS,
      workerMemoryMb: WORKER_MEMORY_MB,
      maxBodyBytes: MAX_BODY_BYTES,
    },
    t0,
    trafficMs,
    sent,
    samples,
    kills,
    killSkips,
    killFailures,
    soloSeen: [...soloSeen],
    deaths: server.deaths,
    logCounts: server.logCounts,
    rawTail: server.rawTail,
    serverDied,
    health,
    recovery,
    poolStart,
    lastCall,
    rss: { start: rssStart, end: rssEnd, peak: rssPeak },
    shutdown,
    processesSeen: server.workers.size,
    kv,
    metrics: { start: metricsStart, end: metricsEnd },
    functions,
  };
  const summary = analyse(facts);
  printReport(facts, summary);
  if (options.markdown) {
    const text = [`${headline(facts)}`, '', ...markdown(summary), ''].join('\n');
    fs.writeFileSync(options.markdown, text);
    console.log(`tables written to ${options.markdown}`);
  }
  if (options.json) {
    fs.writeFileSync(options.json, JSON.stringify(jsonReport(facts, summary), null, 2) + '\n');
    console.log(`report written to ${options.json}`);
  }
  return summary.pass;
}

function main(): void {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`soak: ${(err as Error).message}`);
    process.exit(2);
  }
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      console.error(`soak: ${signal}: stopping the server and its workers`);
      cleanup();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    console.error('soak: crashed:', err);
    cleanup();
    process.exit(1);
  });
  soak(options).then(
    (pass) => {
      cleanup();
      process.exit(pass ? 0 : 1);
    },
    (err: unknown) => {
      console.error('soak: failed:', err);
      cleanup();
      process.exit(1);
    },
  );
}

main();
