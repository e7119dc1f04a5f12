/**
 * The ceiling: a bare Koa app that runs functions/<name>.js in-process, without sandbox, worker
 * or per-request file read. The file is evaluated once (on the first request for that name) with
 * node:vm in this context and then called directly, so it answers exactly what the function
 * returns, at the cost of Koa and JSON alone.
 *
 * Env: PORT (0 = any), HOST, FUNCTIONS_DIR. Prints `{"msg":"listening","port":N}` when ready.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import vm from 'node:vm';
import Koa from 'koa';

type Fn = (event: unknown, context: unknown) => unknown;

const dir = path.resolve(process.env.FUNCTIONS_DIR ?? './functions');
const loaded = new Map<string, Promise<Fn>>();

function load(name: string): Promise<Fn> {
  let fn = loaded.get(name);
  if (!fn) {
    fn = fsp
      .readFile(path.join(dir, `${name}.js`), 'utf8')
      .then((source) => vm.runInThisContext(source, { filename: `${name}.js` }) as Fn);
    loaded.set(name, fn);
  }
  return fn;
}

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
  const fn = await load(name);
  const event = { method: ctx.method, path: ctx.path, query: ctx.query, headers: ctx.headers };
  ctx.body = await fn(event, { functionName: name });
});

const server = app.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  console.log(JSON.stringify({ msg: 'listening', server: 'bare', port }));
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
