/**
 * The worker channel, both ways (its messages are wire.ts's).
 * Out: `dispatch` puts a job on a worker and sends it a `run`, with the function's source when the
 * worker may not hold that version; `reply` answers a host call. Everything for one worker in one
 * event-loop turn goes in one pipe write (`flush`); a send to a dead worker is logged, never
 * thrown (its jobs move on when its channel closes).
 * In: a batch is validated as a whole (a worker that escaped its sandbox can send anything: a
 * malformed batch gets the worker killed, never an exception here) and read with one clock
 * reading. `start`, `miss`, `evicted` and the heartbeat are bookkeeping on the job and the worker,
 * done here; `call` goes to the host-call bridge and `done` to pool-core.ts.
 */
import type { Logger } from '../observe/logger';
import { OVERDUE_MARGIN_MS, detach } from './job';
import type { Job, PoolWorker } from './job';
import { isWorkerMessage } from './wire';
import type {
  CallMessage,
  DoneMessage,
  PoolMessage,
  ReplyMessage,
  RunMessage,
  WorkerMessage,
} from './wire';

// Silent longer than this (two heartbeats) and heard again, a worker was stalled: its running
// invocations get the stalled time back on their deadlines (the runner answers theirs itself,
// naming the blocker; a cold start's compile does not count against its own).
const STALL_MS = 100;

/** What the transport hands on, and where it finds jobs. */
export interface TransportHooks {
  logger: Logger;
  /** An accepted job not yet answered, by id. */
  find(id: number): Job | undefined;
  /** A host call of a running job. */
  onCall(worker: PoolWorker, job: Job, message: CallMessage): void;
  /** A job's outcome. */
  onDone(worker: PoolWorker, job: Job, message: DoneMessage): void;
  /** A slot on `worker` is free. */
  next(worker: PoolWorker): void;
  kill(worker: PoolWorker, reason: string): void;
}

export class Transport {
  /** The first version each worker ran, and the workers that ran another one since (memory). */
  private readonly firstVersion = new WeakMap<PoolWorker, string>();
  private readonly mixed = new WeakSet<PoolWorker>();

  constructor(private readonly hooks: TransportHooks) {}

  /** Puts a job on a worker's list (its slot is taken) and sends it. */
  dispatch(worker: PoolWorker, job: Job): void {
    const first = this.firstVersion.get(worker);
    if (first === undefined) this.firstVersion.set(worker, job.version);
    else if (first !== job.version) this.mixed.add(worker);
    job.worker = worker;
    job.dispatchedAt = performance.now();
    worker.runningScripts.push(job);
    this.send(worker, job, !worker.known.has(job.version));
  }

  /** Whether a worker ran more than one function version (death-rules.ts: memory). */
  ranOtherVersions(worker: PoolWorker): boolean {
    return this.mixed.has(worker);
  }

  /** Answers a host call; a worker that is no longer healthy gets nothing. */
  reply(worker: PoolWorker, message: ReplyMessage): void {
    if (worker.state !== 'healthy') return;
    this.post(worker, message);
  }

  private send(worker: PoolWorker, job: Job, withSource: boolean): void {
    const message: RunMessage = {
      t: 'run',
      id: job.id,
      fn: job.name,
      v: job.version,
      ev: job.eventJson,
      rid: job.requestId,
      ms: job.timeoutMs,
    };
    if (job.contextJson !== undefined) message.x = job.contextJson;
    if (job.check) message.check = true;
    if (job.keep) message.keep = true;
    if (job.attempt !== undefined) message.n = job.attempt;
    if (withSource) {
      message.src = job.source;
      if (job.file !== undefined) message.file = job.file;
      worker.known.add(job.version);
    }
    this.post(worker, message);
  }

  private post(worker: PoolWorker, message: PoolMessage): void {
    worker.outbox.push(message);
    if (worker.outbox.length === 1) setImmediate(() => this.flush(worker));
  }

  /** One pipe write per worker per event-loop turn, for every message of that turn. */
  private flush(worker: PoolWorker): void {
    const batch = worker.outbox.splice(0);
    if (batch.length === 0 || worker.state !== 'healthy') return;
    try {
      worker.process.send(batch);
    } catch (err) {
      // The channel is already closed: its jobs move on when the pool sees it gone.
      this.hooks.logger.warn('send to worker failed', { pid: worker.process.pid, err });
    }
  }

  /** A batch from a worker (worker-process.ts hands on every one, unvalidated). */
  onBatch(worker: PoolWorker, batch: unknown): void {
    // One clock reading for the batch: a job's deadline and its worker's silence are measured
    // from the same instant.
    const now = performance.now();
    // Heard again after a stall (a long synchronous part, a loop the watchdog stopped): the
    // stalled time is not its invocations' to pay. Those whose own deadline passed meanwhile are
    // answered by the runner, naming the blocker; the rest get the time back here.
    const stalled = now - worker.lastHeard;
    if (stalled > STALL_MS) {
      for (const job of worker.runningScripts) if (job.started) job.execDeadline += stalled;
    }
    worker.lastHeard = now;
    if (Array.isArray(batch) && batch.every(isWorkerMessage)) {
      for (const message of batch) this.onMessage(worker, message, now);
      return;
    }
    this.hooks.logger.error('malformed message from a worker; killing it', {
      pid: worker.process.pid,
    });
    this.hooks.kill(worker, 'malformed message');
  }

  private onMessage(worker: PoolWorker, message: WorkerMessage, now: number): void {
    if (message.t === 'beat') return;
    if (message.t === 'evicted') {
      for (const version of message.v) worker.known.delete(version);
      return;
    }
    if (message.t === 'ready') return;
    // A job the pool already answered (504 past its deadline) keeps its slot on the worker until
    // the worker reports it: look on the worker too, not only among the unsettled jobs.
    const job =
      this.hooks.find(message.id) ?? worker.runningScripts.find((j) => j.id === message.id);
    if (!job || job.worker !== worker) return;
    switch (message.t) {
      case 'start':
        job.started = true;
        // The worker answers its own deadlines; this one is for when it cannot.
        job.execDeadline = now + job.timeoutMs + OVERDUE_MARGIN_MS;
        return;
      case 'call':
        return this.hooks.onCall(worker, job, message);
      case 'miss':
        worker.known.delete(job.version);
        if (!job.settled) return this.send(worker, job, true);
        detach(job);
        return this.hooks.next(worker);
      case 'done':
        return this.hooks.onDone(worker, job, message);
    }
  }
}
