// What `tsc` does not build, after it (docs/operations.md "Building"):
// - the sandbox's JavaScript (src/worker/sandbox, read as text by workers) → dist/src/worker/sandbox;
// - the web console (ui/build.mjs) → dist/ui. With --if-changed (npm start), only when a file
//   under ui/ (or package-lock.json) is newer than the last build, so a start with nothing
//   changed does not bundle the console again.
//   node scripts/build-assets.mjs [--if-changed]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { newest } from './newest.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const sandbox = path.join(root, 'dist', 'src', 'worker', 'sandbox');
fs.rmSync(sandbox, { recursive: true, force: true });
fs.cpSync(path.join(root, 'src', 'worker', 'sandbox'), sandbox, { recursive: true });

const built = path.join(root, 'dist', 'ui', 'index.html');
const inputs = [path.join(root, 'ui'), path.join(root, 'package-lock.json')];
const builtAt = fs.statSync(built, { throwIfNoEntry: false })?.mtimeMs ?? 0;
if (process.argv.includes('--if-changed') && Math.max(...inputs.map(newest)) < builtAt) {
  process.stdout.write('ui build: dist/ui is up to date\n');
} else {
  execFileSync(process.execPath, [path.join(root, 'ui', 'build.mjs')], { stdio: 'inherit' });
}
