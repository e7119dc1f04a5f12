/**
 * loadConfig(), the async variables (docs/spec.md §5, §9): MAX_ASYNC_QUEUE and ASYNC_CONCURRENCY, whose
 * default is half the workers (at least 1) and which must leave a worker to synchronous calls.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../src/config';
import { ConfigError } from '../src/errors';

void test('defaults: MAX_ASYNC_QUEUE 10000, ASYNC_CONCURRENCY half the workers, at least 1', () => {
  // [WORKERS, ASYNC_CONCURRENCY default]
  const rows: [string, number][] = [
    ['2', 1],
    ['3', 1],
    ['4', 2],
    ['5', 2],
    ['16', 8],
  ];
  for (const [workers, expected] of rows) {
    const config = loadConfig({ WORKERS: workers });
    assert.equal(config.asyncConcurrency, expected, `WORKERS=${workers}`);
    assert.equal(config.maxAsyncQueue, 10_000);
  }
});

void test('the variables are read', () => {
  const rows: [Record<string, string>, number, number][] = [
    [{ WORKERS: '4', ASYNC_CONCURRENCY: '3', MAX_ASYNC_QUEUE: '1' }, 3, 1],
    [{ WORKERS: '8', ASYNC_CONCURRENCY: '1', MAX_ASYNC_QUEUE: '10000000' }, 1, 10_000_000],
    [{ WORKERS: '2', ASYNC_CONCURRENCY: ' 1 ', MAX_ASYNC_QUEUE: '' }, 1, 10_000],
  ];
  for (const [env, concurrency, queue] of rows) {
    const config = loadConfig(env);
    assert.equal(config.asyncConcurrency, concurrency, JSON.stringify(env));
    assert.equal(config.maxAsyncQueue, queue, JSON.stringify(env));
  }
});

void test('bad values stop the server, naming the variable', () => {
  // [env, message]
  const rows: [Record<string, string>, RegExp][] = [
    [{ MAX_ASYNC_QUEUE: '0' }, /^MAX_ASYNC_QUEUE must be between 1 and 10000000, got 0$/],
    [{ MAX_ASYNC_QUEUE: 'lots' }, /^MAX_ASYNC_QUEUE must be a whole number, got "lots"$/],
    [{ MAX_ASYNC_QUEUE: '-5' }, /^MAX_ASYNC_QUEUE must be a whole number/],
    [{ ASYNC_CONCURRENCY: '0' }, /^ASYNC_CONCURRENCY must be between 1 and 256, got 0$/],
    [{ ASYNC_CONCURRENCY: '1.5' }, /^ASYNC_CONCURRENCY must be a whole number/],
    [
      { WORKERS: '2', ASYNC_CONCURRENCY: '2' },
      /^ASYNC_CONCURRENCY \(2\) must be less than WORKERS \(2\): async work never takes every worker$/,
    ],
    [{ WORKERS: '4', ASYNC_CONCURRENCY: '9' }, /ASYNC_CONCURRENCY \(9\) must be less than WORKERS/],
  ];
  for (const [env, message] of rows) {
    assert.throws(
      () => loadConfig(env),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, message);
        return true;
      },
      JSON.stringify(env),
    );
  }
});

void test('CALLBACK_PER_ORIGIN: 8 by default, 1–1000, else the server stops naming it', () => {
  assert.equal(loadConfig({}).callbacksPerOrigin, 8);
  assert.equal(loadConfig({ CALLBACK_PER_ORIGIN: '1' }).callbacksPerOrigin, 1);
  assert.equal(loadConfig({ CALLBACK_PER_ORIGIN: '1000' }).callbacksPerOrigin, 1000);
  for (const [value, message] of [
    ['0', /^CALLBACK_PER_ORIGIN must be between 1 and 1000, got 0$/],
    ['1001', /^CALLBACK_PER_ORIGIN must be between 1 and 1000, got 1001$/],
    ['many', /^CALLBACK_PER_ORIGIN must be a whole number, got "many"$/],
  ] as const) {
    assert.throws(
      () => loadConfig({ CALLBACK_PER_ORIGIN: value }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, message);
        return true;
      },
    );
  }
});
