/**
 * The entry of a package function (docs/spec.md §2 "Packages"): its package.json, read safely,
 * and the file it names.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FunctionCompileError } from '../errors';
import { MAX_MANIFEST_BYTES, inside, readRegular } from './bundle-files';
import type { PackageInfo } from './bundle-info';
import { LOADERS } from './bundle-resolver';

/** A package folder's entry and package.json, read and checked. */
export interface PackageEntry {
  /** Absolute path of the entry file. */
  entry: string;
  info: PackageInfo;
}

/**
 * The entry of a package function: package.json's `main` (with `.ts`/`.js` or `/index.*` tried
 * after it, as Node does), else `index.ts`, else `index.js`, inside the folder.
 * @throws FunctionCompileError when package.json is not a JSON object, `main` leads outside the
 *   folder or to no file, or there is no entry.
 */
export async function packageEntry(dir: string, shown: string): Promise<PackageEntry> {
  // Its own regular file, of bounded size (docs/spec.md §2 "Packages"): a link out of the folder
  // would put the start of another file (/etc/passwd) in JSON.parse's message.
  const manifest = await fsp.realpath(path.join(dir, 'package.json')).catch(() => '');
  if (!inside(manifest, dir)) {
    throw new FunctionCompileError(`${shown}/package.json leads outside the folder`);
  }
  let json: Record<string, unknown>;
  try {
    const { contents } = await readRegular(manifest, MAX_MANIFEST_BYTES);
    json = JSON.parse(contents.toString('utf8')) as Record<string, unknown>;
    if (json === null || typeof json !== 'object' || Array.isArray(json))
      throw new Error('not an object');
  } catch (err) {
    throw new FunctionCompileError(
      `${shown}/package.json: not a JSON object (${(err as Error).message})`,
    );
  }
  const main = typeof json.main === 'string' && json.main !== '' ? json.main : undefined;
  const tries = main
    ? [main, `${main}.ts`, `${main}.js`, path.join(main, 'index.ts'), path.join(main, 'index.js')]
    : ['index.ts', 'index.js'];
  for (const candidate of tries) {
    const file = path.resolve(dir, candidate);
    if (!inside(file, dir)) {
      throw new FunctionCompileError(
        `${shown}/package.json: main '${main}' leads outside the folder`,
      );
    }
    const real = await fsp.realpath(file).catch(() => undefined);
    if (!real || !(await fsp.stat(real)).isFile()) continue;
    if (!inside(real, dir)) {
      throw new FunctionCompileError(
        `${shown}/package.json: main '${main}' leads outside the folder`,
      );
    }
    if (LOADERS[path.extname(real)] === undefined || path.extname(real) === '.json') {
      throw new FunctionCompileError(
        `${shown}/package.json: main '${main}' is not a .js or .ts file`,
      );
    }
    const dependencies: Record<string, string> = {};
    if (json.dependencies && typeof json.dependencies === 'object') {
      for (const [name, range] of Object.entries(json.dependencies as Record<string, unknown>)) {
        if (typeof range === 'string') dependencies[name] = range;
      }
    }
    return {
      entry: real,
      info: {
        ...(typeof json.name === 'string' ? { name: json.name } : {}),
        ...(typeof json.version === 'string' ? { version: json.version } : {}),
        entry: path.relative(dir, real).split(path.sep).join('/'),
        dependencies,
      },
    };
  }
  throw new FunctionCompileError(
    main
      ? `${shown}/package.json: main '${main}' names no file`
      : `${shown}: no entry file: package.json has no main, and there is no index.ts or index.js`,
  );
}
