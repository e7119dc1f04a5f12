/**
 * The program each pool worker runs (forked by ../pool/worker-process.ts in place of safeify's
 * own runner). It replaces safeify's runner for three reasons:
 * - warm sandboxes: safeify builds a new vm2 context for every script (~2 ms); here each function
 *   version is compiled once into its own context and kept (warm-set.ts), so module-level state
 *   lives on between calls of one version and is never shared between two functions;
 * - one timeout for sync and async code: vm2 stops synchronous code; a promise that never settles
 *   is answered here at the deadline; only a blocked event loop (an endless microtask chain) is
 *   left to the pool, which kills the worker;
 * - no re-runs: every invocation is announced (`start`, flushed to the pipe) before its code
 *   runs, so after a kill the pool knows which invocations may have run.
 *
 * This file is the worker's wiring: it takes the pool's messages (runs, and replies to service
 * calls), announces and starts runs, says `ready`, then beats. The parts:
 * - options.ts: the settings the pool passes;
 * - outbox.ts: messages to the pool;
 * - invocations.ts: invocations in flight, and the host callbacks that act on their behalf;
 * - blocks.ts: who held the event loop, and when;
 * - shells.ts: vm2 contexts with our own scripts (sandbox/, read by sandbox-source.ts);
 * - warm-set.ts: the versions held, sized by memory;
 * - run.ts: running a batch under the watchdog, and each invocation to its deadline.
 */
import { hostRequests } from './invocations';
import { send, post } from './outbox';
import { runBatch } from './run';
import { prepareSpareShell } from './shells';
import { remember, sizeWarmSet, versionOf } from './warm-set';
import { HEARTBEAT_MS } from '../pool/wire';
import type { PoolMessage, RunMessage } from '../pool/wire';

function onRuns(jobs: RunMessage[]): void {
  const runnable: RunMessage[] = [];
  for (const job of jobs) {
    if (job?.t !== 'run') continue;
    if (job.src !== undefined && !versionOf(job.v)) {
      remember(job.v, { source: job.src, file: job.file ?? `${job.fn}.js` }, true);
    }
    if (versionOf(job.v)) runnable.push(job);
    else post({ t: 'miss', id: job.id });
  }
  if (runnable.length === 0) return;
  // Run only once the pool surely has the `start` notes (see StartMessage): the callback fires
  // when the write has reached the pipe.
  send(
    runnable.map((job) => ({ t: 'start', id: job.id })),
    () => runBatch(runnable),
  );
}

process.on('message', (batch: PoolMessage[]) => {
  if (!Array.isArray(batch)) return;
  const runs: RunMessage[] = [];
  for (const message of batch) {
    if (message?.t === 'reply') hostRequests.deliver(message);
    else runs.push(message);
  }
  if (runs.length > 0) onRuns(runs);
});
process.on('disconnect', () => process.exit(0));
// A signal for the whole process group (Ctrl-C, `kill -- -pgid`, systemd's default stop) is the
// server's to handle: it drains, then ends its workers itself (SIGKILL, or closing the channel).
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
prepareSpareShell();
sizeWarmSet();
send([{ t: 'ready' }]);
// The pool reads silence past the timeout as a blocked event loop, and kills the worker.
setInterval(() => send([{ t: 'beat' }]), HEARTBEAT_MS).unref();
