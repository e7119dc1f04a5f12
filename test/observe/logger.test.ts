/**
 * The logger (pino underneath): the same JSON fields as before pino, levels, child bindings,
 * errors, announce, and the text format.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger } from '../../src/observe/logger';
import type { Level, LogFormat } from '../../src/observe/logger';

function capture(level: Level, format: LogFormat = 'json') {
  const lines: string[] = [];
  const logger = createLogger({ level, format, write: (line) => lines.push(line) });
  return { logger, lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

void describe('logger', () => {
  const levels: Level[] = ['debug', 'info', 'warn', 'error', 'silent'];
  const methods = ['debug', 'info', 'warn', 'error'] as const;
  for (const level of levels) {
    void test(`LOG_LEVEL=${level}: lines at or above it, each with level, time, msg last`, () => {
      const { logger, json } = capture(level);
      const before = Date.now();
      for (const method of methods) logger[method](`a ${method} line`, { n: 1 });
      const written = json();
      const expected = methods.slice(levels.indexOf(level));
      assert.deepEqual(
        written.map((l) => l.level),
        expected,
      );
      for (const line of written) {
        assert.deepEqual(Object.keys(line), ['level', 'time', 'n', 'msg']);
        assert.equal(line.msg, `a ${String(line.level)} line`);
        assert.ok(typeof line.time === 'number' && line.time >= before && line.time <= Date.now());
      }
    });
  }

  void test('children carry their chain of bindings before the fields; user strings stay values', () => {
    const { logger, json } = capture('info');
    logger.child({ reqId: 'r1' }).child({ fn: '__proto__' }).info('request', { status: 200 });
    logger.child({ reqId: 'r2' }).info('plain');
    const [first, second] = json();
    assert.deepEqual(Object.keys(first), ['level', 'time', 'reqId', 'fn', 'status', 'msg']);
    assert.equal(first.fn, '__proto__');
    assert.deepEqual({ reqId: second.reqId, msg: second.msg }, { reqId: 'r2', msg: 'plain' });
  });

  void test('err: an Error as { type, message, stack, code? }; anything else as it is', () => {
    const { logger, json } = capture('info');
    const coded = Object.assign(new RangeError('bad'), { code: 'E_BAD', extra: 'not logged' });
    logger.error('one', { err: new Error('plain') });
    logger.error('two', { err: coded });
    logger.error('three', { err: { type: 'FunctionError', message: 'm', stack: 's' } });
    const [one, two, three] = json();
    assert.deepEqual(Object.keys(one.err as object), ['type', 'message', 'stack']);
    assert.deepEqual((two.err as Record<string, unknown>).code, 'E_BAD');
    assert.equal((two.err as Record<string, unknown>).type, 'RangeError');
    assert.equal((two.err as Record<string, unknown>).extra, undefined);
    assert.deepEqual(three.err, { type: 'FunctionError', message: 'm', stack: 's' });
  });

  for (const [level, written] of [
    ['error', 1],
    ['warn', 1],
    ['silent', 0],
  ] as const) {
    void test(`announce writes at info even at LOG_LEVEL=${level} (${written} line)`, () => {
      const { logger, json } = capture(level);
      logger.child({ a: 1 }).announce('listening', { port: 3000 });
      logger.info('dropped');
      assert.equal(json().length, written);
      if (written) assert.deepEqual(json()[0], { ...json()[0], level: 'info', a: 1, port: 3000 });
    });
  }

  void test('LOG_FORMAT=text: time LEVEL msg key=value, quoted when needed', () => {
    const { logger, lines } = capture('info', 'text');
    logger.child({ reqId: 'r1' }).warn('slow call', { ms: 12.5, path: '/a b', ok: true });
    assert.equal(lines.length, 1);
    assert.match(
      lines[0],
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN {2}slow call reqId=r1 ms=12.5 path="\/a b" ok=true\n$/,
    );
  });
});
