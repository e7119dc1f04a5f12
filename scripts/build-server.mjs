// `npm start`'s build (docs/operations.md "Building"): only what the server needs, and only what
// changed. tsc compiles src/ alone (tsconfig.server.json, incremental), and is not started at all
// when no file under src/ (nor a tsconfig or package-lock.json) is newer than its last build;
// then the sandbox files and, if ui/ changed, the console (build-assets.mjs --if-changed).
//   node scripts/build-server.mjs
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { newest } from './newest.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Runs `node <args>` and resolves when it exits 0. A SIGTERM or SIGINT sent to this process (npm
 * passes a supervisor's on) ends the child too, and then this process by the same signal, so that
 * a stop during the build leaves nothing running.
 */
function node(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: 'inherit' });
    const relay = (signal) => child.kill(signal);
    process.on('SIGTERM', relay).on('SIGINT', relay);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGTERM', relay).off('SIGINT', relay);
      if (signal) process.kill(process.pid, signal);
      else if (code === 0) resolve();
      else reject(new Error(`node ${args.join(' ')} exited with code ${code}`));
    });
  });
}

const info = path.join(root, 'dist', '.server.tsbuildinfo');
const main = path.join(root, 'dist', 'src', 'main.js');
const inputs = ['src', 'tsconfig.json', 'tsconfig.server.json', 'package-lock.json'];
const builtAt = fs.existsSync(main)
  ? (fs.statSync(info, { throwIfNoEntry: false })?.mtimeMs ?? 0)
  : 0;
if (Math.max(...inputs.map((file) => newest(path.join(root, file)))) < builtAt) {
  process.stdout.write('tsc: dist/src is up to date\n');
} else {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  await node([tsc, '-p', path.join(root, 'tsconfig.server.json')]);
  // tsc leaves the build info alone when nothing needed emitting: mark this build as done.
  const now = new Date();
  fs.utimesSync(info, now, now);
}
await node([path.join(root, 'scripts', 'build-assets.mjs'), '--if-changed']);
