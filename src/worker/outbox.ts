/**
 * The worker's messages to the pool (../pool/wire.ts), over the IPC channel. `send` writes a
 * batch at once; `post` queues a message for the next flush, one write per turn of the event
 * loop. Versions the warm set dropped (`noteEvicted`) ride along with the next flush.
 */
import type { WorkerMessage } from '../pool/wire';

/** Sends a batch of messages as one IPC message: one write instead of one per message. */
export function send(messages: WorkerMessage[], callback?: () => void): void {
  if (!process.connected) return;
  process.send?.(messages, undefined, {}, callback);
}

const outbox: WorkerMessage[] = [];
const evicted: string[] = [];
let flushScheduled = false;

/**
 * Queues a message for the next flush, which runs after the current macrotask and every
 * microtask it left behind (setImmediate). So a function that returns but leaves an endless
 * microtask chain never gets its `done` out: it times out, and its worker is replaced, instead
 * of answering while the worker hangs.
 */
export function post(message: WorkerMessage): void {
  outbox.push(message);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(() => {
    flushScheduled = false;
    if (evicted.length > 0) outbox.push({ t: 'evicted', v: evicted.splice(0) });
    send(outbox.splice(0));
  });
}

/** A version this worker no longer holds: the pool hears of it with the next flush. */
export function noteEvicted(version: string): void {
  evicted.push(version);
}
