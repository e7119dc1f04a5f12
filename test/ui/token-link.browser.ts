/**
 * The console's sign-in link (docs/console.md), in a real Chromium: `/_/ui/#token=<token>`, as a
 * server that made its own token prints it, signs the tab in, keeps the token in this tab only,
 * and takes it out of the address bar and the history at once.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skip = fs.existsSync(CHROMIUM)
  ? false
  : `no Chromium at ${CHROMIUM}: apt-get install chromium (CI installs it), or set CHROMIUM_PATH`;
if (skip) process.stderr.write(`token link browser test SKIPPED: ${skip}\n`);

const TOKEN = 'link-test-token-0123456789_-abc';

describe('the console sign-in link, in Chromium', { skip }, () => {
  let server: TestServer;
  let browser: Browser;

  before(async () => {
    server = await startServer({
      functions: { hello: "module.exports = () => 'hi';" },
      env: { ADMIN_TOKEN: TOKEN },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('signs in, keeps the token in the tab, and leaves it in no URL', async () => {
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(20_000);
    await page.goto(`${server.url}/_/ui/#token=${TOKEN}`);
    await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
    await page.getByText('hello', { exact: true }).first().waitFor();
    assert.equal(await page.evaluate('sessionStorage.getItem("koa-faas.adminToken")'), TOKEN);
    assert.equal(page.url(), `${server.url}/_/ui/#/functions`);
    assert.ok(!page.url().includes(TOKEN));
    // Back does not bring the link back: it was replaced, not pushed.
    await page.goBack();
    assert.ok(!page.url().includes(TOKEN), page.url());
  });

  it('a wrong token in the link shows the sign-in form, not the views', async () => {
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(20_000);
    await page.goto(`${server.url}/_/ui/#token=not-the-token-0123456789`);
    await page.getByLabel('Admin token', { exact: true }).waitFor();
    assert.ok(!page.url().includes('not-the-token'));
  });
});
