/**
 * The function store: maps names to versions, reads each version once, and serves it from memory
 * until its source changes. Two layers hold functions: the files in FUNCTIONS_DIR (file-layer.ts)
 * and, with REDIS_URL, the functions deployed through the admin API, shared by every replica
 * (shared-functions.ts). A deployed function is served before a file of the same name: the
 * folder is then a read-only layer of this replica, and deleting a deployed function uncovers
 * its file again.
 *
 * fs.watch on every folder (folder-index.ts) drops a cached version at once when its file
 * changes; as a fallback for file systems that do not report changes (some network and
 * container mounts), a cached version older than a second is checked with one stat before it is
 * served again. So no request reads a file, and a change is seen by the next request, at most a
 * second later. Names the folder index rules out, and names just found missing, cost no file
 * system call at all.
 *
 * A folder holding a package.json is one function, a package (docs/spec.md §2 "Packages"),
 * bundled with its dependencies when its version is read; a change anywhere in its folder drops
 * it, and the once-a-second check stats every file of its bundle (and its lockfile).
 *
 * A version is ready to run once compiled and loaded once on a worker (version-entry.ts).
 */
import { FunctionCompileError, FunctionNotFoundError, FunctionReadOnlyError } from '../errors';
import type { Logger } from '../observe/logger';
import { FileLayer } from './file-layer';
import { FolderIndex } from './folder-index';
import type { ConfigLimits } from './function-config';
import { candidatesForPath, versionOf } from './function-source';
import { functionInfo, notFound } from './function-version';
import type {
  ChangeListener,
  FunctionInfo,
  FunctionVersion,
  Language,
  Resolved,
  VersionLoader,
} from './function-version';
import type { DeployedFunction, SharedFunctions } from './shared-functions';
import { stampsUnchanged } from './bundle-files';
import { compileEntry, compilePackageEntry, loadEntry } from './version-entry';
import type { Entry } from './version-entry';

// The names other modules import from here, wherever they now live.
export { MAX_SOURCE_BYTES } from './file-layer';
export { functionInfo } from './function-version';
export type {
  ChangeListener,
  FunctionInfo,
  FunctionVersion,
  Language,
  Layer,
  Resolved,
  VersionLoader,
} from './function-version';
export { inUserFile } from './transform';

const REVALIDATE_MS = 1000;
const MAX_MISSES = 1024;

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
  /** MAX_BUNDLE_BYTES: the largest bundle of a package (or of a file that imports). */
  maxBundleBytes?: number;
}

export class FunctionStore {
  readonly dir: string;
  private readonly logger: Logger;
  private readonly limits: ConfigLimits;
  private readonly loader?: VersionLoader;
  private readonly shared?: SharedFunctions;
  private readonly maxBundleBytes?: number;
  private unsubscribeShared?: () => void;
  /** Which names may have a file, kept by watching the folder (see folder-index.ts). */
  private readonly folders: FolderIndex;
  private readonly files: FileLayer;
  private readonly cache = new Map<string, Entry>();
  /** Names known not to exist, until a time (ms); see rememberMiss. */
  private readonly misses = new Map<string, number>();
  private readonly loading = new Map<string, Promise<Entry>>();
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
    this.maxBundleBytes = options.maxBundleBytes;
    this.folders = new FolderIndex(this.logger, (name, announce) =>
      this.fileChanged(name, announce),
    );
    this.files = new FileLayer(this.dir, this.logger, this.folders);
  }

  /** Resolves the folder and starts watching it. @throws Error when the folder does not exist. */
  async start(): Promise<void> {
    await this.files.start();
    this.unsubscribeShared = this.shared?.subscribe((name) => this.sharedChanged(name));
  }

  close(): void {
    this.unsubscribeShared?.();
    this.folders.close();
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

  /** A change event in the folder (see FolderChange): drops what was cached for it. */
  private fileChanged(name: string | undefined, announce: boolean): void {
    this.changes++;
    this.misses.clear();
    if (name === undefined) {
      this.cache.clear();
      return this.notify(undefined);
    }
    // A renamed or removed folder changes every function under it.
    for (const key of this.cache.keys()) {
      if (key === name || key.startsWith(`${name}/`)) this.cache.delete(key);
    }
    if (announce) this.notify(name);
  }

  /** How the store compiles: imports resolve in FUNCTIONS_DIR/node_modules. */
  private get compileOptions(): { functionsDir: string; maxBundleBytes?: number } {
    return { functionsDir: this.files.root, maxBundleBytes: this.maxBundleBytes };
  }

  /** The root of FUNCTIONS_DIR's real path (for compiling what is deployed). */
  get functionsDir(): string {
    return this.files.root;
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
    this.folders.add(name);
    this.notify(name);
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

  /** False when neither layer can have `name` (see FolderIndex); true when one may. */
  private mayExist(name: string): boolean {
    return Boolean(this.shared?.get(name)) || this.folders.mayHold(name);
  }

  /** The absolute path of a function's file in one language (no checks). */
  pathOf(name: string, language: Language = 'js'): string {
    return this.files.pathOf(name, language);
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
    await loadEntry(entry, this.loader, this.limits);
    return { fn: entry.fn, cold: cold && entry.fn.compiled !== undefined };
  }

  /**
   * The current version's entry, read and compiled but not necessarily loaded: the cached one
   * while fresh, else read again (once, however many ask meanwhile).
   */
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

  /** Reads `name` from the layer that serves it (the shared one first); caches what it read. */
  private async load(name: string, cached: Entry | undefined): Promise<Entry> {
    const changes = this.changes;
    const deployed = this.shared?.get(name);
    if (deployed) return this.loadShared(deployed, cached, changes);
    if (!cached) this.lookups++;
    const found = await this.files.find(name);
    if (!found) {
      this.cache.delete(name);
      if (changes === this.changes) this.folders.drop(name);
      this.rememberMiss(name, changes);
      throw notFound(name);
    }
    const entry = found.package
      ? await this.loadPackage(name, found.realPath, cached, changes)
      : await this.loadFile(name, found.language, found.realPath, cached, changes);
    if (found.conflict && !entry.fn.compileError) {
      entry.fn.compileError = new FunctionCompileError(found.conflict);
    }
    return entry;
  }

  /** A package's version: the cached one while no file of its bundle changed, else bundled again. */
  private async loadPackage(
    name: string,
    realPath: string,
    cached: Entry | undefined,
    changes: number,
  ): Promise<Entry> {
    if (cached && cached.realPath === realPath && cached.stamps) {
      if (await stampsUnchanged(cached.stamps)) {
        cached.checkedAt = Date.now();
        return cached;
      }
    }
    const entry = await compilePackageEntry(name, realPath, Date.now(), this.compileOptions);
    if (changes === this.changes) this.cache.set(name, entry);
    return entry;
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
      cached.sourceVersion === deployed.version &&
      (!cached.stamps || (await stampsUnchanged(cached.stamps)))
    ) {
      cached.checkedAt = Date.now();
      return cached;
    }
    const checkedAt = Date.now();
    const source = await this.shared!.source(deployed);
    const entry = await compileEntry(
      file,
      '',
      source,
      { size: deployed.bytes, mtimeMs: deployed.modified, ino: -1 },
      checkedAt,
      'shared',
      undefined,
      this.compileOptions,
    );
    if (changes === this.changes) this.cache.set(deployed.name, entry);
    return entry;
  }

  /** A file's version: the cached one while the file is unchanged, else read again. */
  private async loadFile(
    name: string,
    language: Language,
    realPath: string,
    cached: Entry | undefined,
    changes: number,
  ): Promise<Entry> {
    const stat = await this.files.stat(name, realPath);
    if (
      cached &&
      cached.realPath === realPath &&
      cached.ino === stat.ino &&
      cached.fn.bytes === stat.size &&
      cached.mtimeMs === stat.mtimeMs &&
      (!cached.stamps || (await stampsUnchanged(cached.stamps)))
    ) {
      cached.checkedAt = Date.now();
      return cached;
    }
    const read = await this.files.read(name, language, realPath);
    const entry = await compileEntry(
      read.file,
      realPath,
      read.source,
      read.stat,
      read.checkedAt,
      'file',
      read.tooLarge,
      this.compileOptions,
    );
    if (changes === this.changes) this.cache.set(name, entry);
    return entry;
  }

  /**
   * Deploys a function: with REDIS_URL into the shared layer (every replica serves it within a
   * second; it hides a file of the same name), else as a file (FileLayer.write: atomic).
   * Resolves with whether the name was new to this server.
   * @throws KvUnavailableError when Redis does not answer.
   */
  async write(
    name: string,
    source: string,
    language: Language = 'js',
  ): Promise<{ created: boolean }> {
    if (!this.shared) {
      if (await this.files.isPackage(name)) {
        throw new FunctionReadOnlyError(
          `function '${name}' is a package folder in FUNCTIONS_DIR: edit its files, or delete it first`,
        );
      }
      const written = await this.files.write(name, source, language);
      this.invalidate(name);
      return written;
    }
    const { created } = await this.shared.deploy(
      name,
      source,
      language,
      versionOf(source, `${name}.${language}`),
    );
    return { created: created && !(await this.files.has(name)) };
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
      if (await this.files.has(name)) {
        throw new FunctionReadOnlyError(
          `function '${name}' is a file in FUNCTIONS_DIR, which is read-only with REDIS_URL: ` +
            'remove the file from the folder (or the image) instead',
        );
      }
      throw notFound(name);
    }
    const { fn } = await this.entry(name);
    if (fn.file.startsWith(`${name}/`)) await this.files.removePackage(name);
    else await this.files.remove(fn.file);
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
    const names = await this.files.names();
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
