/**
 * The CLI's Server-Sent Events parser (src/cli/sse.ts): the same events whatever the chunks and
 * the line ends, comments and unknown fields skipped, an event without data never dispatched.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SseParser } from '../../src/cli/sse';
import type { SseEvent } from '../../src/cli/sse';

const STREAM =
  ': connected\n\n' +
  'event: invocation\ndata: {"a":1}\n\n' +
  ': keep-alive\n\n' +
  'data: line one\ndata:line two\nid: 7\nretry: 10\n\n' +
  'event: lonely\n\n' +
  'event: end\ndata: {"code":"SHUTTING_DOWN"}\n\n';

const EXPECTED: SseEvent[] = [
  { type: 'invocation', data: '{"a":1}' },
  { type: 'message', data: 'line one\nline two' },
  { type: 'end', data: '{"code":"SHUTTING_DOWN"}' },
];

/** Feeds `text` cut every `size` characters. */
function parse(text: string, size: number): SseEvent[] {
  const parser = new SseParser();
  const events: SseEvent[] = [];
  for (let i = 0; i < text.length; i += size) events.push(...parser.push(text.slice(i, i + size)));
  return events;
}

test('whole, and cut at every size: the same events', () => {
  for (let size = 1; size <= STREAM.length; size++) {
    assert.deepEqual(parse(STREAM, size), EXPECTED, `chunks of ${size}`);
  }
});

test('CRLF and CR line ends, cut anywhere (a CRLF split across two chunks is one end)', () => {
  for (const end of ['\r\n', '\r']) {
    const text = STREAM.replaceAll('\n', end);
    for (let size = 1; size <= 7; size++) {
      assert.deepEqual(parse(text, size), EXPECTED, `${JSON.stringify(end)}, chunks of ${size}`);
    }
  }
});

test('an unfinished event waits for its blank line', () => {
  const parser = new SseParser();
  assert.deepEqual(parser.push('event: invocation\ndata: x\n'), []);
  assert.deepEqual(parser.push('\n'), [{ type: 'invocation', data: 'x' }]);
});
