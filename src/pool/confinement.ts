/**
 * What confines a worker process beyond the vm2 sandbox, detected once at start:
 * - an empty environment (no server secret reaches a worker) — always;
 * - V8's heap limit (WORKER_MEMORY_MB) — always;
 * - Node's permission model: read-only access to the worker's own code, no file writes, no child
 *   processes, no worker threads — always (Node 20: --experimental-permission);
 * - an unprivileged user (WORKER_USER, default nobody) — when the server runs as root;
 * - cgroup quotas (memory, WORKER_CPU_QUOTA) — v1 (what safeify knows) or v2 (which safeify
 *   cannot do: we write memory.max, cpu.max and cgroup.procs ourselves), when /sys/fs/cgroup is
 *   writable; otherwise none, with a log line. It never fails the server: a read-only or missing
 *   /sys/fs/cgroup (the normal case in a container) only means no quotas.
 * GET /_/health reports the result under `isolation` (the JSON field keeps that name), so an
 * operator sees what is enforced.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config';
import type { Logger } from '../observe/logger';

export interface ConfinementOptions {
  memoryMb: number;
  /** Cores, e.g. 0.5; 0 = no CPU quota. */
  cpuQuota: number;
  /** User name or uid to run workers as when the server is root. */
  user: string;
  /** The folders a worker may read: its own code and vm2. */
  readPaths: string[];
  logger: Logger;
  /** Where cgroups are mounted (tests point it elsewhere). */
  cgroupRoot?: string;
}

/** /_/health's `isolation`: its JSON shape is ConfinementReport in http/admin/api.ts. */
export interface ConfinementReport {
  environment: 'empty';
  heapLimitMb: number;
  permissionModel: boolean;
  user: string;
  cgroup: 'v2' | 'v1' | 'none';
  cgroupNote?: string;
  memoryLimitMb?: number;
  cpuQuota?: number;
}

export interface WorkerConfinement {
  readonly report: ConfinementReport;
  /** execArgv, uid and gid for fork(). */
  spawnOptions(): { execArgv: string[]; uid?: number; gid?: number };
  /** Moves a new worker into its cgroup; never throws (logs instead). */
  attach(pid: number): Promise<void>;
  /** Whether the cgroup of this worker recorded an out-of-memory kill. */
  oomKilled(pid: number): boolean;
  /** Removes the worker's cgroup once it has exited. */
  release(pid: number): void;
  /** Removes every cgroup this server made. */
  close(): void;
}

// Beyond the V8 heap, a worker needs room for Node itself, code and buffers.
const CGROUP_HEADROOM_MB = 96;
const CPU_PERIOD_US = 100_000;

/** uid and gid of a user name (from /etc/passwd) or a numeric uid. */
function lookupUser(user: string): { uid: number; gid: number } | undefined {
  if (/^\d+$/.test(user)) return { uid: Number(user), gid: Number(user) };
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [name, , uid, gid] = line.split(':');
      if (name === user) return { uid: Number(uid), gid: Number(gid) };
    }
  } catch {
    // No /etc/passwd: fall through.
  }
  return undefined;
}

interface Cgroups {
  version: 'v1' | 'v2';
  /** Folders to create one child per worker in, and the files to write there. */
  groups: { dir: string; files: Record<string, string>; procs: string; oomFile?: string }[];
}

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The cgroup path of this process for a v1 controller, or the v2 path ('' key). */
function ownCgroups(): Map<string, string> {
  const map = new Map<string, string>();
  try {
    for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')) {
      const [, controllers, where] = line.split(':');
      for (const controller of controllers.split(',')) map.set(controller, where);
    }
  } catch {
    // Not Linux.
  }
  return map;
}

/** Removes groups left by servers that died without cleaning up (`koa-faas-<pid>`, pid gone). */
function removeStale(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = /^koa-faas-(\d+)$/.exec(name)?.[1];
    if (!pid || Number(pid) === process.pid || isAlive(Number(pid))) continue;
    try {
      const group = path.join(dir, name);
      for (const child of fs.readdirSync(group)) {
        if (child.startsWith('w-')) fs.rmdirSync(path.join(group, child));
      }
      fs.rmdirSync(group);
    } catch {
      // Still busy: the next start tries again.
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Finds a writable cgroup hierarchy and prepares a parent group for this server's workers. */
async function setupCgroups(
  root: string,
  memoryMb: number,
  cpuQuota: number,
): Promise<{ cgroups?: Cgroups; note: string }> {
  const own = ownCgroups();
  const name = `koa-faas-${process.pid}`;
  const memoryBytes = String((memoryMb + CGROUP_HEADROOM_MB) * 1024 * 1024);
  const unified = fs.existsSync(path.join(root, 'cgroup.controllers'))
    ? root
    : fs.existsSync(path.join(root, 'unified', 'cgroup.controllers'))
      ? path.join(root, 'unified')
      : undefined;
  // cgroup v1: one hierarchy per controller.
  const memoryV1 = path.join(root, 'memory');
  if (fs.existsSync(path.join(memoryV1, 'memory.limit_in_bytes'))) {
    const memoryParent = path.join(memoryV1, own.get('memory') ?? '/', name);
    const cpuParent = path.join(root, 'cpu', own.get('cpu') ?? '/', name);
    if (!writable(path.dirname(memoryParent))) return { note: `${memoryV1} is not writable` };
    removeStale(path.dirname(memoryParent));
    removeStale(path.dirname(cpuParent));
    await fsp.mkdir(memoryParent, { recursive: true });
    const groups: Cgroups['groups'] = [
      {
        dir: memoryParent,
        files: { 'memory.limit_in_bytes': memoryBytes },
        procs: 'cgroup.procs',
        oomFile: 'memory.failcnt',
      },
    ];
    if (cpuQuota > 0 && writable(path.dirname(cpuParent))) {
      await fsp.mkdir(cpuParent, { recursive: true });
      groups.push({
        dir: cpuParent,
        files: {
          'cpu.cfs_period_us': String(CPU_PERIOD_US),
          'cpu.cfs_quota_us': String(Math.round(cpuQuota * CPU_PERIOD_US)),
        },
        procs: 'cgroup.procs',
      });
    }
    return { cgroups: { version: 'v1', groups }, note: 'cgroup v1 (memory, cpu)' };
  }
  if (unified) {
    const controllers = fs.readFileSync(path.join(unified, 'cgroup.controllers'), 'utf8');
    const parent = path.join(unified, own.get('') ?? '/', name);
    if (!controllers.includes('memory')) return { note: 'cgroup v2 without the memory controller' };
    if (!writable(path.dirname(parent))) return { note: `${path.dirname(parent)} is not writable` };
    removeStale(path.dirname(parent));
    // v2's "no internal processes" rule: the server's own group keeps its processes, the new
    // sibling-free child gets the controllers for its per-worker leaves.
    await fsp.mkdir(parent, { recursive: true });
    await fsp
      .writeFile(path.join(parent, 'cgroup.subtree_control'), '+memory +cpu')
      .catch(() => fsp.writeFile(path.join(parent, 'cgroup.subtree_control'), '+memory'));
    const files: Record<string, string> = { 'memory.max': memoryBytes, 'memory.swap.max': '0' };
    if (cpuQuota > 0) files['cpu.max'] = `${Math.round(cpuQuota * CPU_PERIOD_US)} ${CPU_PERIOD_US}`;
    return {
      cgroups: {
        version: 'v2',
        groups: [{ dir: parent, files, procs: 'cgroup.procs', oomFile: 'memory.events' }],
      },
      note: 'cgroup v2',
    };
  }
  return { note: `no cgroup hierarchy at ${root}` };
}

export async function setupConfinement(options: ConfinementOptions): Promise<WorkerConfinement> {
  const { memoryMb, cpuQuota, logger } = options;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  let ids: { uid: number; gid: number } | undefined;
  let user = typeof process.getuid === 'function' ? String(process.getuid()) : 'n/a';
  if (isRoot) {
    ids = lookupUser(options.user);
    if (ids) user = options.user;
    else logger.warn('WORKER_USER not found; workers run as root', { user: options.user });
  } else {
    logger.info('not running as root: workers run as the server user', { uid: user });
  }

  let cgroups: Cgroups | undefined;
  let note: string;
  try {
    ({ cgroups, note } = await setupCgroups(
      options.cgroupRoot ?? '/sys/fs/cgroup',
      memoryMb,
      cpuQuota,
    ));
  } catch (err) {
    note = `cgroups unavailable: ${(err as Error).message}`;
  }
  if (!cgroups) logger.warn('no cgroup quotas for workers', { reason: note });

  const report: ConfinementReport = {
    environment: 'empty',
    heapLimitMb: memoryMb,
    permissionModel: true,
    user,
    cgroup: cgroups?.version ?? 'none',
    ...(cgroups
      ? { memoryLimitMb: memoryMb + CGROUP_HEADROOM_MB, ...(cpuQuota > 0 ? { cpuQuota } : {}) }
      : { cgroupNote: note }),
  };

  const leaf = (group: Cgroups['groups'][number], pid: number) => path.join(group.dir, `w-${pid}`);

  return {
    report,
    spawnOptions() {
      return {
        execArgv: [
          `--max-old-space-size=${memoryMb}`,
          '--experimental-permission',
          ...options.readPaths.map((dir) => `--allow-fs-read=${path.join(dir, '*')}`),
          // The permission model prints an "experimental" warning on every start otherwise.
          '--no-warnings',
        ],
        ...(ids ?? {}),
      };
    },
    async attach(pid) {
      if (!cgroups) return;
      for (const group of cgroups.groups) {
        const dir = leaf(group, pid);
        try {
          await fsp.mkdir(dir);
          for (const [file, value] of Object.entries(group.files)) {
            await fsp.writeFile(path.join(dir, file), value).catch((err: Error) => {
              logger.warn('cgroup setting refused', { file, err });
            });
          }
          await fsp.writeFile(path.join(dir, group.procs), String(pid));
        } catch (err) {
          logger.warn('could not move a worker into its cgroup', { pid, err });
        }
      }
    },
    oomKilled(pid) {
      if (!cgroups) return false;
      for (const group of cgroups.groups) {
        if (!group.oomFile) continue;
        try {
          const text = fs.readFileSync(path.join(leaf(group, pid), group.oomFile), 'utf8');
          const count =
            group.oomFile === 'memory.events' ? /oom_kill (\d+)/.exec(text)?.[1] : text.trim();
          if (Number(count) > 0) return true;
        } catch {
          // Gone already.
        }
      }
      return false;
    },
    release(pid) {
      for (const group of cgroups?.groups ?? []) {
        fs.rmdir(leaf(group, pid), () => undefined);
      }
    },
    close() {
      for (const group of cgroups?.groups ?? []) {
        try {
          for (const child of fs.readdirSync(group.dir)) {
            if (child.startsWith('w-')) fs.rmdirSync(path.join(group.dir, child));
          }
          fs.rmdirSync(group.dir);
        } catch {
          // A worker still exiting keeps its leaf busy; the kernel drops empty groups' tasks.
        }
      }
    },
  };
}

/** The folder of an installed package (the nearest package.json above its entry point). */
function packageDir(name: string, from: string): string {
  let dir = path.dirname(require.resolve(name, { paths: [from] }));
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) {
    dir = path.dirname(dir);
  }
  return dir;
}

/** What a worker may read under the permission model: our compiled code, vm2 and its deps. */
export function workerReadPaths(): string[] {
  const vm2 = packageDir('vm2', __dirname);
  const manifest = JSON.parse(fs.readFileSync(path.join(vm2, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  const deps = Object.keys(manifest.dependencies ?? {}).map((dep) => packageDir(dep, vm2));
  // The worker runs dist/src/worker and imports dist/src/pool/wire: allow the whole dist/src.
  return [path.dirname(__dirname), vm2, ...deps];
}

/**
 * Confines the server's workers as the config says (WORKER_MEMORY_MB, WORKER_CPU_QUOTA,
 * WORKER_USER), each reading only its own code (workerReadPaths). Never rejects for a missing
 * capability: what cannot be enforced is reported and logged (setupConfinement).
 */
export function confineWorkers(
  config: Pick<Config, 'workerMemoryMb' | 'workerCpuQuota' | 'workerUser'>,
  logger: Logger,
): Promise<WorkerConfinement> {
  return setupConfinement({
    memoryMb: config.workerMemoryMb,
    cpuQuota: config.workerCpuQuota,
    user: config.workerUser,
    readPaths: workerReadPaths(),
    logger,
  });
}
