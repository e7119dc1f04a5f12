/**
 * A steady load through the balancer: `workers` loops, each sending one request at a time over
 * keep-alive connections (as a client pool does), every request bounded by `timeoutMs`. Each
 * answer is kept as a sample, with the replica that served it (HAProxy's `X-Served-By`), so a
 * test can say which requests failed, where, and when.
 */
import http from 'node:http';
import { sleep } from '../support/wait';
import { call } from './cluster';

export interface Sample {
  /** Its X-Request-Id (HAProxy logs it). */
  id: string;
  route: string;
  /** performance.now() when it was sent and when it ended. */
  started: number;
  ended: number;
  status?: number;
  text?: string;
  /** The HAProxy server that answered (empty for the balancer's own answers without one). */
  servedBy?: string;
  /** A network error or a timeout (no answer within the bound). */
  error?: string;
}

export interface LoadOptions {
  port: number;
  /** Paths, sent in turn by each loop. */
  routes: string[];
  workers?: number;
  /** Pause after each answer, ms (keeps the load steady rather than saturating 2 cores). */
  pauseMs?: number;
  timeoutMs?: number;
}

export class SteadyLoad {
  readonly samples: Sample[] = [];
  #running = false;
  #loops: Promise<void>[] = [];
  readonly #agent: http.Agent;
  readonly #tag = Math.random().toString(36).slice(2, 8);

  constructor(private readonly options: LoadOptions) {
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: options.workers ?? 4 });
  }

  start(): this {
    this.#running = true;
    for (let w = 0; w < (this.options.workers ?? 4); w++) this.#loops.push(this.#loop(w));
    return this;
  }

  async #loop(offset: number): Promise<void> {
    const { routes, port } = this.options;
    for (let i = offset; this.#running; i++) {
      const route = routes[i % routes.length];
      const id = `load-${this.#tag}-${offset}-${i}`;
      const sample: Sample = { id, route, started: performance.now(), ended: 0 };
      try {
        const reply = await call(port, 'GET', route, {
          headers: { 'X-Request-Id': id },
          agent: this.#agent,
          timeoutMs: this.options.timeoutMs ?? 5000,
        });
        sample.status = reply.status;
        sample.text = reply.text;
        sample.servedBy = String(reply.headers['x-served-by'] ?? '');
      } catch (err) {
        sample.error = (err as Error).message;
      }
      sample.ended = performance.now();
      this.samples.push(sample);
      await sleep(this.options.pauseMs ?? 10);
    }
  }

  /** Stops sending; resolves with every sample once the requests in flight have ended. */
  async stop(): Promise<Sample[]> {
    this.#running = false;
    await Promise.all(this.#loops);
    this.#agent.destroy();
    return this.samples;
  }
}

/** A one-line description of samples, for assertion messages. */
export function describeSamples(samples: Sample[], limit = 8): string {
  return samples
    .slice(0, limit)
    .map(
      (s) =>
        `${s.id} ${s.route} → ${s.error ?? `${s.status} ${(s.text ?? '').slice(0, 120)}`} ` +
        `[${s.servedBy ?? '?'}] at ${Math.round(s.started)}–${Math.round(s.ended)}`,
    )
    .join('; ');
}
