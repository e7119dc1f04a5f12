/**
 * The web console in a real browser (docs/spec.md §11): Debian's Chromium driven by playwright-core,
 * headless, against the real server on an ephemeral port. Run with `npm run test:ui` (not part
 * of `npm test`: file name *.browser.ts). Skips, saying why, when /usr/bin/chromium (or
 * CHROMIUM_PATH) is missing; CI installs it (.ci/run).
 *
 * Screenshots of every view go to a fresh folder the test prints (CONSOLE_SCREENSHOTS sets it).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skip = fs.existsSync(CHROMIUM)
  ? false
  : `no Chromium at ${CHROMIUM}: apt-get install chromium (CI installs it), or set CHROMIUM_PATH`;
if (skip) process.stderr.write(`console browser tests SKIPPED: ${skip}\n`);

// Browser globals used inside page.evaluate (this file compiles without the DOM library).
declare const DataTransfer: new () => { setData(type: string, value: string): void };
declare const ClipboardEvent: new (type: string, init: object) => object;
type AddEventListener = (
  type: string,
  listener: (event: unknown) => void,
  capture: boolean,
) => void;
interface ViolationEvent {
  effectiveDirective: string;
  blockedURI: string;
  sourceFile: string;
  composedPath(): { nodeType: number }[];
}

const TOKEN = 'console-test-token-0123456789';
// Generous: CI shares two cores with the server, its workers and Chromium.
const STEP_MS = 20_000;

const BROKEN = `module.exports = async (event, context) => {
  const name = event.body.name;
  return { hello: name ;
};
`;

const GOOD = `module.exports = async (event, context) => {
  console.log('greet called by', event.headers['x-caller']);
  await context.kv.put('last-caller', { name: event.body.name });
  return {
    hello: event.body.name,
    caller: event.headers['x-caller'],
    method: event.method,
    authorization: event.headers.authorization ?? null,
  };
};
`;

/** Answers with what it received: the Content-Type and the body as the event had them. */
const SHAPE = `module.exports = async (event) => ({
  type: event.headers['content-type'] ?? null,
  body: event.body ?? null,
  base64: event.isBase64Encoded ?? false,
});
`;

const DRAFT = `module.exports = async (event, context) => {
  console.log('draft line', event.subpath);
  await context.kv.put('draft-key', 1);
  return { hello: 'draft ' + event.body.name, seen: await context.kv.get('last-caller') };
};
`;

interface Session {
  server: TestServer;
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** Every URL the page asked for. */
  requests: string[];
  /** Console errors, page errors and CSP violations. */
  problems: string[];
  /** The CSP violations alone (securitypolicyviolation events and the browser's messages). */
  violations: string[];
  shots: string;
}

async function open(env: Record<string, string>): Promise<Session> {
  const server = await startServer({ env });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const requests: string[] = [];
  const problems: string[] = [];
  const violations: string[] = [];
  page.on('request', (request) => requests.push(request.url()));
  // Every CSP violation, wherever it happens (a shadow root's too: the event is composed), is
  // reported by the page itself, before any script of its own runs; and the browser's console
  // message for it, whatever its level, counts as one too.
  await context.exposeBinding('reportViolation', (_source, text: string) => {
    violations.push(text);
    problems.push(`CSP violation: ${text}`);
  });
  await context.addInitScript(() => {
    const report = (globalThis as unknown as { reportViolation(text: string): void })
      .reportViolation;
    (globalThis as unknown as { addEventListener: AddEventListener }).addEventListener(
      'securitypolicyviolation',
      (event) => {
        const e = event as unknown as ViolationEvent;
        const where = e.composedPath().find((node) => node.nodeType === 1) as
          { nodeName: string; className: string } | undefined;
        report(
          `${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} at ` +
            `${where ? `${where.nodeName}.${where.className}` : e.sourceFile}`,
        );
      },
      true,
    );
  });
  page.on('console', (message) => {
    const text = message.text();
    if (/Content.Security.Policy/i.test(text)) violations.push(`console: ${text}`);
    if (
      (message.type() === 'error' || /Content.Security.Policy/i.test(text)) &&
      !/status of 4\d\d/.test(text)
    ) {
      problems.push(`console: ${text}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  const shots =
    process.env.CONSOLE_SCREENSHOTS ?? fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-console-'));
  fs.mkdirSync(shots, { recursive: true });
  return { server, browser, context, page, requests, problems, violations, shots };
}

/** Resolves once `check` holds (polled), or fails saying `what` after STEP_MS. */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + STEP_MS;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Lets the page finish what it queued (a violation report is a task of its own). */
async function settle(page: Page): Promise<void> {
  await page.evaluate(
    () =>
      new Promise((resolve) => {
        (
          globalThis as unknown as { requestAnimationFrame(f: () => void): void }
        ).requestAnimationFrame(() => setTimeout(resolve, 50));
      }),
  );
}

/** A field's value once it is not empty (it is filled by a fetch), within STEP_MS. */
async function filledValue(field: Locator): Promise<string> {
  const until = Date.now() + STEP_MS;
  for (;;) {
    const value = await field.inputValue();
    if (value !== '' || Date.now() > until) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function shoot(s: Session, name: string): Promise<void> {
  await s.page.screenshot({ path: path.join(s.shots, `${name}.png`), fullPage: true });
}

/**
 * Replaces the editor's whole text as a person would: selects it all, types the first character
 * over the selection (with the keyboard), and pastes the rest (a paste event: typed text would be
 * auto-indented on the way, and Chromium's insertText turns leading spaces into U+00A0).
 */
async function typeSource(page: Page, source: string): Promise<void> {
  const editor = page.getByRole('textbox', { name: 'Source', exact: true });
  await editor.click();
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.type(source[0]);
  await editor.evaluate((element, text) => {
    const data = new DataTransfer();
    data.setData('text/plain', text);
    const paste = new ClipboardEvent('paste', {
      clipboardData: data,
      bubbles: true,
      cancelable: true,
    });
    (element as unknown as { dispatchEvent(event: object): boolean }).dispatchEvent(paste);
  }, source.slice(1));
  // The editor holds the source, whole.
  const until = Date.now() + STEP_MS;
  while ((await editorText(page)) !== source) {
    if (Date.now() > until) assert.equal(await editorText(page), source);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The text of the editor (its lines joined). */
async function editorText(page: Page): Promise<string> {
  // By id, not role: the editor may be on a hidden tab panel.
  const lines = await page.locator('#source .cm-line').allTextContents();
  return lines.join('\n');
}

/** Runs a command line (Copy as curl's) in bash and resolves with its output. */
function shell(line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', ['-c', line], { timeout: STEP_MS }, (err, stdout, stderr) =>
      err ? reject(new Error(`${line}: ${err.message} ${stderr}`)) : resolve(stdout),
    );
  });
}

describe('console in Chromium', { skip }, () => {
  let s: Session;
  let liveVersion = '';

  before(async () => {
    s = await open({ ADMIN_TOKEN: TOKEN });
    process.stderr.write(`console screenshots: ${s.shots}\n`);
  });

  after(async () => {
    await s?.browser.close();
    await s?.server.close();
  });

  it('refuses a wrong token, then signs in with the right one (kept in sessionStorage only)', async () => {
    const { page, server } = s;
    await page.goto(`${server.url}/_/ui/`);
    const field = page.getByLabel('Admin token', { exact: true });
    await field.fill('not-the-token-at-all');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByText('That token is not the admin token.').waitFor();
    await shoot(s, '01-sign-in');
    await field.fill(TOKEN);
    await field.press('Enter');
    await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
    assert.equal(await page.evaluate('sessionStorage.getItem("koa-faas.adminToken")'), TOKEN);
    assert.equal(await page.evaluate('localStorage.length'), 0);
    for (const url of s.requests) assert.ok(!url.includes(TOKEN), `token in a URL: ${url}`);
  });

  it('marks the line of a syntax error when a deploy answers 422', async () => {
    const { page } = s;
    await page.getByRole('button', { name: 'New function', exact: true }).click();
    await page.getByLabel('Function name', { exact: true }).fill('greet');
    await typeSource(page, BROKEN);
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    const marked = page.locator('.cm-error-line');
    await marked.waitFor();
    assert.equal(await marked.count(), 1);
    assert.equal(await marked.getAttribute('data-error-line'), '3');
    assert.equal((await marked.textContent())?.trim(), 'return { hello: name ;');
    await page.getByRole('alert').filter({ hasText: 'line 3' }).waitFor();
    await shoot(s, '02-compile-error');
  });

  it("replaces the editor's text by typing over a selection, without a CSP violation", async () => {
    const { page } = s;
    // Over the whole text (its first token a highlighted keyword), then over one word.
    await typeSource(page, GOOD);
    await page.locator('#source .cm-line').first().click();
    await page.keyboard.press('Home');
    await page.keyboard.press('Shift+End');
    await page.keyboard.type('module.exports = async (event, context) => {');
    assert.equal(await editorText(page), GOOD);
    await settle(page);
    assert.deepEqual(s.violations, []);
  });

  it('deploys the fixed source', async () => {
    const { page, server } = s;
    await typeSource(page, GOOD);
    assert.equal(await page.locator('.cm-error-line').count(), 0, 'an edit clears the mark');
    // By keyboard: Tab indents in the editor; Escape, then Tab, leaves it for the next control.
    await page.keyboard.press('Escape');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement.textContent'), 'Deploy');
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/functions\/greet$/);
    await page.getByRole('heading', { name: 'greet', exact: true }).waitFor();
    const live = await server.request
      .get('/_/functions/greet')
      .set('Authorization', `Bearer ${TOKEN}`);
    assert.equal(live.status, 200);
    assert.equal(live.body.source, GOOD);
    liveVersion = live.body.version as string;
    await page.getByText(liveVersion).first().waitFor();
    await shoot(s, '03-deployed');
  });

  it('invokes with POST, a header and a JSON body, and shows the status and body', async () => {
    const { page } = s;
    await page.getByLabel('Method', { exact: true }).selectOption('POST');
    await page.getByLabel(/^Headers/).fill('X-Caller: playwright\nContent-Type: application/json');
    await page.getByLabel('Request body', { exact: true }).fill('{"name":"Ada"}');
    await page.getByRole('button', { name: 'Invoke', exact: true }).click();
    const response = page.getByRole('region', { name: 'Response', exact: true });
    await response.getByText('200 OK').waitFor();
    const body = JSON.parse((await response.getByTestId('response-body').textContent()) ?? '');
    // The admin token never reaches a function.
    assert.deepEqual(body, {
      hello: 'Ada',
      caller: 'playwright',
      method: 'POST',
      authorization: null,
    });
    await response.getByRole('img', { name: /^Server timing: queue/ }).waitFor();
    await shoot(s, '03-invoke');
  });

  it("links the request id to its record, with the function's console line", async () => {
    const { page } = s;
    const response = page.getByRole('region', { name: 'Response', exact: true });
    const link = response.getByRole('link').first();
    const id = (await link.textContent()) ?? '';
    assert.match(id, /^[0-9a-f-]{36}$/);
    await link.click();
    await page.getByRole('heading', { name: `Invocation ${id}` }).waitFor();
    await page.getByText('greet called by playwright').waitFor();
    await page
      .getByText('warm')
      .or(page.getByText('cold (compiled its version first)'))
      .first()
      .waitFor();
    await shoot(s, '04-record');
    await page.getByRole('link', { name: 'Invocations', exact: true }).click();
    const table = page.getByRole('table', { name: 'Invocations' });
    await table.getByRole('link', { name: id }).waitFor();
    await page.getByLabel('Status', { exact: true }).selectOption('5xx');
    await table.getByText('No invocations match.').waitFor();
    await page.getByLabel('Status', { exact: true }).selectOption('2xx');
    await table.getByRole('link', { name: id }).waitFor();
    await shoot(s, '05-invocations');
  });

  it('invokes async: 202, then the record of the queued invocation', async () => {
    const { page, server } = s;
    await page.goto(`${server.url}/_/ui/#/functions/greet`);
    await page.getByLabel('Method', { exact: true }).selectOption('POST');
    await page.getByLabel(/^Headers/).fill('X-Caller: later\nContent-Type: application/json');
    await page.getByLabel('Request body', { exact: true }).fill('{"name":"Async"}');
    await page.getByLabel(/^Async/).check();
    await page.getByRole('button', { name: 'Invoke', exact: true }).click();
    const response = page.getByRole('region', { name: 'Response', exact: true });
    await response.getByText('202 Accepted').waitFor();
    await response.getByRole('link').first().click();
    await page.getByText('succeeded', { exact: true }).waitFor();
    await page.getByText('greet called by later').waitFor();
    await shoot(s, '05-async-record');
  });

  it('runs a draft without changing the live version or its data', async () => {
    const { page, server } = s;
    await page.goto(`${server.url}/_/ui/#/functions/greet`);
    await page.getByRole('heading', { name: 'greet', exact: true }).waitFor();
    await typeSource(page, DRAFT);
    await page.getByLabel('Method', { exact: true }).selectOption('POST');
    await page.getByLabel('Sub-path', { exact: true }).fill('/try');
    await page.getByLabel(/^Headers/).fill('Content-Type: application/json');
    await page.getByLabel('Request body', { exact: true }).fill('{"name":"Bob"}');
    await page.getByRole('button', { name: 'Run draft', exact: true }).click();
    const response = page.getByRole('region', { name: 'Response', exact: true });
    await response.getByText('draft run, not deployed').waitFor();
    const body = JSON.parse((await response.getByTestId('response-body').textContent()) ?? '');
    // The draft's KV is its own, empty: it cannot read the function's data.
    assert.deepEqual(body, { hello: 'draft Bob', seen: null });
    await response.getByText('draft line /try').waitFor();
    await shoot(s, '06-draft');

    const live = await server.request
      .get('/_/functions/greet')
      .set('Authorization', `Bearer ${TOKEN}`);
    assert.equal(live.body.version, liveVersion);
    assert.equal(live.body.source, GOOD);
    const called = await server.request.post('/greet').send({ name: 'Cy' });
    assert.equal(called.body.hello, 'Cy');
  });

  it('lists the KV entry the function wrote (and none the draft wrote)', async () => {
    const { page } = s;
    await page.getByRole('tab', { name: 'KV', exact: true }).click();
    const table = page.getByRole('table', { name: 'Keys of greet' });
    await table.getByText('last-caller', { exact: true }).waitFor();
    assert.equal(await table.getByText('draft-key').count(), 0);
    await page.getByRole('button', { name: 'View last-caller', exact: true }).click();
    const value = page.getByLabel('Value (JSON)', { exact: true });
    // The value is fetched after the click: the field shows empty until it arrives.
    assert.deepEqual(JSON.parse(await filledValue(value)), { name: 'Cy' });
    await shoot(s, '07-kv');
  });

  it('asks before leaving a function whose edits are not deployed', async () => {
    const { page } = s;
    // The editor still holds the draft (not deployed): leaving would lose it.
    let asked = '';
    page.once('dialog', (dialog) => {
      asked = `${dialog.type()}: ${dialog.message()}`;
      void dialog.dismiss();
    });
    await page.getByRole('link', { name: 'Health', exact: true }).click();
    await until('the question', () => asked !== '');
    assert.match(asked, /^confirm: .*not deployed/);
    assert.match(page.url(), /#\/functions\/greet$/);
    await page.getByRole('heading', { name: 'greet', exact: true }).waitFor();
    assert.equal(await editorText(page), DRAFT);
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('link', { name: 'Health', exact: true }).click();
    await page.getByRole('heading', { name: 'Workers', exact: true }).waitFor();
  });

  it('sends a JSON body the same way from Invoke, Run draft and Copy as curl', async () => {
    const { page, server } = s;
    await server.writeFunction('shape', SHAPE);
    await page.goto(`${server.url}/_/ui/#/functions/shape`);
    await page.getByRole('heading', { name: 'shape', exact: true }).waitFor();
    await page.getByLabel('Method', { exact: true }).selectOption('POST');
    await page.getByLabel(/^Headers/).fill('');
    await page.getByLabel('Request body', { exact: true }).fill('{"n":5}');
    await page.getByText('Sends Content-Type: application/json').waitFor();
    const response = page.getByRole('region', { name: 'Response', exact: true });
    const bodyShown = async () =>
      JSON.parse((await response.getByTestId('response-body').textContent()) ?? '') as unknown;

    await page.getByRole('button', { name: 'Invoke', exact: true }).click();
    await response.getByText('200 OK').waitFor();
    const invoked = await bodyShown();

    await page.getByRole('button', { name: 'Run draft', exact: true }).click();
    await response.getByText('draft run, not deployed').waitFor();
    const drafted = await bodyShown();

    await page.getByRole('button', { name: 'Copy as curl', exact: true }).click();
    const line = await filledValue(page.getByLabel('curl command', { exact: true }));
    assert.match(line, /-H 'Content-Type: application\/json'/);
    const out = await shell(line);
    const curled = JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)) as unknown;

    const expected = { type: 'application/json', body: { n: 5 }, base64: false };
    assert.deepEqual(invoked, expected, 'Invoke');
    assert.deepEqual(drafted, expected, 'Run draft');
    assert.deepEqual(curled, expected, 'Copy as curl');

    // A Content-Type typed in the Headers box is the one all three send.
    await page.getByLabel(/^Headers/).fill('Content-Type: text/plain');
    await page.getByRole('button', { name: 'Copy as curl', exact: true }).click();
    await until('the new curl line', async () =>
      (await page.getByLabel('curl command', { exact: true }).inputValue()).includes('text/plain'),
    );
    const typed = await page.getByLabel('curl command', { exact: true }).inputValue();
    assert.equal(typed.match(/Content-Type/gi)?.length, 1, typed);
    await page.getByRole('button', { name: 'Invoke', exact: true }).click();
    await until('the text answer', async () =>
      ((await response.getByTestId('response-body').textContent()) ?? '').includes('text/plain'),
    );
    assert.deepEqual(await bodyShown(), { type: 'text/plain', body: '{"n":5}', base64: false });
    await page.getByLabel(/^Headers/).fill('');
  });

  it('shows the new version in the header after a redeploy', async () => {
    const { page, server } = s;
    const header = page.locator('header.view-head');
    const before = await server.request
      .get('/_/functions/shape')
      .set('Authorization', `Bearer ${TOKEN}`);
    await header.getByText(before.body.version as string).waitFor();
    const next = `${SHAPE}// v2\n`;
    await typeSource(page, next);
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await page.getByText(/^Deployed shape, version /).waitFor();
    const after = await server.request
      .get('/_/functions/shape')
      .set('Authorization', `Bearer ${TOKEN}`);
    assert.equal(after.body.source, next);
    assert.notEqual(after.body.version, before.body.version);
    await header.getByText(after.body.version as string).waitFor();
    assert.equal(await header.getByText(before.body.version as string).count(), 0);
  });

  it('clears an error message once the next action succeeds', async () => {
    const { page } = s;
    const sourceError = page.locator('.source-panel .notice-error');
    const invokeError = page.locator('.invoke-panel .notice-error');
    const fixed = `${SHAPE}// v3\n`;
    // A deploy that fails, then a draft run that works: the deploy's error goes.
    await typeSource(page, BROKEN);
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await sourceError.filter({ hasText: 'Not deployed' }).waitFor();
    await typeSource(page, fixed);
    await page.getByRole('button', { name: 'Run draft', exact: true }).click();
    await page.getByText(/^Draft ran/).waitFor();
    await until('the deploy error to go', async () => (await sourceError.textContent()) === '');
    // A refused header line, then a deploy that works: the Invoke panel's error goes too.
    await page.getByLabel(/^Headers/).fill('not a header');
    await page.getByRole('button', { name: 'Invoke', exact: true }).click();
    await invokeError.filter({ hasText: 'headers line 1' }).waitFor();
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await page.getByText(/^Deployed shape, version /).waitFor();
    await until('the header error to go', async () => (await invokeError.textContent()) === '');
    // An error, then another tab: gone when the code tab shows again.
    await page.getByRole('button', { name: 'Invoke', exact: true }).click();
    await invokeError.filter({ hasText: 'headers line 1' }).waitFor();
    await page.getByRole('tab', { name: 'KV', exact: true }).click();
    await page.getByRole('tab', { name: 'Code and invoke', exact: true }).click();
    assert.equal(await invokeError.textContent(), '');
    await page.getByLabel(/^Headers/).fill('');
  });

  it('asks the browser before a reload loses edits that are not deployed', async () => {
    const { page } = s;
    await typeSource(page, `${SHAPE}// not deployed\n`);
    let kind = '';
    page.once('dialog', (dialog) => {
      kind = dialog.type();
      void dialog.accept();
    });
    await page.reload();
    await page.getByRole('heading', { name: 'shape', exact: true }).waitFor();
    assert.equal(kind, 'beforeunload');
    const removed = await s.server.request
      .delete('/_/functions/shape')
      .set('Authorization', `Bearer ${TOKEN}`);
    assert.equal(removed.status, 204);
  });

  it('shows health with workers, isolation and the traffic chart', async () => {
    const { page } = s;
    await page.getByRole('link', { name: 'Health', exact: true }).click();
    await page.getByRole('heading', { name: 'Workers', exact: true }).waitFor();
    await page.getByRole('heading', { name: 'Isolation', exact: true }).waitFor();
    await page.getByRole('img', { name: /^Requests and errors per 10 seconds/ }).waitFor();
    await shoot(s, '08-health');
  });

  it('sets and lists a secret by name only', async () => {
    const { page } = s;
    await page.getByRole('link', { name: 'Secrets', exact: true }).click();
    await page.getByLabel('Secret name', { exact: true }).fill('API_KEY');
    await page.getByLabel('Secret value', { exact: true }).fill('s3cr3t-value');
    await page.getByRole('button', { name: 'Set secret', exact: true }).click();
    await page.getByRole('table', { name: 'Secrets' }).getByText('API_KEY').waitFor();
    assert.equal(await page.getByText('s3cr3t-value').count(), 0);
    await shoot(s, '09-secrets');
  });

  it('fits a narrow window', async () => {
    const { page, server } = s;
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${server.url}/_/ui/#/functions/greet`);
    await page.getByRole('button', { name: 'Invoke', exact: true }).waitFor();
    const overflow = (await page.evaluate(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    )) as number;
    assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow} px`);
    await shoot(s, '10-narrow');
    await page.setViewportSize({ width: 1400, height: 900 });
  });

  it('deletes the function after a confirmation', async () => {
    const { page, server } = s;
    await page.goto(`${server.url}/_/ui/#/functions/greet`);
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete greet?' });
    await dialog.waitFor();
    await shoot(s, '11-delete');
    await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();
    assert.equal(
      (await server.request.get('/_/functions/greet').set('Authorization', `Bearer ${TOKEN}`))
        .status,
      200,
    );
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Yes, delete greet' }).click();
    await page.waitForURL(/#\/functions$/);
    await page.getByRole('table', { name: 'Functions' }).getByText('No functions yet').waitFor();
    assert.equal((await server.request.post('/greet').send({})).status, 404);
  });

  it('asked nothing of any host but the server, and met no error or CSP violation', () => {
    const origin = new URL(s.server.url).origin;
    assert.ok(s.requests.length > 10);
    const elsewhere = s.requests.filter(
      (url) =>
        !url.startsWith(`${origin}/`) && !url.startsWith('blob:') && !url.startsWith('data:'),
    );
    assert.deepEqual(elsewhere, []);
    assert.deepEqual(s.problems, []);
  });
});

/**
 * A function's page, as an attacker would write it: HTML whose script reads the console's admin
 * token from sessionStorage, calls the admin API with it, and posts what it got back to its own
 * function (which logs it). `own` is a Content-Security-Policy the function sets itself.
 */
function thief(own?: string): string {
  const script = `(async () => {
  let loot;
  try { loot = 'token=' + sessionStorage.getItem('koa-faas.adminToken'); }
  catch (err) { loot = 'storage refused: ' + err.name; }
  let token = '';
  try { token = sessionStorage.getItem('koa-faas.adminToken') || ''; } catch {}
  let admin;
  try {
    const res = await fetch('/_/secrets', { headers: { Authorization: 'Bearer ' + token } });
    admin = res.status + ' ' + (await res.text()).slice(0, 200);
  } catch (err) { admin = 'fetch refused: ' + err.name; }
  let cookies;
  try { cookies = 'cookies=' + document.cookie; } catch (err) { cookies = 'cookies refused: ' + err.name; }
  await fetch(location.pathname, { method: 'POST', body: loot + ' | admin ' + admin + ' | ' + cookies });
  document.title = 'posted';
})();`;
  const headers: Record<string, string> = { 'content-type': 'text/html; charset=utf-8' };
  if (own) headers['content-security-policy'] = own;
  return `module.exports = async (event) => {
  if (event.method === 'POST') {
    console.log('received ' + event.body);
    return { statusCode: 204 };
  }
  return {
    statusCode: 200,
    headers: ${JSON.stringify(headers)},
    body: ${JSON.stringify(`<!doctype html><title>page</title><p>hello</p><script>${script}</script>`)},
  };
};
`;
}

describe("a function's page in the console's tab", { skip }, () => {
  let s: Session;
  before(async () => {
    s = await open({ ADMIN_TOKEN: TOKEN });
    await s.server.writeFunction('page', thief());
    // Its own policy tries to give its page the origin back: the server's sandbox stays.
    await s.server.writeFunction(
      'page-own-csp',
      thief("sandbox allow-scripts allow-same-origin; default-src * 'unsafe-inline'"),
    );
  });
  after(async () => {
    await s?.browser.close();
    await s?.server.close();
  });

  /** What the function logged from its page's POST (its invocation records), once there. */
  async function received(fn: string): Promise<string> {
    const until = Date.now() + STEP_MS;
    for (;;) {
      const list = await s.server.request
        .get(`/_/invocations?fn=${fn}`)
        .set('Authorization', `Bearer ${TOKEN}`);
      const lines = (list.body.invocations as { function: string; logs: string[] }[])
        .filter((r) => r.function === fn)
        .flatMap((r) => r.logs);
      const line = lines.find((l) => l.includes('received '));
      if (line !== undefined) return line;
      if (Date.now() > until) throw new Error(`${fn} received no POST from its page`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  for (const fn of ['page', 'page-own-csp']) {
    it(`${fn}: signed in at /_/ui/, then /${fn} in the same tab never reaches the token`, async () => {
      const { page, server } = s;
      await page.goto(`${server.url}/_/ui/`);
      const field = page.getByLabel('Admin token', { exact: true });
      const heading = page.getByRole('heading', { name: 'Functions', exact: true });
      // The page renders one or the other once its script ran (signed in already, or not).
      await field.or(heading).first().waitFor();
      if (await field.isVisible()) {
        await field.fill(TOKEN);
        await field.press('Enter');
      }
      await heading.waitFor();
      assert.equal(await page.evaluate('sessionStorage.getItem("koa-faas.adminToken")'), TOKEN);

      await page.goto(`${server.url}/${fn}`);
      await page.waitForFunction('document.title === "posted"', undefined, { timeout: STEP_MS });
      const line = await received(fn);
      // The script ran, and got nothing: no token, no storage, no admin answer, no cookie.
      assert.ok(!line.includes(TOKEN), `the function received the token: ${line}`);
      assert.match(line, /storage refused: SecurityError/);
      assert.match(line, /admin 401 /);
      assert.match(line, /cookies refused: SecurityError/);
      // Back in the console, the token is still there: the page could not remove it either.
      await page.goto(`${server.url}/_/ui/`);
      await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
    });
  }
});

describe('console without ADMIN_TOKEN', { skip }, () => {
  let s: Session;
  before(async () => {
    s = await open({});
  });
  after(async () => {
    await s?.browser.close();
    await s?.server.close();
  });

  it('says how to enable the admin API', async () => {
    await s.page.goto(`${s.server.url}/_/ui/`);
    await s.page.getByRole('heading', { name: 'The admin API is disabled' }).waitFor();
    await s.page.getByText('ADMIN_TOKEN=$(openssl rand -hex 24) npm start').waitFor();
    assert.equal(await s.page.getByLabel('Admin token', { exact: true }).count(), 0);
    await shoot(s, '00-disabled');
    assert.deepEqual(s.problems, []);
  });
});
