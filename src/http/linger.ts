/**
 * Lingering close (docs/spec.md §3, 413: "the client receives this answer even while it is still
 * sending"), as nginx's lingering_close: after an answer sent before the request body was read
 * to its end, the server half-closes (its FIN follows the answer), then reads and discards what
 * the client still sends, within bounds, and only then closes.
 *
 * Why: a socket closed with unread bytes in its receive queue makes the kernel send RST instead
 * of FIN (RFC 9293 §3.6.1; RFC 9112 §9.6 asks servers to close in stages for this reason), and a
 * client that gets RST discards what it had received and not yet read: the 413 is lost and the
 * client sees EPIPE or ECONNRESET. Node's http server closes that way: an answer with
 * `Connection: close` ends in `socket.destroySoon()` (resOnFinish in node's lib/_http_server.js),
 * which destroys the socket as soon as the answer is written, whatever the client still sends.
 *
 * | outcome (`faas_lingering_closes_total`) | when                                               |
 * |-----------------------------------------|----------------------------------------------------|
 * | `drained`                               | the request body ended: closed cleanly (FIN only)  |
 * | `closed`                                | the client closed or reset the connection first    |
 * | `timeout`                               | LINGER_TIME_MS in all, or LINGER_IDLE_MS silent    |
 * | `bytes`                                 | more than LINGER_MAX_BYTES discarded               |
 *
 * After a bound the socket is destroyed with what is left unread (the client may then see a
 * reset): a slow or endless uploader cannot hold a socket, or our bandwidth, for long.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * At most 5 s of lingering in all. A client that reads while it sends (browsers, curl, Node's
 * http, undici) reads the answer one round trip after it was sent; the time is for clients that
 * read only when their write returns. nginx lingers up to 30 s (lingering_time), but it serves
 * files to anyone; a refused upload is not worth holding a socket that long.
 */
export const LINGER_TIME_MS = 5_000;
/**
 * At most 2 s without a byte: a client that stopped sending (it read the answer, or waits for
 * `100 Continue` that will not come) loses nothing when the socket closes, since nothing is left
 * unread. 2 s still outlasts a TCP retransmission (initial RTO 1 s, RFC 6298) of a stalled
 * sender. nginx's lingering_timeout is 5 s.
 */
export const LINGER_IDLE_MS = 2_000;
/**
 * At most 16 MiB discarded: what the kernels can hold in flight between the client's write and
 * our read with Linux's default socket buffers (tcp_wmem up to 4 MiB on the client, tcp_rmem up
 * to 6 MiB here), with room to spare, so a client that wrote its body in one call has it all
 * drained. Past that the client is making new bytes after it had the answer in hand, and each
 * refusal costs us at most this much bandwidth.
 */
export const LINGER_MAX_BYTES = 16 * 1024 * 1024;

export type LingerOutcome = 'drained' | 'closed' | 'timeout' | 'bytes';

/** Told once per lingering close, when it ends. */
export type LingerObserver = (outcome: LingerOutcome) => void;

/**
 * Makes the close after `res` a lingering one if, once `res` is written, the request body is
 * not read to its end and Node is about to close the connection (an answer with
 * `Connection: close`). Call it before the answer is written (before `res` finishes); it costs
 * a few listeners, and nothing when the request turns out complete. Bytes are counted from now:
 * listening for them also keeps Node from dumping the request (a dumped request's bytes are
 * dropped by the parser before anyone sees them).
 */
export function lingerAfter(
  req: IncomingMessage,
  res: ServerResponse,
  observe?: LingerObserver,
): void {
  let discarded = 0;
  let lingering = false;
  let ended = false;
  let total: NodeJS.Timeout | undefined;
  let idle: NodeJS.Timeout | undefined;
  const socket = req.socket;

  const end = (outcome: LingerOutcome) => {
    if (ended) return;
    ended = true;
    clearTimeout(total);
    clearTimeout(idle);
    req.off('data', onData).off('end', onEnd);
    socket.off('close', onClose);
    observe?.(outcome);
    if (outcome === 'timeout' || outcome === 'bytes') socket.destroy();
    // Drained: nothing is left unread, so closing sends no RST; wait for our FIN as Node would.
    else if (outcome === 'drained') socket.destroySoon();
  };
  const onData = (chunk: Buffer) => {
    discarded += chunk.length;
    if (!lingering) return;
    if (discarded > LINGER_MAX_BYTES) end('bytes');
    else idle?.refresh();
  };
  const onEnd = () => end('drained');
  const onClose = () => end('closed');

  // Runs after Node's own 'finish' listener (resOnFinish, added before the request reached us),
  // which has just ended our side and scheduled `socket.destroy` for when that FIN is written.
  res.once('finish', () => {
    const destroyScheduled = socket.listenerCount('finish');
    if (!req.complete && !socket.destroyed) socket.off('finish', socket.destroy);
    if (socket.listenerCount('finish') === destroyScheduled) {
      // Complete, already gone, or kept alive: Node's close (or keep-alive) is right.
      req.off('data', onData);
      return;
    }
    lingering = true;
    req.on('end', onEnd);
    socket.on('close', onClose);
    total = setTimeout(() => end('timeout'), LINGER_TIME_MS);
    idle = setTimeout(() => end('timeout'), LINGER_IDLE_MS);
    if (discarded > LINGER_MAX_BYTES) return end('bytes');
    // The body reader pauses a request it stops reading (body.ts readRaw): read on.
    req.resume();
  });
  req.on('data', onData);
}
