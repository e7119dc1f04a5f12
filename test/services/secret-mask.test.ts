/**
 * A secret's value never leaves the server in a log line, a record, an error answer or draft
 * output, in any encoding a function is likely to give it (docs/spec.md §8): the forms one by one
 * (pure), then every way out through the real server with a real secret full of the characters
 * JSON escapes (a PEM-like value: quotes, backslashes, newlines).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { maskSecrets, secretForms } from '../../src/services/secret-mask';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

const TOKEN = 'mask-test-token-0123456789';
const AUTH = { Authorization: `Bearer ${TOKEN}` };
const PEM =
  '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nqKcwggSjAgEAAoIBAQC7"q\\uote\n-----END PRIVATE KEY-----';

describe('secretForms / maskSecrets (pure)', () => {
  const value = 'pa"ss\\wo\nrd-0123 é';
  const encodings: [string, (v: string) => string][] = [
    ['as is', (v) => `x ${v} y`],
    ['JSON-escaped', (v) => JSON.stringify({ pw: v })],
    ['JSON-escaped twice', (v) => JSON.stringify(JSON.stringify({ pw: v }))],
    ['percent-encoded', (v) => `https://api.example/?key=${encodeURIComponent(v)}&x=1`],
    ['form-encoded', (v) => new URLSearchParams({ key: v }).toString()],
    ['base64, aligned', (v) => Buffer.from(v).toString('base64')],
    ['base64 after 1 byte', (v) => Buffer.from(`a${v}`).toString('base64')],
    ['base64 after 2 bytes (Basic auth)', (v) => Buffer.from(`ab:${v}`).toString('base64')],
    ['base64url', (v) => Buffer.from(`u:${v}`).toString('base64url')],
    ['hex', (v) => Buffer.from(v).toString('hex')],
    ['base64 of Latin-1 bytes (btoa)', (v) => Buffer.from(`x${v}`, 'latin1').toString('base64')],
  ];
  for (const [name, encode] of encodings) {
    test(`${name}: masked`, () => {
      const text = encode(value);
      const masked = maskSecrets(text, [value]);
      assert.ok(masked.includes('[secret]'), `${name}: ${masked}`);
      for (const form of secretForms(value)) assert.ok(!masked.includes(form), `${name}: ${form}`);
    });
  }

  test('a line of a multi-line value (a PEM key) is masked on its own', () => {
    const masked = maskSecrets('line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC end', [PEM]);
    assert.equal(masked, 'line: [secret] end');
  });

  test('short values and common text are left alone', () => {
    assert.equal(maskSecrets('a ab abc', ['ab']), 'a ab abc');
    // The value's short lines (the PEM's armour is masked with the value, not alone).
    assert.equal(maskSecrets('-----', [PEM]), '-----');
  });
});

describe('secret masking through the server', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({
      functions: {
        leak: `export const config = { secrets: ['PEM'] };
          export default async (event, context) => {
            const pw = context.secrets.PEM;
            const how = event.query.how;
            if (how === 'log-object') console.log({ pw });
            if (how === 'log-base64') console.log('auth', btoa('user:' + pw));
            if (how === 'log-url') console.log('https://api.example/?k=' + encodeURIComponent(pw));
            if (how === 'throw-json') throw new Error(JSON.stringify({ pw }));
            if (how === 'throw-name') { const err = new Error('x'); err.name = pw; throw err; }
            if (how === 'tojson') return { statusCode: 200, body: { toJSON() { throw new Error('no ' + JSON.stringify(pw)); } } };
            return 'done';
          };`,
      },
      env: { ADMIN_TOKEN: TOKEN },
    });
    assert.equal((await t.request.put('/_/secrets/PEM').set(AUTH).send(PEM)).status, 201);
  });
  after(() => t?.close());

  const escapes = [PEM, JSON.stringify(PEM).slice(1, -1), encodeURIComponent(PEM)];
  const leaks = (text: string) => escapes.some((form) => text.includes(form));

  for (const how of ['log-object', 'log-base64', 'log-url', 'throw-json', 'throw-name', 'tojson']) {
    test(`${how}: not in the answer, the record or the server log`, async () => {
      const id = `mask-${how}`;
      const r = await t.request.get(`/leak?how=${how}`).set('X-Request-Id', id);
      assert.ok(!leaks(r.text), `answer: ${r.text}`);
      if (how.startsWith('throw') || how === 'tojson') {
        assert.equal(r.status, 500);
        assert.match(r.text, /\[secret\]/);
      }
      let record = '';
      await eventually(async () => {
        const got = await t.request.get(`/_/invocations/${id}`).set(AUTH);
        record = got.text;
        return got.status === 200;
      });
      assert.ok(!leaks(record), `record: ${record}`);
      const log = JSON.stringify(t.logs);
      assert.ok(!leaks(log), 'a log line holds the value');
      if (how === 'log-base64') {
        const b64 = Buffer.from(`user:${PEM}`).toString('base64');
        assert.ok(!record.includes(b64.slice(8, 40)), `base64 in the record: ${record}`);
      }
      if (how.startsWith('log-')) assert.match(record, /\[secret\]/);
    });
  }

  test('draft output: masked too', async () => {
    const source = `export const config = { secrets: ['PEM'] };
      export default async (event, context) => { console.log({ pw: context.secrets.PEM });
        throw new Error(JSON.stringify(context.secrets.PEM)); };`;
    const r = await t.request.post('/_/drafts/leak').set(AUTH).send({ source });
    assert.equal(r.status, 200, r.text);
    assert.ok(!leaks(r.text), `draft: ${r.text}`);
    assert.match(r.text, /\[secret\]/);
  });
});
