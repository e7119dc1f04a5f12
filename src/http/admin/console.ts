/**
 * The web console's assets at /_/ui/ (docs/spec.md §11), open like /_/health: the page holds no data;
 * everything it shows comes from the admin routes, with the token the person types in.
 *
 * | route | answer |
 * |-------|--------|
 * | `GET /_/ui` | 301 to `/_/ui/` (the page's relative asset paths need the slash) |
 * | `GET /_/ui/` | `index.html`, `Cache-Control: no-cache` (revalidated by ETag: a new build shows at once) |
 * | `GET /_/ui/assets/<name>-<hash>.<ext>` | the built asset, `Cache-Control: public, max-age=31536000, immutable` |
 * | anything else under /_/ui/ | 404 NOT_FOUND |
 *
 * The assets are what `npm run build` wrote to dist/ui (ui/build.mjs), read once into memory,
 * with gzip copies of the text ones, so a path is only ever looked up in that set and never
 * reaches the file system. Every answer carries a strict Content-Security-Policy: scripts and
 * styles from this server only (no inline script), requests to this server only, no frames.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type Router from '@koa/router';
import type { Context } from 'koa';
import { NotFoundError } from '../../errors';

/** Where `npm run build` writes the console (dist/ui, beside dist/src). */
export const UI_DIR = path.join(__dirname, '..', '..', '..', 'ui');

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** A built asset name with its content hash (esbuild's `[name]-[hash]`). */
const HASHED = /-[A-Z0-9]{8}\.[a-z]+$/;

interface Asset {
  body: Buffer;
  gzip?: Buffer;
  type: string;
  etag: string;
  immutable: boolean;
}

/** Reads every file under `dir` into memory, by its path relative to `dir` (`/`-separated). */
export function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        walk(name);
        continue;
      }
      if (!entry.isFile()) continue;
      const body = fs.readFileSync(path.join(dir, name));
      const type = TYPES[path.extname(name)] ?? 'application/octet-stream';
      const text = /^(text\/|application\/json|image\/svg)/.test(type);
      assets.set(name, {
        body,
        gzip: text && body.length > 1024 ? zlib.gzipSync(body, { level: 9 }) : undefined,
        type,
        etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
        immutable: HASHED.test(name),
      });
    }
  };
  walk('');
  return assets;
}

/** Registers /_/ui and /_/ui/* on the admin router (its prefix is /_). */
export function consoleRoutes(router: Router, dir = UI_DIR): void {
  let assets: Map<string, Asset> | undefined;
  const load = () => {
    // Read once; a missing build is looked for again on the next request.
    if (!assets) {
      try {
        assets = loadAssets(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        throw new NotFoundError('the console is not built: run `npm run build`');
      }
    }
    return assets;
  };

  const serve = (ctx: Context, name: string) => {
    const asset = load().get(name);
    if (!asset) throw new NotFoundError(`no console asset '${name.slice(0, 200)}'`);
    ctx.set(SECURITY_HEADERS);
    ctx.set('Cache-Control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    ctx.set('ETag', asset.etag);
    ctx.vary('Accept-Encoding');
    ctx.type = asset.type;
    if (ctx.get('if-none-match') === asset.etag) {
      ctx.status = 304;
      return;
    }
    if (asset.gzip && /\bgzip\b/i.test(ctx.get('accept-encoding'))) {
      ctx.set('Content-Encoding', 'gzip');
      ctx.body = asset.gzip;
    } else {
      ctx.body = asset.body;
    }
  };

  // The router ignores a trailing slash: /_/ui and /_/ui/ both come here.
  router.get('/ui', (ctx) => {
    if (ctx.path === '/_/ui/') return serve(ctx, 'index.html');
    ctx.status = 301;
    ctx.redirect('/_/ui/');
  });
  router.get('/ui/*asset', (ctx) => {
    // Only names the build wrote are served; this is a map look-up, never a path on disk.
    serve(ctx, ctx.path.slice('/_/ui/'.length));
  });
}
