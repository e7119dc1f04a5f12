/**
 * The body parser: koa-bodyparser for JSON, forms and text; raw bytes for any other type.
 */
import type { Context, Middleware, Next } from 'koa';
import bodyParser from 'koa-bodyparser';
import { tooLarge } from './error-handler';

/** Whether the request carries a body at all (type-is's definition). */
function hasBody(ctx: Context): boolean {
  return ctx.get('transfer-encoding') !== '' || Number(ctx.get('content-length') || 0) > 0;
}

/** Reads the raw body up to `limit` bytes; past it, stops reading and throws 413. */
async function readRaw(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || NaN);
  if (declared > limit) throw tooLarge(`request body is over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(`request body is over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Parses the body into ctx.request.body: JSON (any JSON value) → value, form → object,
 * text/plain → string, any other type → base64 text with `ctx.state.bodyIsBase64` set; no body
 * → undefined. Over `limit` bytes → 413, malformed → 400 (mapped in error-handler.ts).
 */
export function body(limit: number): Middleware {
  const parse = bodyParser({
    enableTypes: ['json', 'form', 'text'],
    jsonLimit: `${limit}b`,
    formLimit: `${limit}b`,
    textLimit: `${limit}b`,
    strict: false,
  });
  return async (ctx: Context, next: Next) => {
    const request = ctx.request as Context['request'] & { body?: unknown; rawBody?: string };
    if (!hasBody(ctx)) {
      // koa-bodyparser would set {} here; a function should see that there was no body.
      return next();
    }
    await parse(ctx, async () => undefined);
    if (request.rawBody === undefined) {
      // A type koa-bodyparser does not read (binary, unknown): hand it over as base64.
      request.body = (await readRaw(ctx, limit)).toString('base64');
      ctx.state.bodyIsBase64 = true;
    }
    await next();
  };
}
