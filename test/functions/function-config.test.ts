/**
 * function-config.ts: every key of docs/spec.md §7 this server reads, valid and invalid values, unknown
 * and not-yet-supported keys.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FunctionCompileError } from '../../src/errors';
import { parseFunctionConfig } from '../../src/functions/function-config';

const limits = { maxTimeoutMs: 60_000 };
const parse = (config: unknown) => parseFunctionConfig(JSON.stringify(config), limits);

const valid: { config: unknown; expected: unknown }[] = [
  { config: null, expected: {} },
  { config: {}, expected: {} },
  { config: { timeoutMs: 10 }, expected: { timeoutMs: 10 } },
  { config: { timeoutMs: 60_000 }, expected: { timeoutMs: 60_000 } },
  { config: { methods: ['GET'] }, expected: { methods: ['GET'] } },
  { config: { methods: ['post', 'Get', 'POST'] }, expected: { methods: ['POST', 'GET'] } },
  {
    config: { methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] },
    expected: { methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] },
  },
  { config: { rawBody: true }, expected: { rawBody: true } },
  { config: { maxConcurrency: 1 }, expected: { maxConcurrency: 1 } },
  { config: { maxConcurrency: 100000 }, expected: { maxConcurrency: 100000 } },
  { config: { env: {} }, expected: { env: {} } },
  { config: { env: { STAGE: 'prod', _X1: '' } }, expected: { env: { STAGE: 'prod', _X1: '' } } },
  { config: { secrets: [] }, expected: { secrets: [] } },
  {
    config: { secrets: ['API_KEY', 'api_key', 'API_KEY'] },
    expected: { secrets: ['API_KEY', 'api_key'] },
  },
  { config: { rawBody: false }, expected: { rawBody: false } },
  { config: { cors: 'server' }, expected: { cors: 'server' } },
  { config: { cors: 'function' }, expected: { cors: 'function' } },
  {
    config: { timeoutMs: 200, methods: ['POST'], rawBody: true, cors: 'function' },
    expected: { timeoutMs: 200, methods: ['POST'], rawBody: true, cors: 'function' },
  },
];
for (const row of valid) {
  void test(`valid config ${JSON.stringify(row.config)}`, () => {
    const config = parse(row.config);
    assert.deepEqual(config, row.expected);
    assert.ok(Object.isFrozen(config));
  });
}

void test('no config at all (undefined) is the empty config', () => {
  assert.deepEqual(parseFunctionConfig(undefined, limits), {});
});

const invalid: { config: unknown; message: RegExp }[] = [
  { config: 5, message: /config must be an object/ },
  { config: 'x', message: /config must be an object/ },
  { config: [1], message: /config must be an object/ },
  {
    config: { timeoutMs: 9 },
    message: /config\.timeoutMs must be a whole number of ms from 10 to 60000/,
  },
  { config: { timeoutMs: 60_001 }, message: /config\.timeoutMs .*MAX_TIMEOUT_MS/ },
  { config: { timeoutMs: 1.5 }, message: /config\.timeoutMs/ },
  { config: { timeoutMs: '200' }, message: /config\.timeoutMs/ },
  { config: { methods: [] }, message: /config\.methods must be a non-empty array/ },
  { config: { methods: 'GET' }, message: /config\.methods must be a non-empty array/ },
  { config: { methods: ['GET', 'FETCH'] }, message: /config\.methods holds "FETCH"/ },
  { config: { methods: [1] }, message: /config\.methods holds 1/ },
  { config: { rawBody: 'yes' }, message: /config\.rawBody must be true or false/ },
  { config: { rawBody: 1 }, message: /config\.rawBody must be true or false/ },
  { config: { cors: 'client' }, message: /config\.cors must be "server" or "function"/ },
  { config: { cors: true }, message: /config\.cors must be "server" or "function"/ },
  { config: { timeout: 100 }, message: /unknown key config\.timeout \(known: timeoutMs, methods/ },
  { config: { __proto__x: 1 }, message: /unknown key config\.__proto__x/ },
  {
    config: { maxConcurrency: 0 },
    message: /config\.maxConcurrency must be a whole number from 1/,
  },
  { config: { maxConcurrency: 2.5 }, message: /config\.maxConcurrency must be a whole number/ },
  { config: { maxConcurrency: '2' }, message: /config\.maxConcurrency must be a whole number/ },
  { config: { maxConcurrency: 1e6 }, message: /config\.maxConcurrency must be a whole number/ },
  { config: { env: 'A=b' }, message: /config\.env must be an object of names to strings/ },
  { config: { env: ['A'] }, message: /config\.env must be an object/ },
  { config: { env: { 'A-B': 'x' } }, message: /config\.env has the name "A-B"/ },
  { config: { env: { A: 1 } }, message: /config\.env\.A must be a string/ },
  { config: { env: { A: 'x'.repeat(70_000) } }, message: /config\.env is over 65536 bytes/ },
  { config: { secrets: 'API_KEY' }, message: /config\.secrets must be an array of secret names/ },
  { config: { secrets: ['ok', 'not ok'] }, message: /config\.secrets holds "not ok"/ },
  { config: { secrets: [5] }, message: /config\.secrets holds 5/ },
  { config: { schedule: '* * *' }, message: /config\.schedule holds "\* \* \*"/ },
];
for (const row of invalid) {
  void test(`invalid config ${JSON.stringify(row.config)} → FunctionCompileError`, () => {
    assert.throws(
      () => parse(row.config),
      (err: unknown) => {
        assert.ok(err instanceof FunctionCompileError, String(err));
        assert.match(err.message, /^invalid config: /);
        assert.match(err.message, row.message);
        return true;
      },
    );
  });
}

void test('a "__proto__" key in the JSON text is an unknown key, not a prototype', () => {
  assert.throws(
    () => parseFunctionConfig('{"__proto__": {"timeoutMs": 10}}', limits),
    /unknown key config\.__proto__/,
  );
});

void test('the timeout bound follows MAX_TIMEOUT_MS', () => {
  assert.deepEqual(parseFunctionConfig('{"timeoutMs": 120000}', { maxTimeoutMs: 120_000 }), {
    timeoutMs: 120_000,
  });
  assert.throws(() => parseFunctionConfig('{"timeoutMs": 120000}', limits), /from 10 to 60000/);
});
