/**
 * faas-js-runtime (Knative's Node.js function runtime, no sandbox) serving functions/hello.js, for
 * the side-by-side runs of bench.ts. It runs one function per process: this one adapts hello's
 * `(event, context)` to its `handle(context, body)`, evaluated once with node:vm in this context
 * (as bare-server.ts does), so it answers what hello returns at the cost of the runtime alone.
 *
 * It serves the function at `/` (one function per process) and answers `/health/liveness`.
 * Env: PORT, FUNCTIONS_DIR (HOST is ignored: it listens on every interface).
 */
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { start } from 'faas-js-runtime';
import type { Context } from 'faas-js-runtime';

type Fn = (event: unknown, context: unknown) => unknown;

const dir = path.resolve(process.env.FUNCTIONS_DIR ?? './functions');
const hello = vm.runInThisContext(fs.readFileSync(path.join(dir, 'hello.js'), 'utf8'), {
  filename: 'hello.js',
}) as Fn;

async function main(): Promise<void> {
  const server = await start(
    (context: Context) =>
      hello(
        { method: context.method, headers: context.headers, query: context.query },
        { functionName: 'hello' },
      ) as string,
    // Its default log level (warn): nothing per request.
    { port: Number(process.env.PORT ?? 8080) },
  );
  console.log(JSON.stringify({ msg: 'listening', server: 'faas-js-runtime' }));
  const stop = () => {
    server.close(() => process.exit(0));
    (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
