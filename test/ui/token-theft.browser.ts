/**
 * A function's page must never reach the console's admin token (docs/spec.md §4), tried in a real
 * Chromium as an attacker would: sign in at /_/ui/, then open /page in the same tab, where the
 * function answers `text/html` with a script that reads sessionStorage and localStorage, calls
 * the admin API with whatever it found, and posts its loot back to itself. Function answers are
 * sandboxed documents (an opaque origin): the script runs, but finds no token.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { startServer } from '../support/server';
import { eventually } from '../support/wait';
import type { TestServer } from '../support/server';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skip = fs.existsSync(CHROMIUM)
  ? false
  : `no Chromium at ${CHROMIUM}: apt-get install chromium (CI installs it), or set CHROMIUM_PATH`;
if (skip) process.stderr.write(`token theft browser test SKIPPED: ${skip}\n`);

const TOKEN = 'theft-test-token-0123456789';
const STEP_MS = 20_000;

// GET: the page with its script. POST: the loot, kept in KV for the test to read.
const PAGE = `module.exports = async (event, context) => {
  if (event.method === 'POST') {
    await context.kv.put('loot', event.body);
    return { kept: true };
  }
  const script = \`
    (async () => {
      const loot = { storage: [], admin: null, errors: [] };
      try {
        for (const store of [sessionStorage, localStorage]) {
          for (let i = 0; i < store.length; i++) loot.storage.push(store.getItem(store.key(i)));
        }
      } catch (err) { loot.errors.push('storage: ' + err.name); }
      try {
        const token = loot.storage.find((v) => v && v.length >= 16) || '';
        const r = await fetch('/_/functions/page', { headers: { authorization: 'Bearer ' + token } });
        loot.admin = r.status + ' ' + (await r.text()).slice(0, 200);
      } catch (err) { loot.errors.push('admin: ' + err.name); }
      try {
        await fetch('/page', { method: 'POST', headers: { 'content-type': 'text/plain' },
          body: JSON.stringify(loot) });
      } catch (err) { loot.errors.push('post: ' + err.name); }
      document.title = 'done';
    })();
  \`;
  return {
    statusCode: 200,
    headers: { 'content-type': 'text/html; charset=utf-8',
               'content-security-policy': "script-src 'unsafe-inline'" },
    body: '<!doctype html><title>page</title><h1>hello</h1><script>' + script + '</script>',
  };
};
`;

describe('a function page and the console token, in Chromium', { skip }, () => {
  let server: TestServer;
  let browser: Browser;

  before(async () => {
    server = await startServer({ functions: { page: PAGE }, env: { ADMIN_TOKEN: TOKEN } });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('signed in, then /page in the same tab: its script runs but never gets the token', async () => {
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(STEP_MS);
    await page.goto(`${server.url}/_/ui/`);
    await page.getByLabel('Admin token', { exact: true }).fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
    assert.equal(await page.evaluate('sessionStorage.getItem("koa-faas.adminToken")'), TOKEN);

    // The same tab, the same origin as the console.
    await page.goto(`${server.url}/page`);
    // Polled from outside: the page's own policy forbids the eval a waitForFunction string needs.
    const until = Date.now() + STEP_MS;
    while ((await page.title()) !== 'done') {
      assert.ok(Date.now() < until, "the function's page did not finish its script");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    // The script ran and posted back (so the test would see a stolen token), with none in it.
    let loot = '';
    await eventually(async () => {
      const r = await server.request.get('/_/kv/page/loot').set('Authorization', `Bearer ${TOKEN}`);
      if (r.status !== 200) return false;
      loot = JSON.stringify(r.body);
      return true;
    }, STEP_MS);
    assert.ok(!loot.includes(TOKEN), `the function's page read the admin token: ${loot}`);
    const parsed = JSON.parse(JSON.parse(loot) as string) as { errors: string[]; admin: string };
    // Storage of an opaque origin is refused; the admin API saw no token.
    assert.ok(
      parsed.errors.some((e) => e.startsWith('storage: SecurityError')),
      JSON.stringify(parsed),
    );
    assert.doesNotMatch(String(parsed.admin), /^200 /);

    // The console, back in this tab, is still signed in: its own storage was never touched.
    await page.goto(`${server.url}/_/ui/`);
    assert.equal(await page.evaluate('sessionStorage.getItem("koa-faas.adminToken")'), TOKEN);
  });

  it('every answer of a function path is a sandboxed document, the function’s own policy beside it', async () => {
    const answers = [
      await server.request.get('/page'),
      await server.request.get('/no-such-function'),
      await server.request.post('/page').set('Prefer', 'respond-async').send('x'),
      await server.request.options('/page').set('Access-Control-Request-Method', 'PUT'),
    ];
    for (const r of answers) {
      const csp = ([] as string[]).concat(r.headers['content-security-policy'] ?? []).join(', ');
      assert.match(csp, /(^|, )sandbox allow-scripts/, `${r.status}: ${csp}`);
      assert.doesNotMatch(csp, /allow-same-origin/);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
    }
    assert.match(String(answers[0].headers['content-security-policy']), /unsafe-inline/);
  });
});
