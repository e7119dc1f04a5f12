/**
 * Affinity routing (affinity.ts), as a table: which worker an invocation goes to, by what the
 * workers hold, run and when they were last heard from.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BUSY_MS, pickWorker, rank, versionHash } from '../../src/pool/affinity';
import type { RoutedWorker } from '../../src/pool/affinity';

interface W extends RoutedWorker {
  name: string;
  full?: boolean;
}

const NOW = 10_000;
const CONCURRENCY = 4;

function worker(name: string, slot: number, opts: Partial<W> & { runs?: string[] } = {}): W {
  return {
    name,
    slot,
    lastHeard: opts.lastHeard ?? NOW,
    known: opts.known ?? new Set(),
    runningScripts: (opts.runs ?? []).map((version) => ({ version })),
    full: opts.full,
  };
}

const pick = (workers: W[], version: string) =>
  pickWorker(
    workers,
    version,
    NOW,
    (w) => !w.full && w.runningScripts.length < CONCURRENCY,
    (w) => w.runningScripts.length,
  )?.name;

/** The slot a version hashes to among slots 0 and 1, and the other one. */
function homeOf(version: string): [number, number] {
  const h = versionHash(version);
  return rank(h, 0) > rank(h, 1) ? [0, 1] : [1, 0];
}

void describe('pickWorker', () => {
  const v = 'a1b2c3d4e5f60718';
  const [home, away] = homeOf(v);
  const cases: { name: string; workers: W[]; expect: string | undefined }[] = [
    {
      name: 'a version no worker holds goes to its home, even when the home runs more',
      workers: [worker('away', away, {}), worker('home', home, { runs: ['x', 'y'] })],
      expect: 'home',
    },
    {
      name: 'a version held warm goes to the worker that holds it, not its home',
      workers: [
        worker('home', home, {}),
        worker('warm', away, { known: new Set([v]), runs: ['x', 'y', 'z'] }),
      ],
      expect: 'warm',
    },
    {
      name: 'held by both: the less loaded one',
      workers: [
        worker('a', home, { known: new Set([v]), runs: ['x', 'y'] }),
        worker('b', away, { known: new Set([v]), runs: ['x'] }),
      ],
      expect: 'b',
    },
    {
      name: 'its home full: the next worker (spill-over)',
      workers: [worker('home', home, { full: true }), worker('away', away, {})],
      expect: 'away',
    },
    {
      name: 'its warm worker busy in a long synchronous part: another one',
      workers: [
        worker('warm', home, { known: new Set([v]), lastHeard: NOW - BUSY_MS - 1 }),
        worker('other', away, {}),
      ],
      expect: 'other',
    },
    {
      name: 'every worker busy: still the warm one',
      workers: [
        worker('warm', home, { known: new Set([v]), lastHeard: NOW - BUSY_MS - 1 }),
        worker('other', away, { lastHeard: NOW - BUSY_MS - 1 }),
      ],
      expect: 'warm',
    },
    {
      name: 'the version already runs on its warm worker and another runs less: a second copy',
      workers: [
        worker('warm', home, { known: new Set([v]), runs: [v] }),
        worker('other', away, {}),
      ],
      expect: 'other',
    },
    {
      name: 'it runs there, but the other is as loaded: stays',
      workers: [
        worker('warm', home, { known: new Set([v]), runs: [v] }),
        worker('other', away, { runs: ['x'] }),
      ],
      expect: 'warm',
    },
    {
      name: 'no worker open: none',
      workers: [worker('a', 0, { full: true }), worker('b', 1, { full: true })],
      expect: undefined,
    },
  ];
  for (const c of cases) {
    void test(c.name, () => assert.equal(pick(c.workers, v), c.expect));
  }
});

void describe('rendezvous hashing', () => {
  const versions = Array.from({ length: 2000 }, (_, i) => versionHash(`version-${i}`));
  const home = (h: number, slots: number[]) =>
    slots.reduce((best, s) => (rank(h, s) > rank(h, best) ? s : best), slots[0]);

  for (const workers of [2, 3, 4, 8]) {
    const slots = Array.from({ length: workers }, (_, i) => i);
    void test(`${workers} workers: each gets a fair share of 2,000 versions (±25 %)`, () => {
      const counts = new Array<number>(workers).fill(0);
      for (const h of versions) counts[home(h, slots)]++;
      const fair = versions.length / workers;
      for (const c of counts) assert.ok(Math.abs(c - fair) < fair * 0.25, counts.join(','));
    });
    void test(`${workers} workers: losing one moves only its own versions`, () => {
      const left = slots.slice(0, -1);
      for (const h of versions) {
        const before = home(h, slots);
        if (before !== workers - 1) assert.equal(home(h, left), before);
      }
    });
  }
});
