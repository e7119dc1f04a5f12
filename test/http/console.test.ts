/**
 * The console's assets at /_/ui/ (src/http/admin/console.ts): served from the build in dist/ui (npm
 * run build, which `npm test` runs first), with a strict CSP, immutable caching of hashed assets,
 * a revalidated index.html, and nothing but the built files reachable.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import Router from '@koa/router';
import Koa from 'koa';
import supertest from 'supertest';
import { CONTENT_SECURITY_POLICY, UI_DIR, consoleRoutes } from '../../src/http/admin/console';
import { errorBoundary } from '../../src/http/error-handler';
import { createLogger } from '../../src/observe/logger';
import { startServer } from '../support/server';
import type { TestServer } from '../support/server';

let t: TestServer;
let index = '';
let assets: string[] = [];

/** GET with the path sent exactly as written (no client-side normalisation of `..`). */
function rawGet(url: string, pathname: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, path: pathname, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  t = await startServer({ env: { ADMIN_TOKEN: 'console-test-token-0123456789' } });
  const res = await t.request.get('/_/ui/');
  index = res.text;
  assets = [...index.matchAll(/(?:src|href)="(assets\/[^"]+)"/g)].map((m) => m[1]);
});
after(() => t.close());

describe('index.html', () => {
  test('is served open (no token), revalidated, with the strict CSP and security headers', async () => {
    const res = await t.request.get('/_/ui/');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/html; charset=utf-8/);
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.match(res.headers.etag, /^"[\w-]+"$/);
    assert.equal(res.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['x-frame-options'], 'DENY');
    assert.equal(res.headers['referrer-policy'], 'no-referrer');
    const csp = CONTENT_SECURITY_POLICY;
    for (const directive of ["default-src 'none'", "script-src 'self'", "connect-src 'self'"]) {
      assert.ok(csp.includes(directive), directive);
    }
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:/);
  });

  test('has no inline script or style, no handler attribute, no other host', () => {
    const scripts = [...index.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    assert.equal(scripts.length, 1);
    for (const [, attributes, body] of scripts) {
      assert.match(attributes, /src="assets\/console-[A-Z0-9]{8}\.js"/);
      assert.equal(body.trim(), '');
    }
    assert.doesNotMatch(index, /<style\b|\son\w+=|style="/i);
    assert.doesNotMatch(index, /(?:src|href)="(?:https?:)?\/\//);
    assert.equal(assets.length, 2);
  });

  test('an ETag that matches answers 304', async () => {
    const first = await t.request.get('/_/ui/');
    const again = await t.request.get('/_/ui/').set('If-None-Match', first.headers.etag);
    assert.equal(again.status, 304);
    assert.equal(again.text, '');
  });

  test('/_/ui redirects to /_/ui/ (relative asset paths need the slash)', async () => {
    const res = await t.request.get('/_/ui').redirects(0);
    assert.equal(res.status, 301);
    assert.equal(res.headers.location, '/_/ui/');
  });
});

describe('hashed assets', () => {
  test('every asset the page names is served, immutable, with its type, gzipped on request', async () => {
    for (const asset of assets) {
      const plain = await t.request.get(`/_/ui/${asset}`).set('Accept-Encoding', 'identity');
      assert.equal(plain.status, 200, asset);
      assert.equal(plain.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.equal(plain.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
      assert.match(
        plain.headers['content-type'],
        asset.endsWith('.js') ? /^text\/javascript/ : /^text\/css/,
      );
      assert.equal(plain.headers['content-encoding'], undefined);
      const onDisk = fs.readFileSync(path.join(UI_DIR, asset));
      const gz = await rawBytes(`${t.url}/_/ui/${asset}`, { 'Accept-Encoding': 'gzip' });
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.match(String(gz.headers.vary), /Accept-Encoding/);
      assert.ok(zlib.gunzipSync(gz.body).equals(onDisk), asset);
      assert.ok(gz.body.length < onDisk.length / 2, `${asset} compresses`);
    }
  });

  test('the bundle names no other host to load from', () => {
    const js = fs.readFileSync(
      path.join(UI_DIR, assets.find((a) => a.endsWith('.js')) as string),
      'utf8',
    );
    // fetch() and imports go to relative paths only; the SVG namespace is a name, not a request.
    const urls = [...js.matchAll(/https?:\/\/[^\s"'`)]+/g)].map((m) => m[0]);
    assert.deepEqual(
      urls.filter((u) => !u.startsWith('http://www.w3.org/')),
      [],
    );
    assert.doesNotMatch(js, /\bimport\(\s*["'`]https?:/);
  });
});

function rawBytes(
  url: string,
  headers: Record<string, string>,
): Promise<{ headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

describe('nothing else is reachable', () => {
  const paths = [
    '/_/ui/assets/nope.js',
    '/_/ui/../package.json',
    '/_/ui/../../package.json',
    '/_/ui/%2e%2e/%2e%2e/package.json',
    '/_/ui/assets/..%2f..%2f..%2fpackage.json',
    '/_/ui/assets/%2e%2e%2f%2e%2e%2fsrc%2fhttp%2fconsole.js',
    '/_/ui//etc/passwd',
    '/_/ui/index.html%00',
    '/_/ui/.%2e/.%2e/.%2e/package.json',
    '/_/ui/assets',
    '/_/ui/assets/',
  ];
  for (const p of paths) {
    test(p, async () => {
      const res = await rawGet(t.url, p);
      assert.ok([301, 400, 404].includes(res.status), `${p}: ${res.status}`);
      assert.doesNotMatch(res.body, /"name": "koa-faas"|root:x:0|consoleRoutes/);
    });
  }

  test('other methods are 405', async () => {
    for (const method of ['post', 'put', 'delete'] as const) {
      const res = await t.request[method]('/_/ui/');
      assert.equal(res.status, 405, method);
    }
  });
});

describe('without a build', () => {
  test('answers 404 saying to build, then serves a build that appears', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kf-ui-'));
    const missing = path.join(dir, 'ui');
    const app = new Koa();
    app.use(errorBoundary(createLogger({ level: 'silent' })));
    const router = new Router({ prefix: '/_' });
    consoleRoutes(router, missing);
    app.use(router.routes());
    const request = supertest(app.callback());
    try {
      const res = await request.get('/_/ui/');
      assert.equal(res.status, 404);
      assert.match(res.body.error.message, /npm run build/);
      fs.mkdirSync(missing);
      fs.writeFileSync(path.join(missing, 'index.html'), '<!doctype html><title>x</title>');
      const built = await request.get('/_/ui/');
      assert.equal(built.status, 200);
      assert.equal(built.text, '<!doctype html><title>x</title>');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
