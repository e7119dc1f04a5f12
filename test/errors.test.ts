/**
 * The error catalogue (src/errors.ts): unique codes, the statuses of docs/spec.md §3, and toErrorBody's
 * JSON shape, with unknown errors hidden behind 500 INTERNAL_ERROR.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as errors from '../src/errors';
import { FaasError, FunctionCompileError, FunctionError, toErrorBody } from '../src/errors';

type AnyErrorClass = new (...args: never[]) => Error;

/** Every class exported from errors.ts that extends FaasError. */
const faasClasses = Object.entries(errors as Record<string, unknown>).filter(
  (entry): entry is [string, AnyErrorClass] =>
    typeof entry[1] === 'function' &&
    (entry[1] as { prototype: unknown }).prototype instanceof FaasError,
);

function make(cls: AnyErrorClass): FaasError {
  // FunctionError takes (type, message); the others (message, …).
  const Ctor = cls as unknown as new (a: string, b: string) => FaasError;
  return cls === (FunctionError as unknown) ? new Ctor('TypeError', 'boom') : new Ctor('boom', '');
}

/** The docs/spec.md §3 table: code → status. */
const SPEC_CODES: Record<string, number[]> = {
  INVALID_FUNCTION_NAME: [400],
  INVALID_BODY: [400],
  UNAUTHORIZED: [401],
  FORBIDDEN: [403],
  FUNCTION_NOT_FOUND: [404],
  PAYLOAD_TOO_LARGE: [413],
  // Not in docs/spec.md §3: an `Expect` other than 100-continue (docs/errors.md).
  EXPECTATION_FAILED: [417],
  FUNCTION_COMPILE_ERROR: [422, 500],
  FUNCTION_ERROR: [500],
  INVALID_RESULT: [500],
  WORKER_CRASHED: [502],
  OVERLOADED: [503],
  SHUTTING_DOWN: [503],
  FUNCTION_TIMEOUT: [504],
  // docs/spec.md §8: the codes of a failed context.kv call, with their statuses on the admin routes.
  KV_INVALID_KEY: [400],
  KV_INVALID_ARGUMENT: [400],
  KV_VALUE_TOO_LARGE: [413],
  KV_QUOTA_EXCEEDED: [507],
  KV_NOT_A_NUMBER: [409],
  KV_UNAVAILABLE: [503],
  INVALID_SECRET: [400],
};

void test('errors.ts exports the FaasError subclasses', () => {
  // Guards the filter above: an empty list would make every test below vacuous.
  assert.ok(faasClasses.length >= Object.keys(SPEC_CODES).length, String(faasClasses.length));
});

void test('every FaasError subclass has a unique code', () => {
  const seen = new Map<string, string>();
  for (const [exported, cls] of faasClasses) {
    const { code } = make(cls);
    assert.match(code, /^[A-Z][A-Z_]*[A-Z]$/, `${exported}.code`);
    assert.equal(seen.get(code), undefined, `${exported} and ${seen.get(code)} share ${code}`);
    seen.set(code, exported);
  }
  assert.notEqual(errors.ConfigError.name, undefined);
  assert.equal(seen.has(new errors.ConfigError('x').code), false, 'ConfigError shares a code');
});

void test('every code in the SPEC errors table has a class, with the SPEC status', () => {
  const byCode = new Map(faasClasses.map(([, cls]) => [make(cls).code, make(cls)]));
  for (const [code, statuses] of Object.entries(SPEC_CODES)) {
    const err = byCode.get(code);
    assert.ok(err, `no FaasError class has code ${code}`);
    assert.ok(statuses.includes(err.statusCode), `${code}: ${err.statusCode}`);
  }
});

void test('every code matches its class name (FooBarError → FOO_BAR, or FOO_BAR_ERROR)', () => {
  // A one-letter word splits too: KvNotANumber → KV_NOT_A_NUMBER.
  const snake = (name: string) =>
    name
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .replace(/([A-Z])([A-Z][a-z])/g, '$1_$2')
      .toUpperCase();
  for (const [exported, cls] of faasClasses) {
    // SPEC's own codes FUNCTION_ERROR and FUNCTION_COMPILE_ERROR keep the class's "Error".
    const accepted = [snake(exported.replace(/Error$/, '')), snake(exported)];
    assert.ok(accepted.includes(make(cls).code), `${exported}: ${make(cls).code}`);
  }
});

for (const [exported, cls] of faasClasses) {
  void test(`${exported}: an Error with name, 4xx/5xx status, exposed message`, () => {
    const err = make(cls);
    assert.ok(err instanceof Error);
    assert.equal(err.name, exported);
    assert.ok(Number.isInteger(err.statusCode) && err.statusCode >= 400 && err.statusCode <= 599);
    assert.equal(err.expose, true);
  });

  void test(`${exported}: toErrorBody gives its status and { error: { code, message }, requestId }`, () => {
    const err = make(cls);
    const { status, body } = toErrorBody(err, 'req-1');
    assert.equal(status, err.statusCode);
    assert.equal(body.requestId, 'req-1');
    assert.equal(body.error.code, err.code);
    assert.equal(body.error.message, err.message);
    assert.deepEqual(Object.keys(body).sort(), ['error', 'requestId']);
    assert.equal(JSON.stringify(body).includes('"stack"'), false);
  });
}

void test('FunctionError: the body carries type, never the function stack', () => {
  const err = new FunctionError(
    'RangeError',
    'too far',
    'RangeError: too far\n    at f (fn.js:2:3)',
  );
  const { status, body } = toErrorBody(err, 'r');
  assert.equal(status, 500);
  assert.deepEqual(body, {
    error: { code: 'FUNCTION_ERROR', message: 'too far', type: 'RangeError' },
    requestId: 'r',
  });
});

void test('FunctionCompileError: line and column when known, absent when not', () => {
  const withPosition = toErrorBody(new FunctionCompileError('bad', { line: 4, column: 2 }), 'r');
  assert.deepEqual(withPosition.body.error, {
    code: 'FUNCTION_COMPILE_ERROR',
    message: 'bad',
    line: 4,
    column: 2,
  });
  const without = toErrorBody(new FunctionCompileError('no function'), 'r');
  assert.deepEqual(without.body.error, { code: 'FUNCTION_COMPILE_ERROR', message: 'no function' });
});

void test('extra headers (Retry-After) are not part of the body', () => {
  const err = new errors.OverloadedError('busy');
  err.headers = { 'Retry-After': '1' };
  const { status, body } = toErrorBody(err, 'r');
  assert.equal(status, 503);
  assert.equal(JSON.stringify(body).includes('Retry-After'), false);
});

const unknownErrors: { what: string; value: unknown }[] = [
  { what: 'a plain Error', value: new Error('ENOENT: open /etc/secret-host-path') },
  { what: 'a TypeError', value: new TypeError('cannot read /etc/secret-host-path') },
  {
    what: 'a ConfigError (not a FaasError)',
    value: new errors.ConfigError('/etc/secret-host-path'),
  },
  {
    what: 'an http-error-like object with expose',
    value: Object.assign(new Error('/etc/secret-host-path'), { status: 500, expose: false }),
  },
  { what: 'a thrown string', value: '/etc/secret-host-path' },
  { what: 'null', value: null },
  { what: 'undefined', value: undefined },
];
for (const row of unknownErrors) {
  void test(`${row.what} → 500 INTERNAL_ERROR, no message or stack leak`, () => {
    const { status, body } = toErrorBody(row.value, 'req-9');
    assert.equal(status, 500);
    assert.equal(body.error.code, 'INTERNAL_ERROR');
    assert.equal(body.requestId, 'req-9');
    assert.equal(typeof body.error.message, 'string');
    const text = JSON.stringify(body);
    assert.equal(text.includes('secret-host-path'), false, text);
    assert.equal(/\bat .*:\d+:\d+/.test(text), false, text);
  });
}
