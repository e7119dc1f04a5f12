/**
 * The services function code reaches through `context` (docs/spec.md §8), built as one part: the
 * KV and secret stores (SQLite in DATA_DIR, or Redis with REDIS_URL), the egress policy of
 * `fetch`, and the handler of the host calls a worker sends for them.
 *
 *   open()           → the stores are open (admin /_/kv and /_/secrets answer)
 *   listening(addr)  → the egress policy knows the server's own address; host calls are served
 *   close()          → the stores and their connection are closed
 *
 * Before open() a store access fails with KV_UNAVAILABLE, and before listening() every host call
 * does: a call never waits for a part that is not there.
 */
import { KvUnavailableError } from '../errors';
import type { Logger } from '../observe/logger';
import { createEgressPolicy, parseEgressAllow } from './egress';
import type { EgressPolicy } from './egress';
import { hostCalls, servicesNotOpen } from './host-calls';
import type { CallObserver, HostCallHandler } from './host-calls';
import { createStores } from './kv';
import type { KvStore, Stores } from './kv';
import type { SecretStore } from './secrets';

export interface ServicesOptions {
  dataDir: string;
  redisUrl?: string;
  /** KV_MAX_VALUE, KV_MAX_BYTES (bytes). */
  kvMaxValue: number;
  kvMaxBytes: number;
  /** EGRESS, EGRESS_ALLOW, FETCH_MAX_BYTES. */
  egress: 'on' | 'off';
  egressAllow: readonly string[];
  fetchMaxBytes: number;
  logger: Logger;
  /** Told of every host call: op, backend, outcome, seconds. */
  observe?: CallObserver;
}

export class Services {
  readonly #options: ServicesOptions;
  #stores?: Stores;
  #egress?: EgressPolicy;
  /** Serves a worker's host call; KV_UNAVAILABLE until listening(). */
  serveCall: HostCallHandler = servicesNotOpen;

  constructor(options: ServicesOptions) {
    this.#options = options;
  }

  /** The KV store. @throws KvUnavailableError before open(). */
  get kv(): KvStore {
    return this.#open().kv;
  }

  /** The secret store. @throws KvUnavailableError before open(). */
  get secrets(): SecretStore {
    return this.#open().secrets;
  }

  /** The KV store if it is open (for /_/ready and /_/health, which answer without it). */
  get openKv(): KvStore | undefined {
    return this.#stores?.kv;
  }

  /** The egress policy. @throws KvUnavailableError before listening(). */
  get egress(): EgressPolicy {
    if (!this.#egress) throw new KvUnavailableError('the services are not open yet');
    return this.#egress;
  }

  /** The values of the named secrets (`context.secrets`). */
  readonly secretValues = (names: readonly string[]): Promise<Record<string, string>> =>
    this.secrets.values(names);

  /**
   * Opens the stores. @throws KvUnavailableError when the SQLite file cannot be opened. A Redis
   * that is down does not throw: calls fail with KV_UNAVAILABLE until it answers.
   */
  async open(): Promise<void> {
    this.#stores = await createStores(this.#options);
  }

  /** Serves host calls, with the server's own address refused to fetch even when public. */
  listening(address: { address: string; port: number }): void {
    const { egress: mode, egressAllow, fetchMaxBytes, logger, observe } = this.#options;
    this.#egress = createEgressPolicy({
      mode,
      allow: parseEgressAllow(egressAllow),
      ownAddresses: [address],
    });
    this.serveCall = hostCalls({
      kv: this.kv,
      egress: this.#egress,
      fetchMaxBytes,
      logger,
      observe,
    });
  }

  async close(): Promise<void> {
    await this.#stores?.close();
  }

  #open(): Stores {
    if (!this.#stores) throw new KvUnavailableError('the store is not open yet');
    return this.#stores;
  }
}
