/**
 * function-config.ts, the keys of docs/spec.md §9: `schedule` (5 or 6 cron fields, one or an array),
 * `timezone` (IANA) and `async` ({ retries, maxAgeSeconds }), valid and invalid, and the policy
 * an async invocation gets from them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FunctionCompileError } from '../../src/errors';
import {
  ASYNC_DEFAULTS,
  asyncPolicy,
  cronOf,
  parseFunctionConfig,
} from '../../src/functions/function-config';

const limits = { maxTimeoutMs: 60_000 };
const parse = (config: unknown) => parseFunctionConfig(JSON.stringify(config), limits);

const valid: { config: unknown; expected: unknown }[] = [
  { config: { schedule: '*/5 * * * *' }, expected: { schedule: ['*/5 * * * *'] } },
  { config: { schedule: '* * * * * *' }, expected: { schedule: ['* * * * * *'] } },
  { config: { schedule: '  0   12 * * MON-FRI ' }, expected: { schedule: ['0 12 * * MON-FRI'] } },
  {
    config: { schedule: ['0 6 * * *', '30 18 * * *', '0 6 * * *'] },
    expected: { schedule: ['0 6 * * *', '30 18 * * *'] },
  },
  { config: { schedule: '0 0 L * *' }, expected: { schedule: ['0 0 L * *'] } },
  { config: { schedule: '@daily' }, expected: { schedule: ['@daily'] } },
  { config: { timezone: 'Europe/Berlin' }, expected: { timezone: 'Europe/Berlin' } },
  { config: { timezone: 'UTC' }, expected: { timezone: 'UTC' } },
  {
    config: { schedule: '0 9 * * *', timezone: 'America/New_York' },
    expected: { schedule: ['0 9 * * *'], timezone: 'America/New_York' },
  },
  { config: { async: {} }, expected: { async: {} } },
  { config: { async: { retries: 0 } }, expected: { async: { retries: 0 } } },
  {
    config: { async: { retries: 10, maxAgeSeconds: 86_400 } },
    expected: { async: { retries: 10, maxAgeSeconds: 86_400 } },
  },
  { config: { async: { maxAgeSeconds: 1 } }, expected: { async: { maxAgeSeconds: 1 } } },
];
for (const row of valid) {
  void test(`valid config ${JSON.stringify(row.config)}`, () => {
    const config = parse(row.config);
    assert.deepEqual(config, row.expected);
    assert.ok(Object.isFrozen(config));
  });
}

const invalid: { config: unknown; message: RegExp }[] = [
  { config: { schedule: '* * * *' }, message: /config\.schedule holds "\* \* \* \*": .*5 fields/ },
  { config: { schedule: '1 2 3 4 5 6 7' }, message: /config\.schedule holds "1 2 3 4 5 6 7"/ },
  { config: { schedule: '60 * * * *' }, message: /minute/ },
  { config: { schedule: '* 24 * * *' }, message: /hour/ },
  { config: { schedule: 'every minute' }, message: /config\.schedule holds "every minute"/ },
  { config: { schedule: '' }, message: /config\.schedule holds ""/ },
  { config: { schedule: '0 0 30 2 *' }, message: /which never fires/ },
  { config: { schedule: [] }, message: /must be a cron expression or an array of 1 to 16/ },
  {
    config: { schedule: Array.from({ length: 17 }, (_, i) => `${i} * * * *`) },
    message: /an array of 1 to 16/,
  },
  { config: { schedule: ['* * * * *', 7] }, message: /config\.schedule holds 7/ },
  { config: { schedule: { cron: '* * * * *' } }, message: /config\.schedule holds \{/ },
  { config: { schedule: 'x'.repeat(201) }, message: /a cron expression is a string/ },
  { config: { timezone: 'Mars/Olympus' }, message: /config\.timezone is "Mars\/Olympus"/ },
  { config: { timezone: 5 }, message: /config\.timezone must be an IANA time zone name/ },
  { config: { timezone: '' }, message: /config\.timezone is ""/ },
  { config: { async: 3 }, message: /config\.async must be an object/ },
  { config: { async: [] }, message: /config\.async must be an object/ },
  { config: { async: null }, message: /config\.async must be an object/ },
  { config: { async: { retries: -1 } }, message: /config\.async\.retries must be .* 0 to 10/ },
  { config: { async: { retries: 11 } }, message: /config\.async\.retries/ },
  { config: { async: { retries: 1.5 } }, message: /config\.async\.retries/ },
  { config: { async: { retries: '2' } }, message: /config\.async\.retries/ },
  { config: { async: { maxAgeSeconds: 0 } }, message: /maxAgeSeconds must be .* 1 to 86400/ },
  { config: { async: { maxAgeSeconds: 86_401 } }, message: /config\.async\.maxAgeSeconds/ },
  { config: { async: { delay: 1 } }, message: /config\.async\.delay is not a key of it/ },
];
for (const row of invalid) {
  void test(`invalid config ${JSON.stringify(row.config).slice(0, 80)} → FunctionCompileError`, () => {
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

void test('asyncPolicy fills in the defaults of docs/spec.md §7', () => {
  assert.deepEqual(ASYNC_DEFAULTS, { retries: 2, maxAgeSeconds: 3600 });
  const rows: [unknown, unknown][] = [
    [{}, { retries: 2, maxAgeSeconds: 3600 }],
    [{ async: {} }, { retries: 2, maxAgeSeconds: 3600 }],
    [{ async: { retries: 0 } }, { retries: 0, maxAgeSeconds: 3600 }],
    [{ async: { maxAgeSeconds: 60 } }, { retries: 2, maxAgeSeconds: 60 }],
    [{ async: { retries: 5, maxAgeSeconds: 10 } }, { retries: 5, maxAgeSeconds: 10 }],
  ];
  for (const [config, expected] of rows) assert.deepEqual(asyncPolicy(parse(config)), expected);
});

void test('cronOf reads 6 fields with seconds first, in the zone given', () => {
  // [expression, zone, after, next]
  const rows: [string, string | undefined, string, string][] = [
    ['* * * * * *', undefined, '2030-01-01T00:00:05.000Z', '2030-01-01T00:00:06.000Z'],
    ['*/15 * * * * *', undefined, '2030-01-01T00:00:05.000Z', '2030-01-01T00:00:15.000Z'],
    ['0 12 * * *', 'UTC', '2030-01-01T00:00:00.000Z', '2030-01-01T12:00:00.000Z'],
    ['0 12 * * *', 'Europe/Berlin', '2030-01-01T00:00:00.000Z', '2030-01-01T11:00:00.000Z'],
    ['0 12 * * *', 'Europe/Berlin', '2030-07-01T00:00:00.000Z', '2030-07-01T10:00:00.000Z'],
    ['30 9 * * MON', 'Asia/Kolkata', '2030-01-01T00:00:00.000Z', '2030-01-07T04:00:00.000Z'],
  ];
  for (const [expression, zone, after, next] of rows) {
    const cron = cronOf(expression, zone);
    assert.equal(cron.nextRun(new Date(after))?.toISOString(), next, `${expression} ${zone}`);
    cron.stop();
  }
});
