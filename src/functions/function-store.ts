/**
 * The function store: maps names to the files in FUNCTIONS_DIR, reads each version once, and
 * serves it from memory until the file changes. fs.watch on every folder invalidates entries at once;
 * as a fallback for file systems that do not report changes (some network and container mounts),
 * a cached entry older than a second is checked with one stat before it is served again. So no
 * request reads a file, and a change is seen by the next request, at most a second later.
 *
 * With REDIS_URL, functions deployed through the admin API live in Redis, shared by every replica
 * (shared-functions.ts), and are served before a file of the same name: the folder is then a
 * read-only layer of this replica, and deleting a deployed function uncovers its file again.
 *
 * A version is ready to run once it is compiled (transform.ts: ES modules and TypeScript become a
 * script) and loaded once on a worker, which reports the file's exported config (validated by
 * function-config.ts). Both happen once per version, and a version that fails either is cached
 * with its compile error.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  FunctionCompileError,
  FunctionError,
  FunctionNotFoundError,
  FunctionReadOnlyError,
  InvalidFunctionNameError,
} from '../errors';
import type { Logger } from '../observe/logger';
import { parseFunctionConfig } from './function-config';
import type { ConfigLimits, FunctionConfig } from './function-config';
import { MAX_SEGMENTS, SEGMENT, candidatesForPath, versionOf } from './function-source';
import type { DeployedFunction, SharedFunctions } from './shared-functions';
import { compileFunction, originalPosition, remapStack } from './transform';
import type { CompiledFunction } from './transform';

/** One version of a function, as read from disk. */
export interface FunctionVersion {
  name: string;
  /** The file, relative to FUNCTIONS_DIR: `a/b.js` or `a/b.ts`. */
  file: string;
  /** Content hash of the source (first 16 hex digits of its SHA-256). */
  version: string;
  /** The file as written. */
  source: string;
  /** What the sandbox runs (the source itself unless it had to be transformed). */
  compiled?: CompiledFunction;
  /** The file's validated `config` (§7); empty when it exports none or is not loaded yet. */
  config: FunctionConfig;
  bytes: number;
  modified: Date;
  /** Set when the source does not compile or load; such a version is never invoked. */
  compileError?: FunctionCompileError;
  /** Where it comes from: a file in FUNCTIONS_DIR, or a deploy shared through Redis. */
  layer: Layer;
}

/**
 * `file`: FUNCTIONS_DIR (or an API deploy without Redis, which writes a file); `shared`: an API
 * deploy in Redis; `draft`: a console draft run (admin/drafts.ts), never stored.
 */
export type Layer = 'file' | 'shared' | 'draft';

export interface FunctionInfo {
  name: string;
  file: string;
  version: string;
  bytes: number;
  modified: string;
  status: 'ok' | 'compile_error';
  error?: string;
  line?: number;
  column?: number;
  config: FunctionConfig;
  layer: Layer;
}

/**
 * Loads a compiled version once on a worker and resolves with its exported config as JSON text
 * (undefined or 'null' for none). Rejects with FunctionCompileError when the file does not load;
 * any other rejection (timeout, crash, overload) is passed on and the load is tried again later.
 */
export type VersionLoader = (
  fn: FunctionVersion,
  code: CompiledFunction,
) => Promise<string | undefined>;

interface Entry {
  fn: FunctionVersion;
  /** The file's real path; '' for a shared deploy. */
  realPath: string;
  ino: number;
  /** The file's mtime as stat gives it (sub-millisecond: `fn.modified` is rounded). */
  mtimeMs: number;
  checkedAt: number;
  /** The worker load of this version, once started (see VersionLoader). */
  loading?: Promise<void>;
  /** Whether it is loaded (or cannot be: a compile error), so `get` answers at once. */
  loaded?: boolean;
}

/** A request path resolved to a function (docs/spec.md §2 sub-paths). */
export interface Resolved {
  fn: FunctionVersion;
  /** The part of the path after the function's name, `''` when none, e.g. `/users/42`. */
  subpath: string;
  /** Whether resolving it waited for the version's first load on a worker (a cold start). */
  cold: boolean;
}

/**
 * Told that the function `name` changed (or any under the folder `name`; any at all when
 * undefined).
 */
export type ChangeListener = (name: string | undefined) => void;

/** Function files are `<name>.js` or `<name>.ts`. */
const EXTENSIONS = ['.js', '.ts'] as const;
/** The language of a function file, and its extension. */
export type Language = 'js' | 'ts';

export const MAX_SOURCE_BYTES = 5 * 1024 * 1024;
const REVALIDATE_MS = 1000;
const MAX_WATCHED_DIRS = 1000;
const MAX_MISSES = 1024;

/** What the admin API shows of a version (no source). */
export function functionInfo(fn: FunctionVersion): FunctionInfo {
  const error = fn.compileError;
  return {
    name: fn.name,
    file: fn.file,
    version: fn.version,
    bytes: fn.bytes,
    modified: fn.modified.toISOString(),
    status: error ? 'compile_error' : 'ok',
    ...(error ? { error: error.message, line: error.line, column: error.column } : {}),
    config: fn.config,
    layer: fn.layer,
  };
}

/** The name a file in FUNCTIONS_DIR serves, or undefined when it is not a function file. */
function nameOfFile(file: string): string | undefined {
  const ext = EXTENSIONS.find((e) => file.endsWith(e));
  return ext && SEGMENT.test(path.basename(file, ext)) ? file.slice(0, -ext.length) : undefined;
}

export interface StoreOptions {
  dir: string;
  logger: Logger;
  /** Bounds for function configs; default MAX_TIMEOUT_MS 60 s. */
  limits?: ConfigLimits;
  /**
   * Loads each new version once on a worker (the server passes the pool's). Without one, versions
   * are compiled but never loaded, and their config stays empty: for tests of the store alone.
   */
  load?: VersionLoader;
  /** With REDIS_URL: the functions deployed through the API, shared by every replica. */
  shared?: SharedFunctions;
}

export class FunctionStore {
  readonly dir: string;
  private root = '';
  private readonly logger: Logger;
  private readonly limits: ConfigLimits;
  private readonly loader?: VersionLoader;
  private readonly shared?: SharedFunctions;
  private unsubscribeShared?: () => void;
  private readonly cache = new Map<string, Entry>();
  /** Names known not to exist, until a time (ms); see rememberMiss. */
  private readonly misses = new Map<string, number>();
  private readonly loading = new Map<string, Promise<Entry>>();
  /** One watcher per folder, by path relative to the root ('' is the root). */
  private readonly watchers = new Map<string, fs.FSWatcher>();
  /**
   * The index: for each watched folder, the names of the function files that may be in it (added
   * at once on every change event, dropped when a look-up finds the file gone). While every
   * folder is watched, a name not in it does not exist, and costs no file system call to refuse:
   * a flood of unknown names or sub-paths never reaches the disk.
   */
  private readonly index = new Map<string, Set<string>>();
  /** Whether every folder is watched (else the index is not trusted, and look-ups go to disk). */
  private watchingAll = true;
  /** Bumped on every change event: a load that raced a change is served but not cached. */
  private changes = 0;
  /** Told of every change (see subscribe). */
  private readonly listeners = new Set<ChangeListener>();
  /**
   * File system look-ups for names not in the cache (the once-a-second revalidation of cached
   * versions not counted): for tests, few, never one per request.
   */
  lookups = 0;

  constructor(options: StoreOptions) {
    this.dir = options.dir;
    this.logger = options.logger;
    this.limits = options.limits ?? { maxTimeoutMs: 60_000 };
    this.loader = options.load;
    this.shared = options.shared;
  }

  /** Resolves the folder and starts watching it. @throws Error when the folder does not exist. */
  async start(): Promise<void> {
    this.root = await fsp.realpath(this.dir);
    if (!(await fsp.stat(this.root)).isDirectory()) throw new Error(`${this.dir} is not a folder`);
    this.watchDir('', 0);
    this.unsubscribeShared = this.shared?.subscribe((name) => this.sharedChanged(name));
  }

  close(): void {
    this.unsubscribeShared?.();
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
      this.watchingAll = false;
      this.logger.warn('too many folders to watch; the rest are checked every second', { rel });
      return;
    }
    const dir = path.join(this.root, rel);
    let watcher: fs.FSWatcher;
    try {
      watcher = fs.watch(dir, (_event, file) => this.onChange(rel, file));
    } catch (err) {
      this.watchingAll = false;
      this.logger.warn('cannot watch a functions folder; checking its files every second', {
        rel,
        err,
      });
      return;
    }
    watcher.on('error', () => this.unwatch(rel));
    this.watchers.set(rel, watcher);
    const names = new Set<string>();
    this.index.set(rel, names);
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      // Removed meanwhile: its watcher errors and goes.
    }
    for (const entry of entries) {
      const name = nameOfFile(entry.name);
      if (name !== undefined) names.add(name);
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
        this.index.delete(key);
      }
    }
  }

  /**
   * Subscribes to changes: `listener(name)` after a function file of that name (or a folder of
   * that path: any function under it) appeared, changed or went, by a write in the folder or a
   * deploy or delete through the store; `listener(undefined)` when anything may have changed.
   * Told at once, before the change is read: `get(name)` tells what it is now. Returns the
   * unsubscribe.
   */
  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(name: string | undefined): void {
    for (const listener of this.listeners) listener(name);
  }

  private onChange(rel: string, file: string | Buffer | null): void {
    this.changes++;
    this.misses.clear();
    if (file === null) {
      this.cache.clear();
      return this.notify(undefined);
    }
    const entry = rel ? `${rel}/${String(file)}` : String(file);
    const name = nameOfFile(entry) ?? entry;
    if (name !== entry) this.index.get(rel)?.add(path.basename(name));
    // A renamed or removed folder changes every function under it.
    for (const key of this.cache.keys()) {
      if (key === name || key.startsWith(`${name}/`)) this.cache.delete(key);
    }
    // A function file, or a folder (a temp file of a deploy is neither).
    if (name !== entry || SEGMENT.test(String(file))) this.notify(name);
    if (name !== entry || !SEGMENT.test(String(file))) return;
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

  /** A deploy or delete in the shared layer (on any replica): the next look-up reads it. */
  private sharedChanged(name: string | undefined): void {
    this.changes++;
    this.misses.clear();
    if (name === undefined) this.cache.clear();
    else this.cache.delete(name);
    this.notify(name);
  }

  /** Drops the cached version of `name`, e.g. after a deploy through the admin API. */
  invalidate(name: string): void {
    this.changes++;
    this.misses.clear();
    this.cache.delete(name);
    this.index.get(parentOf(name))?.add(baseOf(name));
    this.notify(name);
  }

  /** False when the index says `name` cannot exist (see `index`); true when it may. */
  private mayExist(name: string): boolean {
    if (!this.watchingAll || this.shared?.get(name)) return true;
    return this.index.get(parentOf(name))?.has(baseOf(name)) ?? false;
  }

  /** The absolute path of a function's file in one language (no checks). */
  pathOf(name: string, language: Language = 'js'): string {
    return `${path.join(this.root, ...name.split('/'))}.${language}`;
  }

  /**
   * The function a request path names, and the rest of the path (docs/spec.md §2 sub-paths): the longest
   * prefix of the path that names an existing function wins. Names the index rules out cost
   * nothing; the others cost what `get` costs (cached).
   * @throws InvalidFunctionNameError when the path's first segment is not a name;
   *   FunctionNotFoundError when no prefix names a function.
   */
  async resolve(urlPath: string): Promise<Resolved> {
    return this.resolveCached(urlPath) ?? this.resolveAny(urlPath);
  }

  /**
   * `resolve` when memory alone answers it (the hot path: a loaded, fresh version, and every
   * longer prefix ruled out by the index), with no promise; undefined when it needs a look-up.
   * @throws InvalidFunctionNameError as `resolve`.
   */
  resolveCached(urlPath: string): Resolved | undefined {
    const now = Date.now();
    for (const { name, subpath } of candidatesForPath(urlPath)) {
      if (!this.mayExist(name)) continue;
      const cached = this.cache.get(name);
      if (!cached?.loaded || now - cached.checkedAt >= REVALIDATE_MS) return undefined;
      return { fn: cached.fn, subpath, cold: false };
    }
    return undefined;
  }

  private async resolveAny(urlPath: string): Promise<Resolved> {
    const candidates = candidatesForPath(urlPath);
    for (const { name, subpath } of candidates) {
      if (!this.mayExist(name)) continue;
      try {
        return { ...(await this.ready(name)), subpath };
      } catch (err) {
        if (!(err instanceof FunctionNotFoundError)) throw err;
      }
    }
    if (candidates.length === 1) throw notFound(candidates[0].name);
    const tried = candidates.map((c) => `'${c.name}'`).join(', ');
    throw new FunctionNotFoundError(`no function for this path: none of ${tried} exists`);
  }

  /**
   * The current version of a function, compiled and loaded (its config known).
   * @throws FunctionNotFoundError when there is no such file (or it leads outside the folder);
   *   what the loader throws when the version could not be loaded now (timeout, crash).
   */
  async get(name: string): Promise<FunctionVersion> {
    return (await this.ready(name)).fn;
  }

  /**
   * The current version as read and compiled, without loading it on a worker (its config may not
   * be known yet).
   * @throws FunctionNotFoundError when there is no such file.
   */
  async peek(name: string): Promise<FunctionVersion> {
    return (await this.entry(name)).fn;
  }

  /** The current version, loaded; `cold` when this call waited for its first load. */
  private async ready(name: string): Promise<{ fn: FunctionVersion; cold: boolean }> {
    const cached = this.cache.get(name);
    if (cached?.loaded && Date.now() - cached.checkedAt < REVALIDATE_MS) {
      return { fn: cached.fn, cold: false };
    }
    const entry = await this.entry(name);
    const cold = !entry.loaded;
    await this.loadOnWorker(entry);
    return { fn: entry.fn, cold: cold && entry.fn.compiled !== undefined };
  }

  /** The current version's entry, read and compiled but not necessarily loaded. */
  private async entry(name: string): Promise<Entry> {
    const cached = this.cache.get(name);
    const now = Date.now();
    if (cached && now - cached.checkedAt < REVALIDATE_MS) return cached;
    if (!this.mayExist(name) || (this.misses.get(name) ?? 0) > now) throw notFound(name);
    let pending = this.loading.get(name);
    if (!pending) {
      pending = this.load(name, cached).finally(() => this.loading.delete(name));
      this.loading.set(name, pending);
    }
    return pending;
  }

  /**
   * Loads a version once on a worker (see VersionLoader) and validates its config. A compile
   * error is kept with the version; any other failure is passed on, and the next request tries
   * again.
   */
  private async loadOnWorker(entry: Entry): Promise<void> {
    const joined = entry.loading;
    if (!joined) return this.startLoad(entry);
    try {
      await joined;
    } catch {
      // The load this call joined failed for its own caller (a timeout or a crash, perhaps a
      // neighbour's on its worker): it made no effect, so this call loads again, on its own
      // deadline, rather than inherit an error that belongs to a request older than itself.
      await this.startLoad(entry);
    }
  }

  private startLoad(entry: Entry): Promise<void> {
    const { fn } = entry;
    if (entry.loaded) return Promise.resolve();
    if (fn.compileError || !this.loader || !fn.compiled) {
      entry.loaded = true;
      return Promise.resolve();
    }
    const { loader, limits } = this;
    const compiled = fn.compiled;
    entry.loading ??= (async () => {
      try {
        fn.config = parseFunctionConfig(await loader(fn, compiled), limits);
      } catch (err) {
        if (!(err instanceof FunctionCompileError)) throw err;
        fn.compileError = inUserFile(fn.compiled, err);
      }
      entry.loaded = true;
    })().catch((err: unknown) => {
      entry.loading = undefined;
      throw err;
    });
    return entry.loading;
  }

  private async load(name: string, cached: Entry | undefined): Promise<Entry> {
    const changes = this.changes;
    const deployed = this.shared?.get(name);
    if (deployed) return this.loadShared(deployed, cached, changes);
    if (!cached) this.lookups++;
    const found: { realPath: string; language: Language }[] = [];
    for (const language of ['js', 'ts'] as const) {
      try {
        found.push({ realPath: await fsp.realpath(this.pathOf(name, language)), language });
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    }
    if (found.length === 0) {
      this.cache.delete(name);
      if (changes === this.changes) this.index.get(parentOf(name))?.delete(baseOf(name));
      this.rememberMiss(name, changes);
      throw notFound(name);
    }
    const [{ realPath, language }] = found;
    // Symlinks may point anywhere: follow one only when it stays inside the folder.
    if (!realPath.startsWith(this.root + path.sep)) {
      this.logger.warn('function file leads outside the functions folder; ignored', { fn: name });
      throw notFound(name);
    }
    try {
      const entry = await this.loadFile(name, language, realPath, cached, changes);
      if (found.length > 1 && !entry.fn.compileError) {
        entry.fn.compileError = new FunctionCompileError(
          `both ${name}.js and ${name}.ts exist: remove one of them`,
        );
      }
      return entry;
    } catch (err) {
      // Deleted between the look-up and the read: as good as never there.
      if (isMissing(err)) throw notFound(name);
      throw err;
    }
  }

  /** A shared deploy's version: its source from memory, or once from Redis. */
  private async loadShared(
    deployed: DeployedFunction,
    cached: Entry | undefined,
    changes: number,
  ): Promise<Entry> {
    const file = `${deployed.name}.${deployed.language}`;
    if (
      cached &&
      cached.realPath === '' &&
      cached.fn.file === file &&
      cached.mtimeMs === deployed.modified &&
      cached.fn.version === deployed.version
    ) {
      cached.checkedAt = Date.now();
      return cached;
    }
    const checkedAt = Date.now();
    const source = await this.shared!.source(deployed);
    const entry = await this.newEntry(
      file,
      '',
      source,
      { size: deployed.bytes, mtimeMs: deployed.modified, ino: -1 },
      checkedAt,
      'shared',
    );
    if (changes === this.changes) this.cache.set(deployed.name, entry);
    return entry;
  }

  private async loadFile(
    name: string,
    language: Language,
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
      cached.mtimeMs === stat.mtimeMs
    ) {
      cached.checkedAt = Date.now();
      return cached;
    }
    const entry = await this.read(name, language, realPath);
    if (changes === this.changes) this.cache.set(name, entry);
    return entry;
  }

  /** Reads a file whole, again if it changed while being read (a writer that is not atomic). */
  private async read(name: string, language: Language, realPath: string): Promise<Entry> {
    const file = `${name}.${language}`;
    for (let attempt = 0; ; attempt++) {
      const checkedAt = Date.now();
      const handle = await fsp.open(realPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      try {
        const before = await handle.stat();
        if (before.size > MAX_SOURCE_BYTES) {
          const error = new FunctionCompileError(
            `${file} is ${before.size} bytes; functions may be at most ${MAX_SOURCE_BYTES}`,
          );
          return this.newEntry(file, realPath, '', before, checkedAt, 'file', error);
        }
        const source = await handle.readFile('utf8');
        const after = await handle.stat();
        const stable =
          after.size === before.size &&
          after.mtimeMs === before.mtimeMs &&
          Buffer.byteLength(source) === after.size;
        if (stable || attempt >= 3) {
          return this.newEntry(file, realPath, source, after, checkedAt, 'file');
        }
      } finally {
        await handle.close();
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private async newEntry(
    file: string,
    realPath: string,
    source: string,
    stat: Pick<fs.Stats, 'size' | 'mtimeMs' | 'ino'>,
    checkedAt: number,
    layer: Layer,
    tooLarge?: FunctionCompileError,
  ): Promise<Entry> {
    const fn: FunctionVersion = {
      name: nameOfFile(file) as string,
      file,
      version: versionOf(source, file),
      source,
      config: Object.freeze({}),
      bytes: stat.size,
      modified: new Date(stat.mtimeMs),
      compileError: tooLarge,
      layer,
    };
    if (!tooLarge) {
      try {
        fn.compiled = await compileFunction(source, file);
      } catch (err) {
        if (!(err instanceof FunctionCompileError)) throw err;
        fn.compileError = err;
      }
    }
    return { fn, realPath, ino: stat.ino, mtimeMs: stat.mtimeMs, checkedAt };
  }

  /**
   * Deploys a function: with REDIS_URL into the shared layer (every replica serves it within a
   * second; it hides a file of the same name), else as a file (see writeFile). Resolves with
   * whether the name was new to this server.
   * @throws KvUnavailableError when Redis does not answer.
   */
  async write(
    name: string,
    source: string,
    language: Language = 'js',
  ): Promise<{ created: boolean }> {
    if (!this.shared) return this.writeFile(name, source, language);
    const { created } = await this.shared.deploy(
      name,
      source,
      language,
      versionOf(source, `${name}.${language}`),
    );
    return { created: created && !(await this.hasFile(name)) };
  }

  /** Whether FUNCTIONS_DIR holds a file for `name` (in either language). */
  private async hasFile(name: string): Promise<boolean> {
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
   */
  private async writeFile(
    name: string,
    source: string,
    language: Language,
  ): Promise<{ created: boolean }> {
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
    this.invalidate(name);
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
      this.watchDir(segments.slice(0, index + 1).join('/'), index + 1);
    }
  }

  /**
   * Deletes a function: with REDIS_URL its shared deploy (a file of the same name is served
   * again), else its file.
   * @throws FunctionNotFoundError when there is none; FunctionReadOnlyError when, with REDIS_URL,
   *   only a file in FUNCTIONS_DIR has the name; KvUnavailableError when Redis does not answer.
   */
  async remove(name: string): Promise<void> {
    if (this.shared) {
      if (await this.shared.remove(name)) return;
      if (await this.hasFile(name)) {
        throw new FunctionReadOnlyError(
          `function '${name}' is a file in FUNCTIONS_DIR, which is read-only with REDIS_URL: ` +
            'remove the file from the folder (or the image) instead',
        );
      }
      throw notFound(name);
    }
    const { fn } = await this.entry(name);
    await fsp.rm(path.join(this.root, fn.file));
    this.invalidate(name);
  }

  /**
   * Every function in the folder, sorted by name. Versions are read and compiled but not loaded
   * here: a config shows once a version has been loaded (invoked, or shown by `get`).
   */
  async list(): Promise<FunctionInfo[]> {
    return (await this.versions()).map(functionInfo);
  }

  /** The current version of every function in the folder, sorted by name, as `list` reads them. */
  async versions(): Promise<FunctionVersion[]> {
    const names = new Set<string>();
    const walk = async (dir: string, prefix: string[], depth: number): Promise<void> => {
      if (depth > MAX_SEGMENTS) return;
      const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const item of entries) {
        const name = nameOfFile(item.name);
        if (item.isDirectory() && SEGMENT.test(item.name)) {
          await walk(path.join(dir, item.name), [...prefix, item.name], depth + 1);
        } else if (name !== undefined) {
          names.add([...prefix, name].join('/'));
        }
      }
    };
    await walk(this.root, [], 1);
    for (const name of this.shared?.names() ?? []) names.add(name);
    const versions: FunctionVersion[] = [];
    for (const name of [...names].sort()) {
      try {
        versions.push((await this.entry(name)).fn);
      } catch (err) {
        if (!(err instanceof FunctionNotFoundError)) throw err;
      }
    }
    return versions;
  }
}

/**
 * An error from running a version, with its positions moved from the compiled code into the
 * user's file (identity for files that needed no transform).
 */
export function inUserFile<E>(compiled: CompiledFunction | undefined, err: E): E {
  if (!compiled?.sourceMap) return err;
  if (err instanceof FunctionCompileError) {
    const position =
      err.line === undefined ? {} : originalPosition(compiled, err.line, err.column ?? 1);
    const mapped = new FunctionCompileError(remapStack(compiled, err.message), position);
    mapped.statusCode = err.statusCode;
    return mapped as E;
  }
  if (err instanceof FunctionError && err.functionStack !== undefined) {
    return new FunctionError(err.type, err.message, remapStack(compiled, err.functionStack)) as E;
  }
  return err;
}

/** The last segment of a name. */
function baseOf(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

/** The folder a name lives in, relative to the root (`''` for a top-level name). */
function parentOf(name: string): string {
  const slash = name.lastIndexOf('/');
  return slash < 0 ? '' : name.slice(0, slash);
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP';
}

function notFound(name: string): FunctionNotFoundError {
  return new FunctionNotFoundError(`function '${name}' not found`);
}
