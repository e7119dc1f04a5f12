/**
 * The baseline: the seed's design, rebuilt for the benchmark. Koa + safeify with its own runner:
 * every request reads functions/<name>.js from disk and runs
 * `return (<source>)(event, context)` through `safeVm.run`, which sends the code and the sandbox
 * to a worker process over IPC, where vm2 builds a new context for it.
 *
 * Env: PORT (0 = any), HOST, FUNCTIONS_DIR, FUNCTION_TIMEOUT_MS. Prints
 * `{"msg":"listening","port":N}` when ready.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import Koa from 'koa';
import { Safeify } from 'safeify';

const dir = path.resolve(process.env.FUNCTIONS_DIR ?? './functions');
const timeout = Number(process.env.FUNCTION_TIMEOUT_MS ?? 5000);

const safeVm = new Safeify({ workers: 2, timeout, asyncTimeout: timeout, unrestricted: true });

const app = new Koa();
app.use(async (ctx) => {
  if (ctx.path === '/_/health') {
    ctx.body = { status: 'ok' };
    return;
  }
  const name = ctx.path.slice(1);
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(name)) {
    ctx.status = 404;
    return;
  }
  let source: string;
  try {
    source = await fsp.readFile(path.join(dir, `${name}.js`), 'utf8');
  } catch {
    ctx.status = 404;
    ctx.body = { error: `function '${name}' not found` };
    return;
  }
  // The seed files are one function expression, usually with a trailing `;`.
  const expression = source.trim().replace(/;+$/, '');
  const event = {
    method: ctx.method,
    path: ctx.path,
    query: { ...ctx.query },
    headers: ctx.headers,
  };
  const context = { functionName: name };
  try {
    ctx.body = await safeVm.run(`return (${expression})(event, context)`, { event, context });
  } catch (err) {
    ctx.status = 500;
    ctx.body = { error: err instanceof Error ? err.message : String(err) };
  }
});

async function main(): Promise<void> {
  await safeVm.init();
  const server = app.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    console.log(JSON.stringify({ msg: 'listening', server: 'seed', port }));
  });
  const stop = () => {
    safeVm.destroy();
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
