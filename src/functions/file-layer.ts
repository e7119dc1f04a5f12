/**
 * The file layer: the function files in FUNCTIONS_DIR, as the store reads and writes them. It
 * finds a name's file or package folder (never following a symlink out of the folder; never a
 * file inside a package or a node_modules folder), reads a file whole (again
 * when it changed while being read), writes a deploy atomically (a temp file linked or renamed
 * into place, its folders created one by one and watched at once), deletes a file, and lists
 * every function file in the folder tree. It caches nothing: the store (function-store.ts)
 * decides when to read.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FunctionCompileError, InvalidFunctionNameError } from '../errors';
import type { Logger } from '../observe/logger';
import { EXTENSIONS, MODULES_FOLDER, PACKAGE_FILE, nameOfFile } from './folder-index';
import type { FolderIndex } from './folder-index';
import { MAX_SEGMENTS, SEGMENT } from './function-source';
import { notFound } from './function-version';
import type { Language } from './function-version';

export const MAX_SOURCE_BYTES = 5 * 1024 * 1024;

/** The file (or package folder) that serves a name. */
export interface FoundFile {
  /** The file's real path, or the package folder's. */
  realPath: string;
  /** The file's language (a package's entry decides its own). */
  language: Language;
  /** Whether it is a package folder (docs/spec.md §2 "Packages"). */
  package: boolean;
  /**
   * Set when the name has more than one: a file in both languages, or a file and a package
   * folder (`realPath` is then the `.js` file, or the one file).
   */
  conflict?: string;
}

/** A function file as read whole. */
export interface FileRead {
  /** The file, relative to FUNCTIONS_DIR: `a/b.js` or `a/b.ts`. */
  file: string;
  /** The file as written; `''` when it is too large to read. */
  source: string;
  stat: fs.Stats;
  /** When the read began (ms). */
  checkedAt: number;
  /** Set, instead of reading it, when the file is over MAX_SOURCE_BYTES. */
  tooLarge?: FunctionCompileError;
}

export class FileLayer {
  readonly dir: string;
  /** FUNCTIONS_DIR's real path, once started. */
  root = '';
  private readonly logger: Logger;
  private readonly folders: FolderIndex;

  /** `folders`: the index of this folder, started (watching the root) by `start`. */
  constructor(dir: string, logger: Logger, folders: FolderIndex) {
    this.dir = dir;
    this.logger = logger;
    this.folders = folders;
  }

  /** Resolves the folder and starts watching it. @throws Error when the folder does not exist. */
  async start(): Promise<void> {
    this.root = await fsp.realpath(this.dir);
    if (!(await fsp.stat(this.root)).isDirectory()) throw new Error(`${this.dir} is not a folder`);
    this.folders.start(this.root);
  }

  /** The absolute path of a function's file in one language (no checks). */
  pathOf(name: string, language: Language = 'js'): string {
    return `${path.join(this.root, ...name.split('/'))}.${language}`;
  }

  /**
   * The file of `name`, or undefined when it has none.
   * @throws FunctionNotFoundError when its file leads outside the folder (a symlink: followed
   *   only when it stays inside).
   */
  async find(name: string): Promise<FoundFile | undefined> {
    const segments = name.split('/');
    if (segments.includes(MODULES_FOLDER)) return undefined;
    // A file inside a package is a module of it, never a function.
    for (let count = 1; count < segments.length; count++) {
      if (await this.isPackage(segments.slice(0, count).join('/'))) return undefined;
    }
    const found: { realPath: string; language: Language }[] = [];
    for (const language of ['js', 'ts'] as const) {
      try {
        found.push({ realPath: await fsp.realpath(this.pathOf(name, language)), language });
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    }
    const folder = (await this.isPackage(name))
      ? await fsp.realpath(path.join(this.root, ...segments))
      : undefined;
    if (found.length === 0 && folder === undefined) return undefined;
    const [{ realPath, language }] =
      found.length > 0 ? found : [{ realPath: folder as string, language: 'js' as const }];
    if (!realPath.startsWith(this.root + path.sep)) {
      this.logger.warn('function file leads outside the functions folder; ignored', { fn: name });
      throw notFound(name);
    }
    let conflict: string | undefined;
    if (found.length > 1) conflict = `both ${name}.js and ${name}.ts exist: remove one of them`;
    else if (found.length === 1 && folder !== undefined) {
      conflict = `both ${name}.${language} and the package folder ${name}/ exist: remove one of them`;
    }
    return { realPath, language, package: found.length === 0, conflict };
  }

  /** Whether the folder of `name` holds a package.json (a package function). */
  async isPackage(name: string): Promise<boolean> {
    try {
      return (await fsp.stat(path.join(this.root, ...name.split('/'), PACKAGE_FILE))).isFile();
    } catch {
      return false;
    }
  }

  /**
   * What the file of `name` at `realPath` is now, to tell whether it changed since read.
   * @throws FunctionNotFoundError when it is gone, or not a file.
   */
  async stat(name: string, realPath: string): Promise<fs.Stats> {
    const stat = await fsp.stat(realPath).catch((err: unknown) => {
      throw isMissing(err) ? notFound(name) : err;
    });
    if (!stat.isFile()) throw notFound(name);
    return stat;
  }

  /**
   * Reads a file whole, again if it changed while being read (a writer that is not atomic).
   * @throws FunctionNotFoundError when it is gone (deleted since found: as good as never there).
   */
  async read(name: string, language: Language, realPath: string): Promise<FileRead> {
    const file = `${name}.${language}`;
    for (let attempt = 0; ; attempt++) {
      const checkedAt = Date.now();
      const handle = await fsp
        .open(realPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
        .catch((err: unknown) => {
          throw isMissing(err) ? notFound(name) : err;
        });
      try {
        const before = await handle.stat();
        if (before.size > MAX_SOURCE_BYTES) {
          const tooLarge = new FunctionCompileError(
            `${file} is ${before.size} bytes; functions may be at most ${MAX_SOURCE_BYTES}`,
          );
          return { file, source: '', stat: before, checkedAt, tooLarge };
        }
        const source = await handle.readFile('utf8');
        const after = await handle.stat();
        const stable =
          after.size === before.size &&
          after.mtimeMs === before.mtimeMs &&
          Buffer.byteLength(source) === after.size;
        if (stable || attempt >= 3) return { file, source, stat: after, checkedAt };
      } finally {
        await handle.close();
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Whether FUNCTIONS_DIR holds a file for `name` (in either language) or a package folder. */
  async has(name: string): Promise<boolean> {
    if (await this.isPackage(name)) return true;
    for (const language of EXTENSIONS) {
      try {
        await fsp.access(this.pathOf(name, language.slice(1) as Language));
        return true;
      } catch {
        // not this one
      }
    }
    return false;
  }

  /**
   * Writes a function atomically (temp file in the same folder, then rename), so a reader sees
   * the old file or the new one, never half of one; a file of the same name in the other
   * language is removed after it. Resolves with whether the name was new. (It does not read the
   * file back: a concurrent deploy may already have replaced it.)
   * @throws InvalidFunctionNameError when a folder of the name is a symlink or not a folder.
   */
  async write(name: string, source: string, language: Language): Promise<{ created: boolean }> {
    const file = this.pathOf(name, language);
    const other = this.pathOf(name, language === 'js' ? 'ts' : 'js');
    await this.makeFolders(name);
    // A leading dot: never a function name, so a reader never serves a temp file.
    const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
    let created: boolean;
    try {
      await fsp.writeFile(temp, source, { flag: 'wx' });
      try {
        // link() fails if the name exists: of concurrent deploys of a new name, one creates it.
        await fsp.link(temp, file);
        created = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        await fsp.rename(temp, file);
        created = false;
      }
    } finally {
      await fsp.rm(temp, { force: true });
    }
    const replaced = await fsp.rm(other).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (!isMissing(err)) throw err;
        return false;
      },
    );
    return { created: created && !replaced };
  }

  /**
   * Creates the folders of a nested name one by one, refusing any that is a symlink or not a
   * folder, so a deploy never creates or writes anything outside FUNCTIONS_DIR. Each is watched
   * at once, so the next request resolves names under it.
   */
  private async makeFolders(name: string): Promise<void> {
    let dir = this.root;
    const segments = name.split('/').slice(0, -1);
    for (const [index, segment] of segments.entries()) {
      dir = path.join(dir, segment);
      const stat = await fsp.lstat(dir).catch((err: unknown) => {
        if (isMissing(err)) return undefined;
        throw err;
      });
      if (!stat) {
        await fsp.mkdir(dir).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
        });
      } else if (!stat.isDirectory()) {
        throw new InvalidFunctionNameError(
          `cannot deploy '${name}': ${path.relative(this.root, dir)} is not a plain folder`,
        );
      }
      this.folders.watch(segments.slice(0, index + 1).join('/'), index + 1);
    }
  }

  /** Deletes a function's file, `file` relative to FUNCTIONS_DIR (`a/b.js`). */
  async remove(file: string): Promise<void> {
    await fsp.rm(path.join(this.root, file));
  }

  /**
   * Deletes a package function's folder, `name` relative to FUNCTIONS_DIR, with everything in
   * it (its node_modules too). A symlink in it is removed, never followed.
   */
  async removePackage(name: string): Promise<void> {
    const dir = path.join(this.root, ...name.split('/'));
    if (!(await fsp.realpath(dir)).startsWith(this.root + path.sep)) throw notFound(name);
    await fsp.rm(dir, { recursive: true });
  }

  /** The name of every function file in the folder tree (at most MAX_SEGMENTS deep). */
  async names(): Promise<Set<string>> {
    const names = new Set<string>();
    const walk = async (dir: string, prefix: string[], depth: number): Promise<void> => {
      if (depth > MAX_SEGMENTS) return;
      const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const item of entries) {
        const name = nameOfFile(item.name);
        if (item.isDirectory() && SEGMENT.test(item.name) && item.name !== MODULES_FOLDER) {
          const folder = [...prefix, item.name].join('/');
          // A package is one function: its files are its modules.
          if (await this.isPackage(folder)) names.add(folder);
          else await walk(path.join(dir, item.name), [...prefix, item.name], depth + 1);
        } else if (name !== undefined) {
          names.add([...prefix, name].join('/'));
        }
      }
    };
    await walk(this.root, [], 1);
    return names;
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP';
}
