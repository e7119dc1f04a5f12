/**
 * A callback receiver for tests: an HTTP server on 127.0.0.1 that records each try per request id
 * and counts the connections it holds at once (src/async/callbacks.ts, docs/spec.md §9).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Receiver {
  server: http.Server;
  url: string;
  /** Connections open and not yet answered, now and at most. */
  open: number;
  maxOpen: number;
  /** Request ids answered 2xx. */
  delivered: Set<string>;
  /** When each request id's tries arrived, ms. */
  arrivals: Map<string, number[]>;
  /** Requests being held. */
  holds: Set<NodeJS.Timeout>;
}

/**
 * A receiver on 127.0.0.1 that holds each request `holdMs`, answers `status(id, try)` (1-based
 * try), and counts its connections: one is open from its `connection` event until its response
 * is sent or it closes, whichever is first (the sender's fetch gives each try its own connection).
 */
export async function startReceiver(
  holdMs: number,
  status: (id: string, attempt: number) => number = () => 200,
): Promise<Receiver> {
  const r = {
    open: 0,
    maxOpen: 0,
    delivered: new Set(),
    arrivals: new Map(),
    holds: new Set(),
  } as Receiver;
  /** Per connection: marks it done (once). */
  const live = new WeakMap<Socket, () => void>();
  r.server = http.createServer((req, res) => {
    const id = String(req.headers['x-request-id']);
    const times = r.arrivals.get(id) ?? [];
    times.push(Date.now());
    r.arrivals.set(id, times);
    // The response is sent: this connection's work for the sender is over.
    res.on('finish', () => live.get(req.socket)?.());
    req.resume();
    req.on('end', () => {
      const timer = setTimeout(() => {
        r.holds.delete(timer);
        const code = status(id, times.length);
        if (code >= 200 && code < 300) r.delivered.add(id);
        res.writeHead(code).end();
      }, holdMs);
      r.holds.add(timer);
    });
  });
  r.server.on('connection', (socket: Socket) => {
    let counted = true;
    r.open++;
    r.maxOpen = Math.max(r.maxOpen, r.open);
    const done = () => {
      if (!counted) return;
      counted = false;
      r.open--;
    };
    live.set(socket, done);
    socket.on('close', done);
  });
  await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(r.server.address() as AddressInfo).port}/hook`;
  return r;
}

export async function stopReceiver(r: Receiver | undefined): Promise<void> {
  if (!r) return;
  for (const timer of r.holds) clearTimeout(timer);
  r.server.closeAllConnections();
  await new Promise((resolve) => r.server.close(resolve));
}
