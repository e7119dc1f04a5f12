/**
 * The admin routes for a function's data (docs/spec.md §8), all behind the bearer token:
 *
 * | route | answer |
 * |-------|--------|
 * | `GET /_/kv/<fn>?prefix=&cursor=&limit=` | `{ keys: [{ key, expiresAt? }], cursor? }` |
 * | `GET /_/kv/<fn>?key=<key>`, `GET /_/kv/<fn>/<key>` | the value (JSON); 404 NOT_FOUND when absent |
 * | `PUT` the same, `&ttl=&ifAbsent=` | body = the JSON value → `{ written }` |
 * | `DELETE` the same | `{ deleted: true \| false }` |
 * | `DELETE /_/kv/<fn>?all=true` | clears the namespace → `{ deleted: <how many keys> }` |
 * | `GET /_/secrets` | `{ secrets: [{ name, updatedAt }] }`, never values |
 * | `PUT /_/secrets/<name>` | body = the value, its bytes as sent (UTF-8) → 201 / 200 |
 * | `DELETE /_/secrets/<name>` | 204; 404 NOT_FOUND when absent |
 *
 * A key travels in the query (`?key=`, URL-encoded), where a URL parser leaves it as it is, or
 * as the path's last segment. The path form cannot carry every key: WHATWG URL parsing (every
 * browser, curl, Node's fetch) turns `/_/kv/fn/%2E` into `/_/kv/fn/` and `/_/kv/fn/..` into
 * `/_/kv/`. So a per-key request never becomes a namespace operation (docs/spec.md §6): clearing
 * a namespace needs `?all=true`, which no per-key URL carries, and an empty last segment is no
 * key (400 KV_INVALID_KEY for PUT and DELETE). With `?key=` the whole path is the function's name
 * (`/_/kv/a/b?key=c` = key `c` of `a/b`); in the path form the key is the last segment and the
 * name the rest (`/_/kv/a/b/c`); the namespace routes of a nested name then end with a slash.
 *
 * Data outlives its function: deleting a function leaves its keys here.
 */
import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import {
  InvalidBodyError,
  InvalidSecretError,
  KvInvalidArgumentError,
  KvInvalidKeyError,
  NotFoundError,
} from '../../errors';
import { exactFunctionName } from '../../functions/function-source';
import type { KvStore } from '../../services/kv/kv-store';
import type { SecretStore } from '../../services/secrets';
import type { BodyState } from '../body';
import type {
  KvClearAnswer,
  KvDeleteAnswer,
  KvListAnswer,
  KvPutAnswer,
  SecretListAnswer,
  SecretPutAnswer,
} from './api';

/** The stores, read per request (the server opens them while it starts: getters are fine). */
export interface DataStores {
  readonly kv: KvStore;
  readonly secrets: SecretStore;
}

/**
 * The function name and key (if any) of /_/kv/…: the key from `?key=` (the whole path is then
 * the name), else from the raw (undecoded) path's last segment.
 */
function kvTarget(ctx: Context): { ns: string; key?: string } {
  const rest = ctx.path.slice('/_/kv/'.length);
  const queried = ctx.query.key;
  if (queried !== undefined) {
    if (typeof queried !== 'string') throw new KvInvalidKeyError('send one key: ?key=<key>');
    return { ns: exactFunctionName(`/${rest.replace(/\/$/, '')}`), key: queried };
  }
  const slash = rest.lastIndexOf('/');
  if (slash === -1) return { ns: exactFunctionName(`/${rest}`) };
  const ns = exactFunctionName(`/${rest.slice(0, slash)}`);
  const raw = rest.slice(slash + 1);
  if (raw === '') return { ns };
  try {
    return { ns, key: decodeURIComponent(raw) };
  } catch {
    throw new KvInvalidKeyError(`the key ${JSON.stringify(raw)} is not valid percent-encoding`);
  }
}

function one(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function wholeNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,10}$/.test(value)) {
    throw new KvInvalidArgumentError(
      `${name} must be a whole number, got ${JSON.stringify(value)}`,
    );
  }
  return Number(value);
}

function flag(name: string, value: string | undefined): boolean {
  if (value === undefined || value === 'false' || value === '0') return false;
  if (value === 'true' || value === '1' || value === '') return true;
  throw new KvInvalidArgumentError(`${name} must be true or false`);
}

/** The secret name of /_/secrets/<name>. */
function secretName(ctx: Context): string {
  const name = ctx.path.slice('/_/secrets/'.length);
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name)) {
    const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
    throw new InvalidSecretError(
      `invalid secret name ${shown}: use [A-Za-z_][A-Za-z0-9_]*, at most 128 characters`,
    );
  }
  return name;
}

/** Registers the KV and secrets routes on the admin router (its prefix is /_). */
export function dataRoutes(router: Router, data: DataStores, auth: Middleware): void {
  router.get('/kv/*path', auth, async (ctx) => {
    const { ns, key } = kvTarget(ctx);
    if (key === undefined) {
      const page: KvListAnswer = await data.kv.list(ns, {
        prefix: one(ctx.query.prefix),
        cursor: one(ctx.query.cursor) || undefined,
        limit: wholeNumber('limit', one(ctx.query.limit)),
      });
      ctx.body = page;
      return;
    }
    const value = await data.kv.get(ns, key);
    if (value === null) throw new NotFoundError(`no key ${JSON.stringify(key)} in '${ns}'`);
    ctx.type = 'application/json';
    ctx.body = value;
  });

  router.put('/kv/*path', auth, async (ctx) => {
    const { ns, key } = kvTarget(ctx);
    if (key === undefined) throw new KvInvalidKeyError('PUT needs a key: /_/kv/<fn>/<key>');
    const body = (ctx.request as { body?: unknown }).body;
    if (body === undefined || !/json/i.test(ctx.request.type)) {
      throw new InvalidBodyError('send the value as JSON, with Content-Type: application/json');
    }
    const written = await data.kv.put(ns, key, JSON.stringify(body), {
      ttl: wholeNumber('ttl', one(ctx.query.ttl)),
      ifAbsent: flag('ifAbsent', one(ctx.query.ifAbsent)),
    });
    const answer: KvPutAnswer = { written };
    ctx.body = answer;
  });

  router.delete('/kv/*path', auth, async (ctx) => {
    const { ns, key } = kvTarget(ctx);
    const all = flag('all', one(ctx.query.all));
    if (key !== undefined) {
      if (all) throw new KvInvalidArgumentError('send either ?key=<key> or ?all=true, not both');
      const answer: KvDeleteAnswer = { deleted: await data.kv.delete(ns, key) };
      ctx.body = answer;
      return;
    }
    // Never what a per-key URL became (`/_/kv/fn/%2E` → `/_/kv/fn/`): only an explicit clear.
    if (!all) {
      throw new KvInvalidKeyError(
        `no key in ${JSON.stringify(ctx.path)}: send DELETE /_/kv/<fn>?key=<key> for one key ` +
          '(any key, "." and ".." included), or DELETE /_/kv/<fn>?all=true to clear the namespace',
      );
    }
    const answer: KvClearAnswer = { deleted: await data.kv.clear(ns) };
    ctx.body = answer;
  });

  router.get('/secrets', auth, async (ctx) => {
    const answer: SecretListAnswer = { secrets: await data.secrets.list() };
    ctx.body = answer;
  });

  router.put('/secrets/:name', auth, async (ctx) => {
    const name = secretName(ctx);
    // The exact bytes sent, whatever the Content-Type (a form or JSON body is not parsed).
    const raw = (ctx.state as BodyState).rawBody ?? Buffer.alloc(0);
    let value: string;
    try {
      value = new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch {
      throw new InvalidSecretError('a secret value must be UTF-8 text');
    }
    const { created } = await data.secrets.set(name, value);
    ctx.status = created ? 201 : 200;
    const answer: SecretPutAnswer = { name, created };
    ctx.body = answer;
  });

  router.delete('/secrets/:name', auth, async (ctx) => {
    const name = secretName(ctx);
    if (!(await data.secrets.delete(name))) throw new NotFoundError(`no secret '${name}'`);
    ctx.status = 204;
  });
}
