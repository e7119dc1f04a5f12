/**
 * One pool worker process: forked from our runner (worker/runner.ts), confined as confinement.ts
 * says, its ready handshake, its stderr, how the pool kills it, and how its death is classified
 * and reported. The lanes (shared-lane.ts, solo-lane.ts) decide what runs on it; death-rules.ts
 * what its death means for what ran.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { WorkerConfinement } from './confinement';
import type { Logger } from '../observe/logger';
import type { PoolMessage, WorkerMessage } from './wire';

export type WorkerExitReason = 'timeout' | 'unresponsive' | 'memory' | 'crash' | 'retired';

/** safeify's Worker shape (process, state, runningScripts), plus what the pool tracks. */
export interface WorkerProcess<Job> {
  process: ChildProcess;
  /**
   * `shared`: one of the pool's WORKERS, running many invocations at once. `solo`: an extra
   * worker running one invocation at a time, for suspects and quarantined functions.
   */
  lane: 'shared' | 'solo';
  /** A shared worker's place in the pool, for affinity routing (affinity.ts); -1 on the solo lane. */
  slot: number;
  /** A solo worker's function: it runs no other (a new one is started for another). */
  owner?: string;
  /** A solo worker with nothing to run ends when this fires. */
  idleTimer?: NodeJS.Timeout;
  state: 'healthy' | 'unhealthy';
  runningScripts: Job[];
  /** Versions this worker is known to hold (their source need not be sent again). */
  known: Set<string>;
  /** Run messages and host-call replies of this event-loop turn, sent together (transport.ts). */
  outbox: PoolMessage[];
  /** Why the pool killed it, when it did. */
  killReason?: string;
  /** When the pool last heard from it (it beats every HEARTBEAT_MS while its loop turns). */
  lastHeard: number;
  exitReason?: WorkerExitReason;
  /** Its jobs have been settled or moved. */
  gone?: boolean;
}

export interface SpawnOptions {
  lane: 'shared' | 'solo';
  slot: number;
  isolation: 'warm' | 'fresh';
  warmContexts: number;
  maxResultBytes: number;
  maxStartupMs?: number;
  confinement?: WorkerConfinement;
  logger: Logger;
}

export interface WorkerHooks<Job> {
  /** Whether the pool is closing: a worker that becomes ready then is killed at once. */
  closing(): boolean;
  /** Every message batch from the worker, unvalidated. */
  onBatch(worker: WorkerProcess<Job>, batch: unknown): void;
  /** The worker is gone, every message it sent has been read, and its exit reason is known. */
  onGone(worker: WorkerProcess<Job>): void;
  /** The worker exited outside a shutdown. */
  onExit(reason: WorkerExitReason): void;
}

const MAX_STDERR_CHARS = 2048;
// A worker that has not said `ready` by then failed to start.
const START_TIMEOUT_MS = 10_000;
const runnerFile = path.join(__dirname, '..', 'worker', 'runner.js');

function exitReason(
  killReason: string | undefined,
  code: number | null,
  signal: NodeJS.Signals | null,
  oomKilled: boolean,
): WorkerExitReason {
  if (killReason === 'timeout') return 'timeout';
  if (killReason === 'retired') return 'retired';
  if (killReason !== undefined) return 'unresponsive';
  // V8 aborts when its heap limit is reached (SIGABRT, or 134 through a shell); the kernel's
  // cgroup OOM killer sends SIGKILL and leaves a count in the cgroup.
  if (signal === 'SIGABRT' || code === 134 || oomKilled) return 'memory';
  return 'crash';
}

/**
 * Kills a worker (SIGKILL), remembering why when it was healthy: its exit reason says so
 * (`timeout`, `retired`, else `unresponsive`). Its listeners stay: its jobs settle when its channel
 * closes.
 */
export function killWorker<Job>(worker: WorkerProcess<Job>, reason: string): void {
  if (worker.state === 'healthy') worker.killReason = reason;
  worker.state = 'unhealthy';
  if (worker.process.exitCode === null && worker.process.signalCode === null) {
    worker.process.kill('SIGKILL');
  }
}

/**
 * Forks one worker with an empty environment and the confinement's argv, uid and cgroup;
 * resolves when it says `ready`. Rejects when it exits or stays silent first.
 */
export function spawnWorker<Job>(
  options: SpawnOptions,
  hooks: WorkerHooks<Job>,
): Promise<WorkerProcess<Job>> {
  const { lane, slot, isolation, warmContexts, maxResultBytes, maxStartupMs } = options;
  const { confinement, logger } = options;
  // The lane is in argv only so that people (and the soak) can tell the processes apart.
  const argv = JSON.stringify({ lane, isolation, warmContexts, maxResultBytes, maxStartupMs });
  const child = fork(runnerFile, [argv], {
    env: {},
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    ...(confinement?.spawnOptions() ?? { execArgv: [] }),
  });
  if (child.pid !== undefined) void confinement?.attach(child.pid);
  const worker: WorkerProcess<Job> = {
    process: child,
    lane,
    slot,
    state: 'healthy',
    runningScripts: [],
    known: new Set(),
    outbox: [],
    lastHeard: performance.now(),
  };
  // A worker's stderr (V8's out-of-memory report, mostly) goes to the log when it exits.
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderr.length < MAX_STDERR_CHARS) stderr += chunk.toString('utf8');
  });
  // Without a listener, an 'error' (e.g. EPIPE on a send to a dying worker) crashes the host.
  child.on('error', (err) => logger.warn('worker error', { pid: child.pid, err }));
  return new Promise((resolve, reject) => {
    let ready = false;
    const fail = (reason: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`worker failed to start: ${reason}`));
    };
    const timer = setTimeout(() => fail('no ready message'), START_TIMEOUT_MS);
    child.once('exit', (code, signal) => {
      const pid = child.pid as number;
      const oom = confinement?.oomKilled(pid) ?? false;
      confinement?.release(pid);
      if (!ready)
        return fail(`exited with ${signal ?? code}: ${stderr.slice(0, MAX_STDERR_CHARS)}`);
      const reason = exitReason(worker.killReason, code, signal, oom);
      worker.exitReason = reason;
      if (hooks.closing() || reason === 'retired') return;
      logger.warn('worker exited', {
        pid,
        lane,
        reason,
        code,
        signal,
        ...(stderr ? { stderr: stderr.slice(0, MAX_STDERR_CHARS) } : {}),
      });
      hooks.onExit(reason);
    });
    child.once('message', (first: WorkerMessage[]) => {
      if (!Array.isArray(first) || first[0]?.t !== 'ready') return fail('unexpected first message');
      // Started while the pool was closing: its shutdown may not see it, so it goes now.
      if (hooks.closing()) return fail('the pool is closing');
      ready = true;
      // Heard now: a slow start (a loaded machine) is not silence of a blocked loop.
      worker.lastHeard = performance.now();
      clearTimeout(timer);
      child.on('message', (batch: unknown) => hooks.onBatch(worker, batch));
      // 'disconnect' comes after every message the worker wrote before it died was delivered,
      // so the `start` notes are complete when it fires ('exit' may come before them). The
      // 502 names the cause, which 'exit' tells: wait for it, briefly.
      child.once('disconnect', () => {
        if (worker.exitReason !== undefined) return hooks.onGone(worker);
        const fallback = setTimeout(() => hooks.onGone(worker), 200);
        child.once('exit', () => {
          clearTimeout(fallback);
          hooks.onGone(worker);
        });
      });
      resolve(worker);
    });
  });
}
