/**
 * Where a package function's cold first call goes (docs/packages.md): for a package importing
 * zod, the time of each step the server takes once per version, each run `--runs` times in this
 * process, with the modules the server uses: the bundle (bundle.ts: esbuild, the resolver's rules,
 * the hashes), vm2's compile of the bundle (a VMScript, as a worker compiles it) and the bundle's
 * top level in a fresh vm2 VM (the MAX_STARTUP_MS figure). The first call itself is `npm run
 * bench`'s "cold first call" (a new zod package, in turn with a new plain function).
 *
 *   npm run build && node dist/bench/package-cold.js [--runs 5]
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { VM, VMScript } from 'vm2';
import { bundlePackage } from '../src/functions/bundle';
import { fromBundle, stopCompiler } from '../src/functions/transform';

const ROOT = path.join(__dirname, '..', '..');

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
  const runs = Math.max(1, Number(values.runs));
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'koa-faas-package-cold-'));
  try {
    const folder = path.join(dir, 'zodfn');
    await fs.mkdir(folder);
    await fs.writeFile(path.join(folder, 'package.json'), '{"name":"zodfn"}');
    await fs.writeFile(
      path.join(folder, 'index.ts'),
      "import { z } from 'zod';\nconst User = z.object({ name: z.string() });\n" +
        "export default () => User.safeParse({ name: 'a' }).success;\n",
    );
    await fs.cp(path.join(ROOT, 'node_modules', 'zod'), path.join(dir, 'node_modules', 'zod'), {
      recursive: true,
    });
    const steps = { bundle: [] as number[], compile: [] as number[], topLevel: [] as number[] };
    let bytes = 0;
    for (let run = 0; run < runs; run++) {
      let started = performance.now();
      const bundle = await bundlePackage(folder, { name: 'zodfn', functionsDir: dir });
      steps.bundle.push(performance.now() - started);
      bytes = bundle.info.bytes;
      const compiled = fromBundle(bundle, 'zodfn/index.ts');
      started = performance.now();
      const script = new VMScript(compiled.code, compiled.filename).compile();
      steps.compile.push(performance.now() - started);
      const vm = new VM({ eval: false, wasm: false, allowAsync: true });
      vm.run('globalThis.module = { exports: {} }; globalThis.exports = module.exports;');
      started = performance.now();
      vm.run(script);
      steps.topLevel.push(performance.now() - started);
    }
    console.log(`zod package, bundle ${(bytes / 1024).toFixed(0)} KiB, ${runs} runs (ms, median):`);
    for (const [step, times] of Object.entries(steps)) {
      const shown = times.map((ms) => ms.toFixed(0)).join(' · ');
      console.log(`  ${step.padEnd(9)} ${median(times).toFixed(0).padStart(5)}   (${shown})`);
    }
  } finally {
    await stopCompiler();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

void main();
