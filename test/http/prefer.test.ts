/**
 * `Prefer` (RFC 7240) as runFaaS reads it: which headers ask for `respond-async` (docs/spec.md §9).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { prefersAsync } from '../../src/http/run-faas';

const CASES: [string, boolean][] = [
  ['respond-async', true],
  ['Respond-Async', true],
  [' respond-async ', true],
  ['respond-async, wait=10', true],
  ['wait=10, respond-async', true],
  ['respond-async;foo=bar', true],
  ['respond-async=1', true],
  ['return=minimal,respond-async', true],
  ['', false],
  ['wait=10', false],
  ['respond-asynchronous', false],
  ['x-respond-async', false],
  ['foo="x,respond-async,y"', false],
  ['foo="a\\",respond-async"', false],
  ['foo="x", respond-async', true],
  ['handling=lenient; note="respond-async"', false],
];

void test('prefersAsync reads the preferences outside quoted strings', () => {
  for (const [header, expected] of CASES) {
    assert.equal(prefersAsync(header), expected, JSON.stringify(header));
  }
});
