/**
 * The pool's centre: it builds the parts and moves each job between them. A job is admitted
 * (admission.ts), queued on its lane (shared-lane.ts; solo-lane.ts for a quarantined function),
 * sent to a worker (transport.ts), and then answered from the worker's `done`, run again, or
 * failed, as death-rules.ts says when its worker breaks; its host calls go through
 * host-call-bridge.ts. It also owns the quarantine (quarantine.ts: the strikes and clean runs
 * death-rules.ts names) and the shutdown: fail what waits, kill every worker, fail what is left.
 */
import { ShuttingDownError } from '../errors';
import { Admission, waitAllowance } from './admission';
import { answerVerdict, deathVerdicts } from './death-rules';
import type { WorkerDeath } from './death-rules';
import { HostCallBridge } from './host-call-bridge';
import { detach, safetyDeadline } from './job';
import type { Invocation, InvocationResult, Job, PoolWorker, RerunReason } from './job';
import { Quarantine } from './quarantine';
import type { PoolOptions } from './sandbox-pool';
import { SharedLane } from './shared-lane';
import { SoloLane } from './solo-lane';
import { Transport } from './transport';
import type { DoneMessage } from './wire';
import { killWorker, spawnWorker } from './worker-process';

/** PoolOptions with the facade's defaults applied. */
export type ResolvedOptions = Required<
  Omit<PoolOptions, 'confinement' | 'onCall' | 'onQuarantine'>
> &
  Pick<PoolOptions, 'confinement' | 'onCall' | 'onQuarantine'>;

const shuttingDown = () => new ShuttingDownError('the server is shutting down');

export class PoolCore {
  closing = false;
  readonly quarantine: Quarantine;
  readonly shared: SharedLane;
  readonly solo: SoloLane;
  private readonly admission: Admission;
  private readonly transport: Transport;
  private readonly bridge: HostCallBridge;

  constructor(private readonly opts: ResolvedOptions) {
    const { logger } = opts;
    const closing = () => this.closing;
    const dispatch = (worker: PoolWorker, job: Job) => this.transport.dispatch(worker, job);
    const kill = (worker: PoolWorker, reason: string) => this.kill(worker, reason);
    this.quarantine = new Quarantine(opts.quarantineCleanRuns, (entry, event) => {
      const log = event === 'lifted' || event === 'replaced' ? 'info' : 'warn';
      logger[log](`function ${event === 'struck again' ? 'broke a worker again' : event}`, {
        fn: entry.name,
        version: entry.version,
        reason: entry.reason,
        cleanRuns: entry.cleanRuns,
      });
      opts.onQuarantine?.(entry, event);
    });
    this.shared = new SharedLane(opts, {
      spawn: (slot) => this.spawn('shared', slot),
      dispatch,
      closing,
    });
    this.solo = new SoloLane(opts, { spawn: () => this.spawn('solo'), dispatch, closing });
    this.admission = new Admission(opts, {
      sharedQueue: () => this.shared.queue,
      unqueue: (job) => (job.lane === 'shared' ? this.shared : this.solo).unqueue(job),
      workers: () => this.allWorkers(),
      kill,
    });
    this.transport = new Transport({
      logger,
      find: (id) => this.admission.find(id),
      onCall: (worker, job, message) => this.bridge.call(worker, job, message),
      onDone: (worker, job, message) => this.onDone(worker, job, message),
      next: (worker) => this.next(worker),
      kill,
    });
    this.bridge = new HostCallBridge(opts.onCall, logger, (worker, message) =>
      this.transport.reply(worker, message),
    );
  }

  confine(confinement: PoolOptions['confinement']): void {
    this.opts.confinement = confinement;
  }

  /** Every live worker, shared and solo. */
  allWorkers(): PoolWorker[] {
    const { shared, solo } = this;
    return solo.workers.length === 0 ? shared.workers : [...shared.workers, ...solo.workers];
  }

  /** Queues one invocation; it settles exactly once, whatever happens to its worker. */
  submit(invocation: Invocation): Promise<InvocationResult> {
    if (this.closing) return Promise.reject(shuttingDown());
    const refused = this.admission.refuse(invocation);
    if (refused) return Promise.reject(refused);
    const { name, version } = invocation;
    const quarantined = this.quarantine.size > 0 && this.quarantine.holds(name, version);
    const full = quarantined ? this.solo.refuse(name) : undefined;
    if (full) return Promise.reject(full);
    return new Promise<InvocationResult>((resolve, reject) => {
      const job = this.admission.accept(invocation, quarantined, resolve, reject);
      const lane = quarantined ? this.solo : this.shared;
      lane.push(job);
      lane.execute();
    });
  }

  private spawn(lane: 'shared' | 'solo', slot = -1): Promise<PoolWorker> {
    const { isolation, warmContexts, maxResultBytes, maxStartupMs, confinement, logger } =
      this.opts;
    return spawnWorker<Job>(
      { lane, slot, isolation, warmContexts, maxResultBytes, maxStartupMs, confinement, logger },
      {
        closing: () => this.closing,
        onBatch: (worker, batch) => this.transport.onBatch(worker, batch),
        onGone: (worker) => this.onWorkerGone(worker),
        onExit: (reason) => this.opts.onWorkerExit(reason),
      },
    );
  }

  /** An invocation's outcome from its worker: answered, or run again (death-rules.ts). */
  private onDone(worker: PoolWorker, job: Job, message: DoneMessage): void {
    detach(job);
    const verdict = answerVerdict(job, message);
    if (verdict.strike !== undefined) this.quarantine.strike(job.name, job.version, verdict.strike);
    else if (verdict.clean) this.quarantine.clean(job.name, job.version);
    if (verdict.rerun) {
      this.rerun(job, 'blocked');
      return this.next(worker);
    }
    this.admission.answer(job, {
      outcome: verdict.outcome,
      cold: message.cold,
      queueMs: job.dispatchedAt - job.enqueuedAt,
      execMs: message.ms,
      logs: message.logs ?? [],
      effects: job.effects,
      reruns: job.reruns,
      solo: job.lane !== 'shared',
    });
    this.next(worker);
  }

  /** A slot on `worker` is free: its lane hands out queued work. */
  private next(worker: PoolWorker): void {
    if (worker.lane === 'shared') this.shared.execute();
    else this.solo.next(worker);
  }

  /**
   * Runs a started job again (docs/spec.md §3: only one that made no effect): `suspect` alone on
   * the solo lane, `blocked` on a shared worker, with a fresh timeout and a fresh allowance to wait.
   */
  private rerun(job: Job, reason: RerunReason): void {
    const now = performance.now();
    const wait = waitAllowance(this.opts.queueTimeoutMs, reason === 'suspect');
    job.reruns++;
    job.started = false;
    job.worker = undefined;
    job.calls = undefined;
    job.dispatchedAt = 0;
    job.execDeadline = Infinity;
    job.queueDeadline = now + wait;
    job.safetyDeadline = safetyDeadline(now, wait, job.timeoutMs);
    this.opts.onRerun(reason);
    if (reason === 'suspect' && job.lane === 'shared') job.lane = 'suspect';
    if (job.lane === 'shared') this.shared.requeue(job);
    else this.solo.push(job);
  }

  /**
   * The worker's channel closed: it is gone, and every message it sent has been read
   * (worker-process.ts). Each of its jobs is answered, queued again or run again alone, as
   * death-rules.ts says; then the lanes hand out what they can, and a shared worker's
   * replacement is started.
   */
  private onWorkerGone(worker: PoolWorker): void {
    if (worker.gone) return;
    worker.gone = true;
    worker.state = 'unhealthy';
    const solo = worker.lane === 'solo';
    if (solo) this.solo.remove(worker);
    else this.shared.remove(worker);
    const now = performance.now();
    const death: WorkerDeath = {
      exit: worker.exitReason ?? 'crash',
      solo,
      mixed: this.transport.ranOtherVersions(worker),
      closing: this.closing,
      now,
    };
    const jobs = worker.runningScripts.splice(0);
    const verdicts = deathVerdicts(death, jobs);
    const requeue: Job[] = [];
    jobs.forEach((job, i) => {
      job.worker = undefined;
      const verdict = verdicts[i];
      if (verdict.action === 'requeue') requeue.push(job);
      else if (verdict.action === 'rerun-alone') this.rerun(job, 'suspect');
      else if (verdict.action === 'fail') {
        if (verdict.strike !== undefined) {
          this.quarantine.strike(job.name, job.version, verdict.strike);
        }
        this.admission.fail(job, verdict.error);
      }
    });
    // Never started, so never run: safe to run elsewhere, ahead of newer work, with a fresh
    // allowance to find a worker.
    for (const job of requeue) job.queueDeadline = now + this.opts.queueTimeoutMs;
    if (solo) this.solo.requeue(...requeue);
    else this.shared.requeue(...requeue);
    if (this.closing) return;
    // The survivors take what they can now; the replacement takes the rest when it is up.
    if (!solo) {
      this.shared.execute();
      this.shared.refill();
    }
    this.solo.execute();
  }

  /** Kills a worker; a shared one's replacement starts now. */
  private kill(worker: PoolWorker, reason: string): void {
    if (worker.lane === 'shared') this.shared.kill(worker, reason);
    else killWorker(worker, reason);
  }

  /** Waits for every accepted job to settle, at most `graceMs`. */
  drain(graceMs: number): Promise<void> {
    return this.admission.drain(graceMs);
  }

  /** Kills every worker and waits for them to exit; jobs still pending get SHUTTING_DOWN. */
  async shutdown(): Promise<void> {
    for (const job of [...this.shared.takeQueue(), ...this.solo.takeQueue()]) {
      this.admission.fail(job, shuttingDown());
    }
    const everyWorker = this.allWorkers();
    const exits = everyWorker.map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.process.exitCode !== null || worker.process.signalCode !== null) {
            return resolve();
          }
          worker.process.once('exit', () => resolve());
        }),
    );
    for (const worker of everyWorker) worker.killReason ??= 'shutdown';
    for (const worker of [...this.solo.workers]) this.solo.retire(worker, 'shutdown');
    await this.shared.stop();
    await Promise.all(exits);
    this.admission.failAll(shuttingDown);
  }
}
