/**
 * The death rules (src/pool/death-rules.ts) as tables: what a broken worker means for each
 * invocation on it (docs/spec.md §3). Pure: no processes, no server, no clock; part of the fast
 * tier, so it imports the pure module only.
 *
 * Two tables, because a worker breaks in two ways. It dies (its channel closes): every exit
 * reason × the job not started / started / started with an effect × where it ran (a solo worker,
 * alone on a shared one, beside another on a shared one), then the rows that turn on one more
 * fact (memory on a worker that ran another version, runs used up, a shutdown, an answered job).
 * Or its watchdog stops a loop and it answers on: blocker named (`by`) or not, the job's own loop
 * (`blk`), effect, runs left, lane. A named blocker only ever comes in a live worker's answer,
 * never with a death, so the two are not crossed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { answerVerdict, deathVerdicts } from '../../src/pool/death-rules';
import type {
  AnswerVerdict,
  DeathVerdict,
  JobFacts,
  WorkerDeath,
} from '../../src/pool/death-rules';

type Exit = WorkerDeath['exit'];
type JobState = 'not started' | 'started' | 'started, effect';
type Placement = 'solo' | 'shared, alone' | 'shared, beside another';

const NOW = 10_000;
// The decisions, as the rows name them.
const REQUEUE = 'queued again';
const RERUN_ALONE = 'run again alone (suspect)';
const CRASHED = '502 WORKER_CRASHED';
const CULPRIT_502 = '502 WORKER_CRASHED + quarantine';
const CULPRIT_504 = '504 FUNCTION_TIMEOUT + quarantine';
const SHUTTING_DOWN = '503 SHUTTING_DOWN';
const FORGET = 'nothing (answered already)';

function describeDeath(verdict: DeathVerdict): string {
  switch (verdict.action) {
    case 'forget':
      return FORGET;
    case 'requeue':
      return REQUEUE;
    case 'rerun-alone':
      return RERUN_ALONE;
    case 'fail': {
      const { statusCode, code } = verdict.error;
      return `${statusCode} ${code}${verdict.strike === undefined ? '' : ' + quarantine'}`;
    }
  }
}

/** A job in one of the three states; a started one is past its deadline unless told otherwise. */
function job(state: JobState, facts: Partial<JobFacts> = {}): JobFacts {
  return {
    name: 'suspect',
    timeoutMs: 1000,
    settled: false,
    started: state !== 'not started',
    effects: state === 'started, effect',
    reruns: 0,
    execDeadline: state === 'not started' ? Infinity : NOW,
    ...facts,
  };
}

/** The verdict on `subject`, on a worker that died `exit`, placed as the row says. */
function verdictOn(
  exit: Exit,
  placement: Placement,
  subject: JobFacts,
  death: Partial<WorkerDeath> = {},
): DeathVerdict {
  const neighbour = job('started', { name: 'neighbour' });
  const jobs = placement === 'shared, beside another' ? [subject, neighbour] : [subject];
  const verdicts = deathVerdicts(
    { exit, solo: placement === 'solo', mixed: false, closing: false, now: NOW, ...death },
    jobs,
  );
  assert.equal(verdicts.length, jobs.length, 'one verdict per job');
  return verdicts[0];
}

describe('a worker dies: the verdict on each invocation that was on it', () => {
  const table: [Exit, Placement, JobState, string][] = [
    // The pool killed it for a blocked loop (silent past the timeout).
    ['timeout', 'solo', 'not started', REQUEUE],
    ['timeout', 'solo', 'started', CULPRIT_504],
    ['timeout', 'solo', 'started, effect', CULPRIT_504],
    ['timeout', 'shared, alone', 'not started', REQUEUE],
    ['timeout', 'shared, alone', 'started', CULPRIT_504],
    ['timeout', 'shared, alone', 'started, effect', CULPRIT_504],
    ['timeout', 'shared, beside another', 'not started', REQUEUE],
    ['timeout', 'shared, beside another', 'started', RERUN_ALONE],
    ['timeout', 'shared, beside another', 'started, effect', CRASHED],
    // The pool killed it for another reason (a malformed message, a safety deadline).
    ['unresponsive', 'solo', 'not started', REQUEUE],
    ['unresponsive', 'solo', 'started', CULPRIT_502],
    ['unresponsive', 'solo', 'started, effect', CULPRIT_502],
    ['unresponsive', 'shared, alone', 'not started', REQUEUE],
    ['unresponsive', 'shared, alone', 'started', RERUN_ALONE],
    ['unresponsive', 'shared, alone', 'started, effect', CRASHED],
    ['unresponsive', 'shared, beside another', 'not started', REQUEUE],
    ['unresponsive', 'shared, beside another', 'started', RERUN_ALONE],
    ['unresponsive', 'shared, beside another', 'started, effect', CRASHED],
    // It ran out of memory (alone on a shared worker that never ran another version: its own).
    ['memory', 'solo', 'not started', REQUEUE],
    ['memory', 'solo', 'started', CULPRIT_502],
    ['memory', 'solo', 'started, effect', CULPRIT_502],
    ['memory', 'shared, alone', 'not started', REQUEUE],
    ['memory', 'shared, alone', 'started', CULPRIT_502],
    ['memory', 'shared, alone', 'started, effect', CULPRIT_502],
    ['memory', 'shared, beside another', 'not started', REQUEUE],
    ['memory', 'shared, beside another', 'started', RERUN_ALONE],
    ['memory', 'shared, beside another', 'started, effect', CRASHED],
    // It crashed, or was killed from outside: on a shared worker that blames no one.
    ['crash', 'solo', 'not started', REQUEUE],
    ['crash', 'solo', 'started', CULPRIT_502],
    ['crash', 'solo', 'started, effect', CULPRIT_502],
    ['crash', 'shared, alone', 'not started', REQUEUE],
    ['crash', 'shared, alone', 'started', RERUN_ALONE],
    ['crash', 'shared, alone', 'started, effect', CRASHED],
    ['crash', 'shared, beside another', 'not started', REQUEUE],
    ['crash', 'shared, beside another', 'started', RERUN_ALONE],
    ['crash', 'shared, beside another', 'started, effect', CRASHED],
  ];
  for (const [exit, placement, state, expected] of table) {
    test(`${exit}, ${placement}, ${state}: ${expected}`, () => {
      assert.equal(describeDeath(verdictOn(exit, placement, job(state))), expected);
    });
  }

  const more: [string, () => DeathVerdict, string][] = [
    [
      'memory, alone on a shared worker that ran another version (its memory may not be its own)',
      () => verdictOn('memory', 'shared, alone', job('started'), { mixed: true }),
      RERUN_ALONE,
    ],
    [
      'memory, alone on a shared worker that ran another version, with an effect',
      () => verdictOn('memory', 'shared, alone', job('started, effect'), { mixed: true }),
      CRASHED,
    ],
    [
      'timeout, solo, started, its own deadline not passed yet',
      () => verdictOn('timeout', 'solo', job('started', { execDeadline: NOW + 500 })),
      CULPRIT_502,
    ],
    [
      'crash, beside another, started, ran again once already',
      () => verdictOn('crash', 'shared, beside another', job('started', { reruns: 1 })),
      RERUN_ALONE,
    ],
    [
      'crash, beside another, started, ran again twice already (no runs left)',
      () => verdictOn('crash', 'shared, beside another', job('started', { reruns: 2 })),
      CRASHED,
    ],
    [
      'shutting down, not started',
      () => verdictOn('crash', 'shared, alone', job('not started'), { closing: true }),
      SHUTTING_DOWN,
    ],
    [
      'shutting down, started',
      () => verdictOn('crash', 'shared, beside another', job('started'), { closing: true }),
      CRASHED,
    ],
    [
      'shutting down, started alone on a solo worker (no one is quarantined)',
      () => verdictOn('timeout', 'solo', job('started'), { closing: true }),
      CRASHED,
    ],
    [
      'answered already (504 past its deadline), its slot still taken',
      () => verdictOn('timeout', 'shared, alone', job('started', { settled: true })),
      FORGET,
    ],
  ];
  for (const [name, verdict, expected] of more) {
    test(`${name}: ${expected}`, () => assert.equal(describeDeath(verdict()), expected));
  }

  test('an answered job still holds its slot: its neighbour was not alone', () => {
    const verdicts = deathVerdicts(
      { exit: 'timeout', solo: false, mixed: false, closing: false, now: NOW },
      [job('started', { settled: true }), job('started')],
    );
    assert.deepEqual(verdicts.map(describeDeath), [FORGET, RERUN_ALONE]);
  });

  test('the answers say what happened, and the strike why', () => {
    const blocked = verdictOn('timeout', 'solo', job('started'));
    assert.equal(blocked.action, 'fail');
    assert.match(blocked.error.message, /^function 'suspect' exceeded its 1000 ms timeout: /);
    assert.match(blocked.error.message, /blocked its worker's event loop.*quarantined/);
    assert.match(blocked.strike ?? '', /blocked its worker's event loop/);
    const bomb = verdictOn('memory', 'solo', job('started'));
    assert.equal(bomb.action, 'fail');
    assert.match(bomb.error.message, /ran out of memory .* while running it alone.*quarantined/);
    assert.equal(bomb.strike, 'its worker ran out of memory (WORKER_MEMORY_MB) (it ran alone)');
    const neighbour = verdictOn('crash', 'shared, beside another', job('started, effect'));
    assert.equal(neighbour.action, 'fail');
    assert.equal(neighbour.error.message, "the worker running 'suspect' crashed or was killed");
    assert.equal(neighbour.strike, undefined);
  });
});

describe("a worker's watchdog stops a loop: the verdict on its answer", () => {
  type Answer = { r: string; blk?: boolean; by?: string };
  type Subject = Partial<JobFacts> & { lane?: 'shared' | 'quarantined' };
  const T = 'Tfunction timed out';
  // A rerun stays on its lane: a shared job runs again on a shared worker, with a fresh timeout.
  const RERUN = 'run again';
  const AS_SAID = 'answer as the worker said';
  const NAMED_504 =
    "answer Tfunction 'suspect' could not finish within its 1000 ms timeout: its worker was " +
    "blocked by function 'hog'";
  const describeAnswer = (verdict: AnswerVerdict, answer: Answer): string => {
    const what = verdict.rerun
      ? RERUN
      : verdict.outcome === answer.r
        ? AS_SAID
        : `answer ${verdict.outcome}`;
    return `${what}${verdict.strike ? ' + quarantine' : ''}${verdict.clean ? ' + clean run' : ''}`;
  };
  const table: [string, Subject, Answer, string][] = [
    ['blocker named, no effect', {}, { r: T, by: 'hog' }, RERUN],
    ['blocker named, ran again once', { reruns: 1 }, { r: T, by: 'hog' }, RERUN],
    ['blocker named, no runs left', { reruns: 2 }, { r: T, by: 'hog' }, NAMED_504],
    ['blocker named, effect', { effects: true }, { r: T, by: 'hog' }, NAMED_504],
    ['blocker named, answered already', { settled: true }, { r: T, by: 'hog' }, AS_SAID],
    ['blocker named, but it did not time out', {}, { r: 'Sdone', by: 'hog' }, AS_SAID],
    ['no blocker named: its own timeout', {}, { r: T }, AS_SAID],
    ['no blocker named: a plain answer', {}, { r: 'Sdone' }, AS_SAID],
    ['its own loop (blk)', {}, { r: T, blk: true }, `${AS_SAID} + quarantine`],
    [
      'its own loop, with an effect',
      { effects: true },
      { r: T, blk: true },
      `${AS_SAID} + quarantine`,
    ],
    ['quarantined, ran cleanly', { lane: 'quarantined' }, { r: 'Sdone' }, `${AS_SAID} + clean run`],
    [
      'quarantined, its own loop again',
      { lane: 'quarantined' },
      { r: T, blk: true },
      `${AS_SAID} + quarantine`,
    ],
    [
      'quarantined, blocker named',
      { lane: 'quarantined' },
      { r: T, by: 'hog' },
      `${RERUN} + clean run`,
    ],
  ];
  for (const [name, facts, answer, expected] of table) {
    test(`${name}: ${expected}`, () => {
      const subject = { ...job('started'), lane: 'shared' as const, ...facts };
      assert.equal(describeAnswer(answerVerdict(subject, answer), answer), expected);
    });
  }
});
