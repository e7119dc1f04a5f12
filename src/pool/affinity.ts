/**
 * Affinity routing: which shared worker runs an invocation. A cold start (a new vm2 context and
 * the file's top level) costs ~3–6 ms of a worker's CPU, a warm call ~20–60 µs; so when every
 * worker may get every function, each worker ends up holding every hot function and the pool
 * keeps only `WARM_CONTEXTS` functions warm, not `WORKERS × WARM_CONTEXTS`: past that, with many
 * functions called in turn, every call is cold (9,115 → 598 req/s at 1,000 functions).
 *
 * So a version goes to the worker that holds it warm; a version no worker holds goes to its home,
 * chosen by rendezvous hashing (highest `rank(version, slot)`: stable while the pool keeps its
 * size, and a worker's death moves only its own share, which comes back to its replacement's
 * slot). It goes elsewhere (spill-over) only when waiting there would cost more than a cold
 * start elsewhere:
 * - its worker has no free slot (the next worker in the version's own rank order takes it, so a
 *   spilled version lands on the same second worker every time);
 * - its worker is busy in a long synchronous part (silent for two heartbeats) and another is not;
 * - the version already runs there and another worker runs fewer: a function called concurrently
 *   is hot enough to be worth a second warm copy, and it then spreads over both as before.
 * A difference in running invocations alone is no reason: they mostly wait on I/O or take tens
 * of µs each, far less than one cold start.
 */
import { HEARTBEAT_MS } from './wire';

/** What routing reads of a worker (a subset of the pool's WorkerProcess). */
export interface RoutedWorker {
  /** Its place in the pool (a replacement takes the slot of the worker it replaces). */
  slot: number;
  /** performance.now() when the pool last heard from it. */
  lastHeard: number;
  /** Versions it holds (the pool sent it the source and it did not evict them). */
  known: ReadonlySet<string>;
  /** Invocations running on it, answered or not (their slots are taken). */
  runningScripts: readonly { version: string }[];
}

// Silent this long (two missed heartbeats), a worker is in a long synchronous part.
export const BUSY_MS = 2 * HEARTBEAT_MS;

/** 32-bit FNV-1a of a version string: the version's half of its rank. */
export function versionHash(version: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < version.length; i++) {
    h ^= version.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A version's preference for a slot (rendezvous hashing): higher is preferred. */
export function rank(hash: number, slot: number): number {
  // murmur3's finalizer over the two halves: every bit of both moves the result.
  let h = (hash ^ Math.imul(slot + 1, 0x9e3779b1)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The worker an invocation of `version` goes to, among the `open` ones (healthy, with a free
 * slot); `load` is a worker's running count plus any penalty the pool adds. Undefined when none
 * is open. See the file's comment.
 */
export function pickWorker<W extends RoutedWorker>(
  workers: readonly W[],
  version: string,
  now: number,
  open: (worker: W) => boolean,
  load: (worker: W) => number,
): W | undefined {
  const hash = versionHash(version);
  let warm: W | undefined;
  let warmLoad = Infinity;
  let warmRank = -1;
  let home: W | undefined;
  let homeRank = -1;
  let least: W | undefined;
  let leastLoad = Infinity;
  let leastRank = -1;
  // The least loaded of those not busy in a long synchronous part.
  let calm: W | undefined;
  let calmLoad = Infinity;
  for (const worker of workers) {
    if (!open(worker)) continue;
    const l = load(worker);
    const r = rank(hash, worker.slot);
    if (l < leastLoad || (l === leastLoad && r > leastRank)) {
      least = worker;
      leastLoad = l;
      leastRank = r;
    }
    if (now - worker.lastHeard <= BUSY_MS && l < calmLoad) {
      calm = worker;
      calmLoad = l;
    }
    if (worker.known.has(version)) {
      if (l < warmLoad || (l === warmLoad && r > warmRank)) {
        warm = worker;
        warmLoad = l;
        warmRank = r;
      }
    } else if (r > homeRank) {
      home = worker;
      homeRank = r;
    }
  }
  const preferred = warm ?? home;
  if (preferred === undefined || least === undefined) return preferred;
  if (calm !== undefined && now - preferred.lastHeard > BUSY_MS) return calm;
  if (preferred !== least && preferred === warm && leastLoad < warmLoad && runs(warm, version)) {
    return least;
  }
  return preferred;
}

function runs(worker: RoutedWorker, version: string): boolean {
  for (const job of worker.runningScripts) if (job.version === version) return true;
  return false;
}
