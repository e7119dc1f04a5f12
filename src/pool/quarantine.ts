/**
 * Quarantine (docs/spec.md §3 "At most once, unless it cannot matter"): the function versions that broke
 * a worker — ran it out of memory, held its event loop past the timeout, or killed it while
 * running alone — and so run only alone (the pool's solo lane: one invocation at a time, on a
 * worker no other function shares) until they have run cleanly `cleanRunsNeeded` times in a row,
 * or a new version of the function is deployed. This file is the bookkeeping: death-rules.ts
 * decides what a strike and a clean run are, solo-lane.ts runs the invocations.
 */

/** One quarantined function version, as /_/functions shows it. */
export interface QuarantineEntry {
  name: string;
  version: string;
  /** When it last broke a worker (ISO 8601). */
  since: string;
  /** What it did, e.g. `its worker ran out of memory (WORKER_MEMORY_MB)`. */
  reason: string;
  /** Invocations of this version that broke a worker. */
  strikes: number;
  /** Clean runs since the last strike; the quarantine lifts at `cleanRunsNeeded`. */
  cleanRuns: number;
  cleanRunsNeeded: number;
}

/** What changed: told to the pool's owner (logs, metrics). */
export type QuarantineEvent = 'quarantined' | 'struck again' | 'lifted' | 'replaced' | 'forgotten';

export class Quarantine {
  private readonly entries = new Map<string, QuarantineEntry>();

  /**
   * @param cleanRunsNeeded clean runs in a row that lift a quarantine (≥ 1).
   * @param onChange told of every change, after it is made.
   */
  constructor(
    private readonly cleanRunsNeeded: number,
    private readonly onChange: (entry: QuarantineEntry, event: QuarantineEvent) => void,
  ) {}

  /** Quarantined function versions now. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Whether invocations of this version must run alone. A call of another version of the same
   * function means a new version was deployed: the old one's quarantine ends.
   */
  holds(name: string, version: string): boolean {
    const entry = this.entries.get(name);
    if (entry === undefined) return false;
    if (entry.version === version) return true;
    this.entries.delete(name);
    this.onChange(entry, 'replaced');
    return false;
  }

  /** An invocation of this version broke a worker: quarantine it, or start its count again. */
  strike(name: string, version: string, reason: string): void {
    const entry = this.entries.get(name);
    const since = new Date().toISOString();
    if (entry !== undefined && entry.version === version) {
      Object.assign(entry, { since, reason, cleanRuns: 0, strikes: entry.strikes + 1 });
      return this.onChange(entry, 'struck again');
    }
    const fresh: QuarantineEntry = {
      name,
      version,
      since,
      reason,
      strikes: 1,
      cleanRuns: 0,
      cleanRunsNeeded: this.cleanRunsNeeded,
    };
    this.entries.set(name, fresh);
    this.onChange(fresh, 'quarantined');
  }

  /** A quarantined invocation ran (or failed) without breaking its worker. */
  clean(name: string, version: string): void {
    const entry = this.entries.get(name);
    if (entry === undefined || entry.version !== version) return;
    entry.cleanRuns++;
    if (entry.cleanRuns < entry.cleanRunsNeeded) return;
    this.entries.delete(name);
    this.onChange(entry, 'lifted');
  }

  /** Ends the quarantine of a name that will not be called again (see SandboxPool.forgetQuarantine). */
  forget(name: string): void {
    const entry = this.entries.get(name);
    if (entry === undefined) return;
    this.entries.delete(name);
    this.onChange(entry, 'forgotten');
  }

  /** The entry of a function, if it is quarantined (any version). */
  get(name: string): Readonly<QuarantineEntry> | undefined {
    return this.entries.get(name);
  }
}
