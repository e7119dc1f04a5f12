// Builds the web console (docs/spec.md §11) into dist/ui, served at /_/ui/ by src/http/admin/console.ts:
// one esbuild bundle (Preact + CodeMirror 6, no CDN) whose file names carry their content hash,
// and an index.html that loads them (no inline script or style: the CSP forbids both).
//   node ui/build.mjs            (npm run build runs it after tsc)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(root, '..', 'dist', 'ui');

fs.rmSync(out, { recursive: true, force: true });
const result = await build({
  entryPoints: { console: path.join(root, 'src', 'main.tsx') },
  bundle: true,
  minify: true,
  sourcemap: 'linked',
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: path.join(out, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((file) => path.relative(out, file));
const find = (ext) => {
  const found = outputs.find((file) => file.startsWith('assets/console-') && file.endsWith(ext));
  if (!found) throw new Error(`ui build: no ${ext} output`);
  return found;
};
const html = fs
  .readFileSync(path.join(root, 'index.html'), 'utf8')
  .replace('%SCRIPT%', find('.js'))
  .replace('%STYLE%', find('.css'));
fs.writeFileSync(path.join(out, 'index.html'), html);
const bytes = outputs
  .filter((file) => !file.endsWith('.map'))
  .map((file) => `${file} ${fs.statSync(path.join(out, file)).size} B`);
process.stdout.write(`ui build: dist/ui (${bytes.join(', ')})\n`);
