/**
 * The folder index: one fs.watch per folder of FUNCTIONS_DIR, and for each folder the names of
 * the function files that may be in it. A name is added at once on every change event in its
 * folder and dropped when a look-up finds its file gone, so while every folder is watched, a
 * name not in the index does not exist and costs no file system call to refuse: a flood of
 * unknown names or sub-paths never reaches the disk. Past MAX_WATCHED_DIRS folders, or when a
 * folder cannot be watched, the index is no longer trusted and every name may exist.
 *
 * A folder holding a `package.json` is one function, a package (docs/spec.md §2 "Packages"): its
 * name is in its parent's names, and a change anywhere in it is a change of that function. No
 * `node_modules` folder is watched (an install rewrites the lockfile, which is).
 *
 * Each change event is passed on (see FolderChange): the store drops what it cached for it.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../observe/logger';
import { MAX_SEGMENTS, SEGMENT } from './function-source';

/** Function files are `<name>.js` or `<name>.ts`. */
export const EXTENSIONS = ['.js', '.ts'] as const;
/** A folder holding this file is a package function. */
export const PACKAGE_FILE = 'package.json';
/** Never a function, never watched: a package's dependencies. */
export const MODULES_FOLDER = 'node_modules';
const MAX_WATCHED_DIRS = 1000;

/**
 * Told of a change event in a watched folder. `name`: the function that changed (the file's
 * path relative to FUNCTIONS_DIR without its extension) or, for any other entry, the entry's
 * path (a folder: every function under it may have changed); undefined when the event did not
 * say which entry (anything may have changed). `announce`: whether the entry is a function file
 * or a folder (a temp file of a deploy is neither).
 */
export type FolderChange = (name: string | undefined, announce: boolean) => void;

export class FolderIndex {
  /** FUNCTIONS_DIR's real path, once started. */
  private root = '';
  private readonly logger: Logger;
  private readonly onChange: FolderChange;
  /** One watcher per folder, by path relative to the root ('' is the root). */
  private readonly watchers = new Map<string, fs.FSWatcher>();
  /** For each watched folder, the names of the function files that may be in it. */
  private readonly names = new Map<string, Set<string>>();
  /** Whether every folder is watched (else the index is not trusted, and look-ups go to disk). */
  private watchingAll = true;
  /** The watched folders that hold a package.json (package functions), relative to the root. */
  private readonly packages = new Set<string>();

  constructor(logger: Logger, onChange: FolderChange) {
    this.logger = logger;
    this.onChange = onChange;
  }

  /** Watches `root` (FUNCTIONS_DIR's real path) and every folder under it. */
  start(root: string): void {
    this.root = root;
    this.watch('', 0);
  }

  close(): void {
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  /**
   * The package function that `entry` (a path relative to the root) is in or is: the innermost
   * watched folder holding a package.json among it and its parents; undefined when none.
   */
  packageOf(entry: string): string | undefined {
    for (let at = entry; at !== ''; at = parentOf(at)) {
      if (this.packages.has(at)) return at;
    }
    return undefined;
  }

  /** False when the index says `name` cannot exist; true when it may. */
  mayHold(name: string): boolean {
    // A package's own files are modules of it, never functions (nor are its dependencies).
    if (this.packageOf(parentOf(name)) !== undefined) return false;
    if (!this.watchingAll) return true;
    return this.names.get(parentOf(name))?.has(baseOf(name)) ?? false;
  }

  /** Notes that `name` may exist now (a file was just written for it). */
  add(name: string): void {
    this.names.get(parentOf(name))?.add(baseOf(name));
  }

  /** Notes that `name` does not exist (a look-up found no file for it). */
  drop(name: string): void {
    this.names.get(parentOf(name))?.delete(baseOf(name));
  }

  /**
   * Watches one folder, `rel` (relative to the root, `depth` segments deep), then its
   * sub-folders. Not recursively: Node 20's recursive watch on Linux watches files, and stops
   * reporting a file once a new version is renamed over it.
   */
  watch(rel: string, depth: number): void {
    if (this.watchers.has(rel) || depth >= MAX_SEGMENTS) return;
    if (this.watchers.size >= MAX_WATCHED_DIRS) {
      this.watchingAll = false;
      this.logger.warn('too many folders to watch; the rest are checked every second', { rel });
      return;
    }
    const dir = path.join(this.root, rel);
    let watcher: fs.FSWatcher;
    try {
      watcher = fs.watch(dir, (_event, file) => this.changed(rel, file));
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
    this.names.set(rel, names);
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      // Removed meanwhile: its watcher errors and goes.
    }
    for (const entry of entries) {
      const name = nameOfFile(entry.name);
      if (name !== undefined) names.add(name);
      if (entry.name === PACKAGE_FILE) this.notePackage(rel, true);
      if (entry.isDirectory() && SEGMENT.test(entry.name) && entry.name !== MODULES_FOLDER) {
        this.watch(rel ? `${rel}/${entry.name}` : entry.name, depth + 1);
      }
    }
  }

  private unwatch(rel: string): void {
    for (const [key, watcher] of this.watchers) {
      if (key === rel || key.startsWith(`${rel}/`)) {
        watcher.close();
        this.watchers.delete(key);
        this.names.delete(key);
        this.packages.delete(key);
      }
    }
  }

  /** Notes whether the folder `rel` holds a package.json now (its name is a function then). */
  private notePackage(rel: string, holds: boolean): void {
    if (rel === '') return;
    if (holds) {
      this.packages.add(rel);
      this.names.get(parentOf(rel))?.add(baseOf(rel));
    } else {
      this.packages.delete(rel);
    }
  }

  private changed(rel: string, file: string | Buffer | null): void {
    if (file === null) return this.onChange(undefined, true);
    const entry = rel ? `${rel}/${String(file)}` : String(file);
    if (String(file) === PACKAGE_FILE) {
      this.notePackage(rel, fs.existsSync(path.join(this.root, entry)));
    }
    // A change anywhere in a package is a change of that function.
    const inPackage = this.packageOf(rel);
    if (inPackage !== undefined) this.onChange(inPackage, true);
    const name = nameOfFile(entry) ?? entry;
    if (name !== entry) this.names.get(rel)?.add(path.basename(name));
    // A function file, or a folder (a temp file of a deploy is neither).
    this.onChange(name, inPackage === undefined && (name !== entry || SEGMENT.test(String(file))));
    if (name !== entry || !SEGMENT.test(String(file)) || String(file) === MODULES_FOLDER) return;
    // A folder appeared (watch it) or went (stop watching it).
    fs.lstat(path.join(this.root, entry), (err, stat) => {
      if (!err && stat.isDirectory()) this.watch(entry, entry.split('/').length);
      else if (err) this.unwatch(entry);
    });
  }
}

/** The name a file in FUNCTIONS_DIR serves, or undefined when it is not a function file. */
export function nameOfFile(file: string): string | undefined {
  const ext = EXTENSIONS.find((e) => file.endsWith(e));
  return ext && SEGMENT.test(path.basename(file, ext)) ? file.slice(0, -ext.length) : undefined;
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
