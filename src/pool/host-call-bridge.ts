/**
 * The host-call bridge (docs/spec.md §8 services): a running invocation's `call` message becomes
 * a HostCall for the server's `onCall`, and its answer goes back to the worker as a `reply`. The
 * call is attributed to the job the pool sent (its function, its request), never to what the
 * worker says. A call before its invocation started or after it was answered, or made while a
 * file loads, is refused; a service that fails or throws answers an error, never an exception
 * here.
 */
import type { Logger } from '../observe/logger';
import { OVERDUE_MARGIN_MS } from './job';
import type { Job, PoolWorker } from './job';
import type { CallMessage, ReplyMessage } from './wire';

/**
 * A service call made by a running invocation (worker → pool → server). The function and request
 * are the pool's own record of the invocation, never what the worker says.
 */
export interface HostCall {
  fn: string;
  requestId: string;
  /** e.g. `kv.get`, `fetch`. */
  op: string;
  /** Its arguments as JSON text, as the sandbox sent them (unvalidated). */
  args: string;
  /** Epoch ms by which the invocation must end: the call must answer before. */
  deadline: number;
  /** What this invocation has called so far, by op (this call not counted). */
  counts: ReadonlyMap<string, number>;
  /** Marks the invocation as having made an effect outside its sandbox (docs/spec.md §3, §8). */
  markEffect(): void;
}

/** The answer to a host call: the result as JSON text, or `{ name, message, code? }` JSON. */
export interface HostReply {
  ok: boolean;
  r: string;
}

export class HostCallBridge {
  /**
   * @param onCall serves the calls; without it every call is refused.
   * @param reply sends an answer to the worker (transport.ts).
   */
  constructor(
    private readonly onCall: ((call: HostCall) => Promise<HostReply>) | undefined,
    private readonly logger: Logger,
    private readonly reply: (worker: PoolWorker, message: ReplyMessage) => void,
  ) {}

  /** A host call of `job`, running on `worker`. */
  call(worker: PoolWorker, job: Job, message: CallMessage): void {
    const reply = (answer: HostReply) =>
      this.reply(worker, { t: 'reply', c: message.c, ok: answer.ok, r: answer.r });
    const { onCall, logger } = this;
    // A load (a check job) runs the file's top level, and may run again (a deploy's check, then
    // the first call; a joiner of a failed load): it must make no effect, so it gets no service.
    if (job.settled || !job.started || job.check || !onCall) {
      const why = !onCall
        ? 'services are not available'
        : job.check
          ? 'services are not available while the file loads (call them from the function)'
          : 'its invocation has ended';
      return reply({
        ok: false,
        r: JSON.stringify({ name: 'Error', message: `call refused: ${why}` }),
      });
    }
    job.calls ??= new Map();
    const counts = new Map(job.calls);
    job.calls.set(message.op, (job.calls.get(message.op) ?? 0) + 1);
    const call: HostCall = {
      fn: job.name,
      requestId: job.requestId,
      op: message.op,
      args: message.a,
      deadline: Math.floor(
        Date.now() + Math.max(0, job.execDeadline - OVERDUE_MARGIN_MS - performance.now()),
      ),
      counts,
      markEffect: () => {
        job.effects = true;
      },
    };
    onCall(call).then(reply, (err: unknown) => {
      logger.error('host call failed', { fn: job.name, op: message.op, err });
      reply({ ok: false, r: JSON.stringify({ name: 'Error', message: `${message.op} failed` }) });
    });
  }
}
