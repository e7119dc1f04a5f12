/**
 * The sandbox's own code as text. The JavaScript that runs inside vm2 (not in Node) lives in
 * ./sandbox/ as plain `.js` files, linted and formatted as such; the worker reads each one once,
 * when it starts, and compiles it into a VMScript. `npm run build` copies that folder beside the
 * compiled worker (dist/src/worker/sandbox/), so the path relative to this file is the same in
 * src/ and in dist/ (and in the container image, which keeps dist/src).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** A file of ./sandbox/, e.g. `envelope.js` or `globals/intrinsics.js`. */
export function readSandboxFile(name: string): string {
  return readFileSync(path.join(__dirname, 'sandbox', name), 'utf8');
}
