/**
 * The versions this worker holds (their source, and in warm mode their sandbox), least recently
 * used first, at most `warmLimit` of them. The limit is sized by memory, not only by WARM_CONTEXTS:
 * a context costs ~250–300 KB of heap (a V8 context, vm2's bridge, our envelope and globals: see
 * `contextBytes`), so the worker keeps as many as fit in WARM_HEAP_SHARE of its heap limit
 * (WORKER_MEMORY_MB), at most WARM_CONTEXTS (`warmCap`). Past PRESSURE_SHARE of the heap in use
 * (functions' own data grows, or the estimate was low) the limit shrinks by a tenth, then holds for
 * a while (`calm` cold starts) and grows back by one per cold start without pressure. A shrink, not
 * "evict until the heap is under": the heap in use counts garbage until the next collection, so
 * that loop emptied the cache on every cold start (what made 256 functions round-robin cost ~7 ms
 * of a worker per call); shrinks in a row, before a collection shows their effect, did the same.
 */
import vm from 'node:vm';
import v8 from 'node:v8';
import { VMScript } from 'vm2';
import { options } from './options';
import { noteEvicted } from './outbox';
import { makeShell } from './shells';
import type { Sandbox, Shell } from './shells';

/** A version this worker holds: its source, and in warm mode its sandbox once compiled. */
export interface Version {
  source: string;
  /** The file name in stacks and errors, e.g. `a/b.ts`. */
  file: string;
  sandbox?: Sandbox;
}

/** Least recently used first (a Map keeps insertion order; a hit re-inserts). */
const versions = new Map<string, Version>();

/** The version held under `key` (the pool's version id), if this worker holds it. */
export function versionOf(key: string): Version | undefined {
  return versions.get(key);
}

// Shares of V8's heap_size_limit, which is WORKER_MEMORY_MB of old space plus the young generation.
const WARM_HEAP_SHARE = 0.3;
const PRESSURE_SHARE = 0.6;
// The heap is read at every cold start and every this many warm calls (reading it costs ~2 µs).
const PRESSURE_EVERY = 64;
let warmCap = options.warmContexts;
let warmLimit = warmCap;
let callsSinceCheck = 0;
let calm = 0;

/**
 * The heap one more warm version takes, measured once at start (after the first shell, which
 * also pays for compiling our own scripts): shells with a small function loaded in each,
 * between two full collections (V8's `gc`, borrowed for this and put away before any sandbox
 * exists, so no function ever sees it). At least 64 KB, at most 4 MB.
 */
function contextBytes(): number {
  let gc: (() => void) | undefined;
  try {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  } catch {
    gc = undefined;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  const probes = 3;
  const kept: Shell[] = [];
  gc?.();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < probes; i++) {
    const shell = makeShell();
    const completion = shell.sandboxVm.run(
      new VMScript(`let n = 0; module.exports = (event) => ({ n: ++n, at: ${i} });`, 'probe.js'),
    );
    shell.load(completion, shell.attachServices);
    kept.push(shell);
  }
  gc?.();
  const bytes = (process.memoryUsage().heapUsed - before) / probes;
  kept.length = 0;
  return Math.min(4 * 2 ** 20, Math.max(64 * 1024, bytes));
}

/** Sets `warmLimit` from the heap limit and the measured cost of a context (once, at start). */
export function sizeWarmSet(): void {
  if (options.isolation !== 'warm') return;
  const budget = v8.getHeapStatistics().heap_size_limit * WARM_HEAP_SHARE;
  warmCap = Math.max(1, Math.min(options.warmContexts, Math.floor(budget / contextBytes())));
  warmLimit = warmCap;
}

/**
 * Keeps `key` as the most recent version, then evicts down to the warm limit. The heap is checked
 * when a context was just made (`cold`) and every PRESSURE_EVERY calls.
 *
 * The victim is a random one of the least recently used three quarters, not the least recently
 * used itself: with more versions called in turn than fit, strict LRU evicts each version just
 * before its next call and no call is ever warm (the cliff), while this keeps a share of them
 * warm (simulated: 400 versions in turn over 360 places, 75 % warm calls against 0 %; 500, 40 %)
 * and costs a Zipf-shaped workload 1–3 points of hits.
 */
export function remember(key: string, version: Version, cold: boolean): void {
  versions.delete(key);
  versions.set(key, version);
  if (cold || ++callsSinceCheck >= PRESSURE_EVERY) {
    callsSinceCheck = 0;
    if (calm > 0) calm -= cold ? 1 : 0;
    else if (underPressure()) {
      warmLimit = Math.max(1, Math.floor(Math.min(warmLimit, versions.size) * 0.9));
      calm = Math.max(8, warmLimit >> 3);
    } else if (cold && warmLimit < warmCap) warmLimit++;
  }
  while (versions.size > warmLimit) {
    const keys = versions.keys();
    let skip = Math.floor(Math.random() * Math.max(1, Math.floor((versions.size - 1) * 0.75)));
    while (skip-- > 0) keys.next();
    const victim = keys.next().value as string;
    if (victim === key) break;
    versions.delete(victim);
    noteEvicted(victim);
  }
}

function underPressure(): boolean {
  const { used_heap_size, heap_size_limit } = v8.getHeapStatistics();
  return used_heap_size > heap_size_limit * PRESSURE_SHARE;
}
