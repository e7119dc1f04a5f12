/**
 * The function store: maps names to the files in FUNCTIONS_DIR, reads each version once, and
 * serves it from memory until the file changes. fs.watch on every folder invalidates entries at once;
 * as a fallback for file systems that do not report changes (some network and container mounts),
 * a cached entry older than a second is checked with one stat before it is served again. So no
 * request reads a file, and a change is seen by the next request, at most a second later.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FunctionCompileError, FunctionNotFoundError, InvalidFunctionNameError } from '../errors';
import { MAX_SEGMENTS, SEGMENT, hashSource } from './function-source';
import { checkSyntax } from './compile-errors';
import type { Logger } from '../observe/logger';

/** One version of a function, as read from disk. */
export interface FunctionVersion {
  name: string;
  /** Content hash of the source (first 16 hex digits of its SHA-256). */
  version: string;
  source: string;
  bytes: number;
  modified: Date;
  /** Set when the source does not compile; such a version is never sent to a worker. */
  compileError?: FunctionCompileError;
}

export interface FunctionInfo {
  name: string;
  version: string;
  bytes: number;
  modified: string;
  status: 'ok' | 'compile_error';
  error?: string;
}

interface Entry {
  fn: FunctionVersion;
  realPath: string;
  ino: number;
  checkedAt: number;
}

export const MAX_SOURCE_BYTES = 5 * 1024 * 1024;
const REVALIDATE_MS = 1000;
const MAX_WATCHED_DIRS = 1000;
const MAX_MISSES = 1024;

/** What the admin API shows of a version (no source). */
export function functionInfo(fn: FunctionVersion): FunctionInfo {
  return {
    name: fn.name,
    version: fn.version,
    bytes: fn.bytes,
    modified: fn.modified.toISOString(),
    status: fn.compileError ? 'compile_error' : 'ok',
    ...(fn.compileError ? { error: fn.compileError.message } : {}),
  };
}

export class FunctionStore {
  readonly dir: string;
  private root = '';
  private readonly logger: Logger;
  private readonly cache = new Map<string, Entry>();
  /** Names known not to exist, until a time (ms); see rememberMiss. */
  private readonly misses = new Map<string, number>();
  private readonly loading = new Map<string, Promise<Entry>>();
  /** One watcher per folder, by path relative to the root ('' is the root). */
  private readonly watchers = new Map<string, fs.FSWatcher>();
  /** Bumped on every change event: a load that raced a change is served but not cached. */
  private changes = 0;

  constructor(options: { dir: string; logger: Logger }) {
    this.dir = options.dir;
    this.logger = options.logger;
  }

  /** Resolves the folder and starts watching it. @throws Error when the folder does not exist. */
  async start(): Promise<void> {
    this.root = await fsp.realpath(this.dir);
    if (!(await fsp.stat(this.root)).isDirectory()) throw new Error(`${this.dir} is not a folder`);
    this.watchDir('', 0);
  }

  close(): void {
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  /**
   * Watches one folder (not recursively: Node 20's recursive watch on Linux watches files, and
   * stops reporting a file once a new version is renamed over it), then its sub-folders.
   */
  private watchDir(rel: string, depth: number): void {
    if (this.watchers.has(rel) || depth >= MAX_SEGMENTS) return;
    if (this.watchers.size >= MAX_WATCHED_DIRS) {
      this.logger.warn('too many folders to watch; the rest are checked every second', { rel });
      return;
    }
    const dir = path.join(this.root, rel);
    let watcher: fs.FSWatcher;
    try {
      watcher = fs.watch(dir, (_event, file) => this.onChange(rel, file));
    } catch (err) {
      this.logger.warn('cannot watch a functions folder; checking its files every second', {
        rel,
        err,
      });
      return;
    }
    watcher.on('error', () => this.unwatch(rel));
    this.watchers.set(rel, watcher);
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      // Removed meanwhile: its watcher errors and goes.
    }
    for (const entry of entries) {
      if (entry.isDirectory() && SEGMENT.test(entry.name)) {
        this.watchDir(rel ? `${rel}/${entry.name}` : entry.name, depth + 1);
      }
    }
  }

  private unwatch(rel: string): void {
    for (const [key, watcher] of this.watchers) {
      if (key === rel || key.startsWith(`${rel}/`)) {
        watcher.close();
        this.watchers.delete(key);
      }
    }
  }

  private onChange(rel: string, file: string | Buffer | null): void {
    this.changes++;
    this.misses.clear();
    if (file === null) return this.cache.clear();
    const entry = rel ? `${rel}/${String(file)}` : String(file);
    const name = entry.replace(/\.js$/, '');
    // A renamed or removed folder changes every function under it.
    for (const key of this.cache.keys()) {
      if (key === name || key.startsWith(`${name}/`)) this.cache.delete(key);
    }
    if (entry.endsWith('.js') || !SEGMENT.test(String(file))) return;
    // A folder appeared (watch it) or went (stop watching it).
    fs.lstat(path.join(this.root, entry), (err, stat) => {
      if (!err && stat.isDirectory()) this.watchDir(entry, entry.split('/').length);
      else if (err) this.unwatch(entry);
    });
  }

  /**
   * Remembers for a second that `name` does not exist, so a flood of requests for a missing
   * function costs no file system call each. Bounded (oldest dropped first); every change in the
   * folder forgets them all, so a new file is served at once.
   */
  private rememberMiss(name: string, changes: number): void {
    if (changes !== this.changes) return;
    this.misses.delete(name);
    this.misses.set(name, Date.now() + REVALIDATE_MS);
    if (this.misses.size > MAX_MISSES)
      this.misses.delete(this.misses.keys().next().value as string);
  }

  /** Drops the cached version of `name`, e.g. after a deploy through the admin API. */
  invalidate(name: string): void {
    this.changes++;
    this.misses.clear();
    this.cache.delete(name);
  }

  /** The absolute path a function of this name lives at (no checks). */
  pathOf(name: string): string {
    return path.join(this.root, ...name.split('/')) + '.js';
  }

  /**
   * The current version of a function.
   * @throws FunctionNotFoundError when there is no such file (or it leads outside the folder).
   */
  async get(name: string): Promise<FunctionVersion> {
    const cached = this.cache.get(name);
    const now = Date.now();
    if (cached && now - cached.checkedAt < REVALIDATE_MS) return cached.fn;
    if ((this.misses.get(name) ?? 0) > now) throw notFound(name);
    let pending = this.loading.get(name);
    if (!pending) {
      pending = this.load(name, cached).finally(() => this.loading.delete(name));
      this.loading.set(name, pending);
    }
    return (await pending).fn;
  }

  private async load(name: string, cached: Entry | undefined): Promise<Entry> {
    const changes = this.changes;
    const file = this.pathOf(name);
    let realPath: string;
    try {
      realPath = await fsp.realpath(file);
    } catch (err) {
      this.cache.delete(name);
      if (isMissing(err)) {
        this.rememberMiss(name, changes);
        throw notFound(name);
      }
      throw err;
    }
    // Symlinks may point anywhere: follow one only when it stays inside the folder.
    if (!realPath.startsWith(this.root + path.sep)) {
      this.logger.warn('function file leads outside the functions folder; ignored', { fn: name });
      throw notFound(name);
    }
    try {
      return await this.loadFile(name, realPath, cached, changes);
    } catch (err) {
      // Deleted between the look-up and the read: as good as never there.
      if (isMissing(err)) throw notFound(name);
      throw err;
    }
  }

  private async loadFile(
    name: string,
    realPath: string,
    cached: Entry | undefined,
    changes: number,
  ): Promise<Entry> {
    const stat = await fsp.stat(realPath);
    if (!stat.isFile()) throw notFound(name);
    if (
      cached &&
      cached.realPath === realPath &&
      cached.ino === stat.ino &&
      cached.fn.bytes === stat.size &&
      cached.fn.modified.getTime() === stat.mtimeMs
    ) {
      cached.checkedAt = Date.now();
      return cached;
    }
    const entry = await this.read(name, realPath);
    if (changes === this.changes) this.cache.set(name, entry);
    return entry;
  }

  /** Reads a file whole, again if it changed while being read (a writer that is not atomic). */
  private async read(name: string, realPath: string): Promise<Entry> {
    for (let attempt = 0; ; attempt++) {
      const checkedAt = Date.now();
      const handle = await fsp.open(realPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      try {
        const before = await handle.stat();
        if (before.size > MAX_SOURCE_BYTES) {
          const error = new FunctionCompileError(
            `${name}.js is ${before.size} bytes; functions may be at most ${MAX_SOURCE_BYTES}`,
          );
          return this.entry(name, realPath, '', before, checkedAt, error);
        }
        const source = await handle.readFile('utf8');
        const after = await handle.stat();
        const stable =
          after.size === before.size &&
          after.mtimeMs === before.mtimeMs &&
          Buffer.byteLength(source) === after.size;
        if (stable || attempt >= 3) {
          return this.entry(name, realPath, source, after, checkedAt, checkSyntax(source, name));
        }
      } finally {
        await handle.close();
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private entry(
    name: string,
    realPath: string,
    source: string,
    stat: fs.Stats,
    checkedAt: number,
    compileError: FunctionCompileError | undefined,
  ): Entry {
    const fn: FunctionVersion = {
      name,
      version: hashSource(source),
      source,
      bytes: stat.size,
      modified: new Date(stat.mtimeMs),
      compileError,
    };
    return { fn, realPath, ino: stat.ino, checkedAt };
  }

  /**
   * Writes a function atomically (temp file in the same folder, then rename), so a reader sees
   * the old file or the new one, never half of one. Resolves with whether it was new. (It does
   * not read the file back: a concurrent deploy may already have replaced it.)
   */
  async write(name: string, source: string): Promise<{ created: boolean }> {
    const file = this.pathOf(name);
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
    this.invalidate(name);
    return { created };
  }

  /**
   * Creates the folders of a nested name one by one, refusing any that is a symlink or not a
   * folder, so a deploy never creates or writes anything outside FUNCTIONS_DIR.
   */
  private async makeFolders(name: string): Promise<void> {
    let dir = this.root;
    for (const segment of name.split('/').slice(0, -1)) {
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
    }
  }

  /** Deletes a function. @throws FunctionNotFoundError when there is none. */
  async remove(name: string): Promise<void> {
    await this.get(name);
    await fsp.rm(this.pathOf(name));
    this.invalidate(name);
  }

  /** Every function in the folder, sorted by name. */
  async list(): Promise<FunctionInfo[]> {
    const names: string[] = [];
    const walk = async (dir: string, prefix: string[], depth: number): Promise<void> => {
      if (depth > MAX_SEGMENTS) return;
      const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const item of entries) {
        if (item.isDirectory() && SEGMENT.test(item.name)) {
          await walk(path.join(dir, item.name), [...prefix, item.name], depth + 1);
        } else if (item.name.endsWith('.js') && SEGMENT.test(item.name.slice(0, -3))) {
          names.push([...prefix, item.name.slice(0, -3)].join('/'));
        }
      }
    };
    await walk(this.root, [], 1);
    const infos: FunctionInfo[] = [];
    for (const name of names.sort()) {
      try {
        infos.push(functionInfo(await this.get(name)));
      } catch (err) {
        if (!(err instanceof FunctionNotFoundError)) throw err;
      }
    }
    return infos;
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP';
}

function notFound(name: string): FunctionNotFoundError {
  return new FunctionNotFoundError(`function '${name}' not found`);
}
