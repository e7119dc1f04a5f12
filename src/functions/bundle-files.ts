/**
 * The files a bundle reads, read safely, and what tells that they changed (docs/spec.md §2
 * "Packages"): every read is of a regular file (never a FIFO or a device: a build never hangs on
 * one, nor reads without end) of bounded size; the manifests esbuild reads itself are checked
 * before a build (checkManifests); a bundle's stamps (path, size, mtime, inode of each file, the
 * lockfiles, a missing package's manifest) are checked with one stat each (stampsUnchanged), and
 * a failed bundle keeps the stamps of the files whose change may fix it (stampsOf).
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import type { Dirent, Stats } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FunctionCompileError } from '../errors';

/** The lockfiles whose contents a package's version covers. */
const LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml'];

/** The files esbuild reads itself while it resolves (a package.json, Yarn PnP's), never through onLoad. */
const MANIFESTS = new Set(['package.json', '.pnp.data.json', '.pnp.cjs', '.pnp.js']);
/** The largest manifest a build reads, bytes. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/** The largest lockfile whose contents a version covers, bytes (a larger one is stamped only). */
const MAX_LOCKFILE_BYTES = 64 * 1024 * 1024;
/**
 * A file a build reads is at most this many times MAX_BUNDLE_BYTES (a file may shrink in the
 * bundle, losing comments and types; the bundle's own size is checked after).
 */
export const FILE_BYTES_FACTOR = 4;
/** The most entries checkManifests looks at (a node_modules of 300,000 files is refused). */
const MAX_CHECKED_ENTRIES = 300_000;

/** What the store stats to know that a bundle's inputs are unchanged (`missing`: it was absent). */
export interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
  missing?: boolean;
}

/** Whether `file` is a regular file (following links). */
export async function isFile(file: string): Promise<boolean> {
  return (await fsp.stat(file).catch(() => undefined))?.isFile() ?? false;
}

/** Whether `file` is `dir` or inside it (absolute paths). */
export function inside(file: string, dir: string | undefined): boolean {
  return dir !== undefined && (file === dir || file.startsWith(dir + path.sep));
}

/**
 * Reads a regular file of at most `limit` bytes, through one descriptor: a FIFO is opened without
 * blocking and refused, like a device, so a read never hangs nor goes on without end
 * (docs/spec.md §2 "Packages").
 * @throws Error saying what the file is instead (`not a regular file`, `N bytes; at most M`).
 */
export async function readRegular(
  file: string,
  limit: number,
): Promise<{ contents: Buffer; stat: Stats }> {
  const handle = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > limit) throw new Error(`${stat.size} bytes; at most ${limit}`);
    const contents = Buffer.alloc(stat.size);
    let read = 0;
    while (read < contents.length) {
      const { bytesRead } = await handle.read(contents, read, contents.length - read, read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return { contents: contents.subarray(0, read), stat };
  } finally {
    await handle.close();
  }
}

/** The folder `dir` and its parents up to `top` (both included); only `dir` when it is not in `top`. */
export function foldersUpTo(dir: string, top: string | undefined): string[] {
  const folders = [dir];
  if (!top || !inside(dir, top)) return folders;
  for (let at = dir; at !== top;) {
    at = path.dirname(at);
    folders.push(at);
  }
  return folders;
}

/**
 * esbuild reads package.json files (and Yarn PnP's manifests) itself, in every folder it looks
 * in while it resolves, with no limit and following links: a FIFO there would hang the build, a
 * link to /dev/zero exhaust esbuild's memory. So before a build every such file in the folders
 * it may look in (docs/spec.md §2 "Packages") must be a regular file inside `within` (the
 * function's folder, or FUNCTIONS_DIR) of at most MAX_MANIFEST_BYTES: the trees `roots` (each
 * node_modules it may search, the package folder), and the folders `parents` (up to
 * FUNCTIONS_DIR). A linked folder leading elsewhere inside `within` is checked too (esbuild
 * follows it, and looks in its parents).
 * @throws FunctionCompileError naming the first file that is not so (relative to `within`).
 */
export async function checkManifests(
  roots: string[],
  parents: string[],
  within: string,
): Promise<void> {
  const shown = (file: string) => path.relative(within, file) || '.';
  const seen = new Set<string>();
  let entries = 0;
  const checkEntry = async (file: string) => {
    let real: string;
    try {
      real = await fsp.realpath(file);
    } catch {
      return; // a dangling link: esbuild sees no file either
    }
    const stat = await fsp.stat(real);
    if (stat.isDirectory()) return;
    let problem: string | undefined;
    if (!inside(real, within)) problem = 'it leads outside the folder';
    else if (!stat.isFile()) problem = 'not a regular file';
    else if (stat.size > MAX_MANIFEST_BYTES) {
      problem = `${stat.size} bytes; at most ${MAX_MANIFEST_BYTES}`;
    }
    if (problem) throw new FunctionCompileError(`${shown(file)}: ${problem}`);
  };
  const checkFolder = async (dir: string, walk: boolean) => {
    let items: Dirent[];
    try {
      items = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      return; // not there (or not a folder): esbuild finds nothing in it either
    }
    entries += items.length;
    if (entries > MAX_CHECKED_ENTRIES) {
      throw new FunctionCompileError(
        `${shown(dir)}: more than ${MAX_CHECKED_ENTRIES} files in the folders a bundle may read`,
      );
    }
    for (const item of items) {
      const file = path.join(dir, item.name);
      if (MANIFESTS.has(item.name)) await checkEntry(file);
      if (!walk) continue;
      if (item.isDirectory()) await visit(file);
      else if (item.isSymbolicLink()) {
        const real = await fsp.realpath(file).catch(() => undefined);
        if (real === undefined || !inside(real, within)) continue;
        if ((await fsp.stat(real)).isDirectory()) {
          for (const parent of foldersUpTo(path.dirname(real), within)) {
            await checkFolder(parent, false);
          }
          await visit(real);
        }
      }
    }
  };
  const visit = async (dir: string) => {
    if (seen.has(dir)) return;
    seen.add(dir);
    await checkFolder(dir, true);
  };
  for (const parent of parents) await checkFolder(parent, false);
  for (const root of roots) await visit(root);
}

const STAMPS = Symbol('stamps');

/** Keeps with a bundle's compile error the files whose change may fix it (see stampsOf). */
export function withStamps(err: FunctionCompileError, stamps: FileStamp[]): FunctionCompileError {
  Object.defineProperty(err, STAMPS, { value: stamps });
  return err;
}

/** The files to stat to know a failed bundle's inputs are unchanged; undefined for other errors. */
export function stampsOf(err: unknown): FileStamp[] | undefined {
  return (err as { [STAMPS]?: FileStamp[] } | undefined)?.[STAMPS];
}

/** Stats `file` for a stamp (a missing file is stamped missing: its creation is a change). */
export async function stampOf(file: string): Promise<FileStamp> {
  try {
    const stat = await fsp.stat(file);
    return { path: file, size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino };
  } catch {
    return { path: file, size: -1, mtimeMs: -1, ino: -1, missing: true };
  }
}

/** The lockfiles of `dir`: their hashes (for the version) and stamps. */
export async function lockfiles(
  dir: string,
): Promise<{ hashes: [string, string][]; stamps: FileStamp[] }> {
  const hashes: [string, string][] = [];
  const stamps: FileStamp[] = [];
  for (const name of [
    ...LOCKFILES,
    'package.json',
    path.join('node_modules', '.package-lock.json'),
  ]) {
    const file = path.join(dir, name);
    const stamp = await stampOf(file);
    stamps.push(stamp);
    if (stamp.missing) continue;
    // Only a regular file inside the folder, of bounded size (docs/spec.md §2 "Packages"): a link
    // out of it, a FIFO, a device is stamped, never read.
    const real = await fsp.realpath(file).catch(() => '');
    if (!inside(real, dir)) continue;
    const contents = await readRegular(real, MAX_LOCKFILE_BYTES).then(
      (r) => r.contents,
      () => undefined,
    );
    if (contents) hashes.push([`\0${file}`, createHash('sha256').update(contents).digest('hex')]);
  }
  // The node_modules folder itself: a package installed into it (or removed) changes its mtime,
  // so an import that was missing is looked for again.
  stamps.push(await stampOf(path.join(dir, 'node_modules')));
  return { hashes, stamps };
}

/**
 * Whether every stamped file is as stamped (none changed, none appeared, none went).
 */
export async function stampsUnchanged(stamps: readonly FileStamp[]): Promise<boolean> {
  const now = await Promise.all(stamps.map((stamp) => stampOf(stamp.path)));
  return now.every(
    (stamp, i) =>
      stamp.missing === stamps[i].missing &&
      stamp.size === stamps[i].size &&
      stamp.mtimeMs === stamps[i].mtimeMs &&
      stamp.ino === stamps[i].ino,
  );
}
