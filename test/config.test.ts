/**
 * loadConfig(): defaults (docs/spec.md §5), parsing, a ConfigError naming the variable for every bad
 * value, and a frozen result.
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config';
import { ConfigError } from '../src/errors';

void test('defaults', () => {
  const config = loadConfig({}, false);
  assert.equal(config.port, 3000);
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.functionsDir, path.resolve('./functions'));
  assert.equal(config.timeoutMs, 5000);
  assert.equal(config.workers, Math.max(2, os.availableParallelism()));
  assert.equal(config.maxBodyBytes, 1024 * 1024);
  assert.equal(config.corsOrigin, '*');
  assert.equal(config.adminToken, undefined);
  assert.equal(config.isolation, 'warm');
  assert.equal(config.logFormat, 'json');
});

void test('defaults of the function limits and the services (docs/spec.md §5)', () => {
  const config = loadConfig({});
  assert.equal(config.maxTimeoutMs, 60_000);
  assert.equal(config.dataDir, path.resolve('./data'));
  assert.equal(config.redisUrl, undefined);
  assert.equal(config.kvMaxValue, 1024 * 1024);
  assert.equal(config.kvMaxBytes, 64 * 1024 * 1024);
  assert.equal(config.egress, 'on');
  assert.deepEqual(config.egressAllow, []);
  assert.equal(config.fetchMaxBytes, 6 * 1024 * 1024);
});

void test('the services read their variables', () => {
  const config = loadConfig({
    FUNCTION_TIMEOUT_MS: '1000',
    MAX_TIMEOUT_MS: '120000',
    DATA_DIR: 'state',
    REDIS_URL: 'redis://:pw@127.0.0.1:6380/2',
    KV_MAX_VALUE: '64kb',
    KV_MAX_BYTES: '1mb',
    EGRESS: 'off',
    EGRESS_ALLOW: ' api.internal , *.corp.example:8443, 10.0.0.0/8 ,[::1]:9000',
    FETCH_MAX_BYTES: '1mb',
  });
  assert.equal(config.maxTimeoutMs, 120_000);
  assert.equal(config.dataDir, path.resolve('state'));
  assert.equal(config.redisUrl, 'redis://:pw@127.0.0.1:6380/2');
  assert.equal(config.kvMaxValue, 64 * 1024);
  assert.equal(config.kvMaxBytes, 1024 * 1024);
  assert.equal(config.egress, 'off');
  assert.deepEqual(config.egressAllow, [
    'api.internal',
    '*.corp.example:8443',
    '10.0.0.0/8',
    '[::1]:9000',
  ]);
  assert.equal(config.fetchMaxBytes, 1024 * 1024);
});

void test('does not read process.env when given an env', () => {
  const saved = process.env.PORT;
  process.env.PORT = '4321';
  try {
    assert.equal(loadConfig({}).port, 3000);
  } finally {
    if (saved === undefined) delete process.env.PORT;
    else process.env.PORT = saved;
  }
});

void test('every variable is read', () => {
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    FUNCTIONS_DIR: 'some/where',
    FUNCTION_TIMEOUT_MS: '250',
    WORKERS: '3',
    MAX_BODY: '2mb',
    CORS_ORIGIN: 'https://app.example',
    ADMIN_TOKEN: 'a-token-of-at-least-16',
    FUNCTION_ISOLATION: 'fresh',
    LOG_FORMAT: 'text',
  });
  assert.equal(config.port, 0);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.functionsDir, path.resolve('some/where'));
  assert.ok(path.isAbsolute(config.functionsDir));
  assert.equal(config.timeoutMs, 250);
  assert.equal(config.workers, 3);
  assert.equal(config.maxBodyBytes, 2 * 1024 * 1024);
  assert.equal(config.corsOrigin, 'https://app.example');
  assert.equal(config.adminToken, 'a-token-of-at-least-16');
  assert.equal(config.isolation, 'fresh');
  assert.equal(config.logFormat, 'text');
});

const sizes: { raw: string; bytes: number }[] = [
  { raw: '100', bytes: 100 },
  { raw: '1kb', bytes: 1024 },
  { raw: '512KB', bytes: 512 * 1024 },
  { raw: '1mb', bytes: 1024 * 1024 },
  { raw: '1.5mb', bytes: 1.5 * 1024 * 1024 },
];
for (const { raw, bytes } of sizes) {
  void test(`MAX_BODY=${raw} → ${bytes} bytes`, () => {
    assert.equal(loadConfig({ MAX_BODY: raw }).maxBodyBytes, bytes);
  });
}

const invalid: Record<string, string>[] = [
  { PORT: 'abc' },
  { PORT: '70000' },
  { PORT: '-1' },
  { PORT: '80.5' },
  { WORKERS: '1' },
  { WORKERS: '0' },
  { WORKERS: 'many' },
  { FUNCTION_TIMEOUT_MS: '0' },
  { FUNCTION_TIMEOUT_MS: '5s' },
  { MAX_BODY: 'lots' },
  { MAX_BODY: '0' },
  { MAX_BODY: '-1kb' },
  { FUNCTION_ISOLATION: 'x' },
  { ADMIN_TOKEN: 'short' },
  { ADMIN_TOKEN: '123456789012345' },
  { LOG_FORMAT: 'xml' },
  { CORS_ORIGIN: 'https://a.example\r\nSet-Cookie: x=1' },
  { WORKER_MEMORY_MB: '8' },
  { WORKER_CPU_QUOTA: 'half' },
  { MAX_RESULT_BYTES: 'big' },
  { MAX_QUEUE: '-1' },
  { METRICS_AUTH: 'yes' },
  { RECORDS_MAX: 'all' },
  { WARM_CONTEXTS: '0' },
  { LOG_LEVEL: 'loud' },
  { MAX_TIMEOUT_MS: '9' },
  { MAX_TIMEOUT_MS: '4000' },
  { REDIS_URL: 'localhost:6379' },
  { KV_MAX_VALUE: 'huge' },
  { KV_MAX_BYTES: '0' },
  { EGRESS: 'maybe' },
  { EGRESS_ALLOW: '10.0.0.1/8' },
  { EGRESS_ALLOW: 'a b' },
  { FETCH_MAX_BYTES: '-5' },
];
for (const env of invalid) {
  const [[name, value]] = Object.entries(env);
  void test(`${name}=${value} → ConfigError naming ${name}`, () => {
    assert.throws(
      () => loadConfig(env),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.ok(err.message.includes(name), err.message);
        return true;
      },
    );
  });
}

void test('ADMIN_TOKEN errors do not echo the token', () => {
  assert.throws(
    () => loadConfig({ ADMIN_TOKEN: 'secret-ish' }),
    (err: unknown) => err instanceof ConfigError && !err.message.includes('secret-ish'),
  );
});

void test('the boundaries are accepted', () => {
  assert.equal(loadConfig({ PORT: '65535' }).port, 65535);
  assert.equal(loadConfig({ WORKERS: '2' }).workers, 2);
  assert.equal(loadConfig({ ADMIN_TOKEN: '1234567890123456' }).adminToken, '1234567890123456');
});

void test('the result is frozen', () => {
  const config = loadConfig({});
  assert.ok(Object.isFrozen(config));
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
  assert.equal(config.port, 3000);
});

void test('LOG_FORMAT: text by default at a terminal, JSON elsewhere; the variable wins', () => {
  assert.equal(loadConfig({}, true).logFormat, 'text');
  assert.equal(loadConfig({}, false).logFormat, 'json');
  assert.equal(loadConfig({ LOG_FORMAT: 'json' }, true).logFormat, 'json');
  assert.equal(loadConfig({ LOG_FORMAT: 'text' }, false).logFormat, 'text');
});
