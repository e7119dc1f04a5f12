/**
 * Worker confinement (src/pool/confinement.ts): detection never fails the server, the cgroup files we
 * write (v1 and v2, on fake trees), and what a real worker process runs with.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { setupConfinement } from '../../src/pool/confinement';
import { createLogger } from '../../src/observe/logger';
import { startServer } from '../support/server';

const logger = createLogger({ level: 'silent' });
const temps: string[] = [];
after(() => temps.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'koa-faas-cgroup-'));
  temps.push(dir);
  return dir;
}

/** This process's cgroup path for a v1 controller, or for v2 (''), as /proc/self/cgroup says. */
function ownCgroup(controller: string): string {
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')) {
    const [, controllers, where] = line.split(':');
    if (controllers.split(',').includes(controller)) return where;
  }
  return '/';
}

const base = { memoryMb: 100, cpuQuota: 0.5, user: 'nobody', readPaths: ['/app/dist'], logger };

describe('cgroup detection', () => {
  test('a missing cgroup mount means no quotas, not a failure', async () => {
    const confinement = await setupConfinement({ ...base, cgroupRoot: '/nonexistent/cgroup' });
    assert.equal(confinement.report.cgroup, 'none');
    assert.match(confinement.report.cgroupNote ?? '', /no cgroup hierarchy/);
    await confinement.attach(process.pid); // a no-op without cgroups
    assert.equal(confinement.oomKilled(process.pid), false);
    confinement.close();
  });

  test('cgroup v2: memory.max, cpu.max and cgroup.procs are written per worker', async () => {
    const root = tempDir();
    fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    const own = path.join(root, ownCgroup(''));
    fs.mkdirSync(own, { recursive: true });
    const confinement = await setupConfinement({ ...base, cgroupRoot: root });
    assert.equal(confinement.report.cgroup, 'v2');
    assert.equal(confinement.report.memoryLimitMb, 100 + 96);
    const parent = path.join(own, `koa-faas-${process.pid}`);
    assert.match(fs.readFileSync(path.join(parent, 'cgroup.subtree_control'), 'utf8'), /\+memory/);
    await confinement.attach(4242);
    const leaf = path.join(parent, 'w-4242');
    assert.equal(fs.readFileSync(path.join(leaf, 'memory.max'), 'utf8'), String(196 * 1024 * 1024));
    assert.equal(fs.readFileSync(path.join(leaf, 'cpu.max'), 'utf8'), '50000 100000');
    assert.equal(fs.readFileSync(path.join(leaf, 'cgroup.procs'), 'utf8'), '4242');
    assert.equal(confinement.oomKilled(4242), false);
    fs.writeFileSync(path.join(leaf, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
    assert.equal(confinement.oomKilled(4242), true);
  });

  test('cgroup v1: memory.limit_in_bytes and cfs quota in their own hierarchies', async () => {
    const root = tempDir();
    const memory = path.join(root, 'memory');
    fs.mkdirSync(path.join(memory, ownCgroup('memory')), { recursive: true });
    fs.writeFileSync(path.join(memory, 'memory.limit_in_bytes'), '9223372036854771712');
    fs.mkdirSync(path.join(root, 'cpu', ownCgroup('cpu')), { recursive: true });
    const confinement = await setupConfinement({ ...base, cgroupRoot: root });
    assert.equal(confinement.report.cgroup, 'v1');
    await confinement.attach(4343);
    const memLeaf = path.join(memory, ownCgroup('memory'), `koa-faas-${process.pid}`, 'w-4343');
    const cpuLeaf = path.join(root, 'cpu', ownCgroup('cpu'), `koa-faas-${process.pid}`, 'w-4343');
    assert.equal(
      fs.readFileSync(path.join(memLeaf, 'memory.limit_in_bytes'), 'utf8'),
      String(196 * 1024 * 1024),
    );
    assert.equal(fs.readFileSync(path.join(cpuLeaf, 'cpu.cfs_quota_us'), 'utf8'), '50000');
    assert.equal(fs.readFileSync(path.join(cpuLeaf, 'cgroup.procs'), 'utf8'), '4343');
  });

  test('stale groups of dead servers are removed at start', async () => {
    const root = tempDir();
    fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'memory\n');
    const own = path.join(root, ownCgroup(''));
    // pid 2^22 + 1 is above Linux's pid_max: never alive.
    const stale = path.join(own, `koa-faas-${2 ** 22 + 1}`);
    fs.mkdirSync(path.join(stale, 'w-1'), { recursive: true });
    await setupConfinement({ ...base, cgroupRoot: root });
    assert.equal(fs.existsSync(stale), false);
  });
});

describe('a real worker process', () => {
  test('runs with an empty environment, the permission model and the heap limit', async (t) => {
    process.env.KOA_FAAS_TEST_CANARY = 'canary-secret-value';
    const server = await startServer({
      functions: { hello: "() => 'hi'" },
      env: { WORKER_MEMORY_MB: '96' },
    });
    t.after(async () => {
      delete process.env.KOA_FAAS_TEST_CANARY;
      await server.close();
    });
    const health = await server.request.get('/_/health');
    assert.equal(health.status, 200);
    const report = health.body.isolation;
    assert.equal(report.environment, 'empty');
    assert.equal(report.permissionModel, true);
    assert.equal(report.heapLimitMb, 96);
    assert.ok(['v1', 'v2', 'none'].includes(report.cgroup));
    const pids = server.server.pool.pids();
    assert.equal(pids.length, 2);
    for (const pid of pids) {
      // Node itself adds the IPC channel's two variables; nothing of the server's environment.
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
      assert.deepEqual(environ.map((entry) => entry.split('=')[0]).sort(), [
        'NODE_CHANNEL_FD',
        'NODE_CHANNEL_SERIALIZATION_MODE',
      ]);
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      assert.ok(cmdline.includes('--experimental-permission'));
      assert.ok(cmdline.includes('--max-old-space-size=96'));
      assert.ok(!cmdline.some((arg) => arg.startsWith('--allow-fs-write')));
      assert.ok(!cmdline.some((arg) => arg.startsWith('--allow-child-process')));
      const uid = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      if (process.getuid?.() === 0) {
        assert.equal(report.user, 'nobody');
        assert.notEqual(uid, '0', 'a root server runs its workers unprivileged');
      } else {
        assert.equal(uid, String(process.getuid?.()));
      }
      if (report.cgroup === 'v1') {
        const leaf = path.join(
          '/sys/fs/cgroup/memory',
          ownCgroup('memory'),
          `koa-faas-${process.pid}`,
          `w-${pid}`,
        );
        const limit = fs.readFileSync(path.join(leaf, 'memory.limit_in_bytes'), 'utf8').trim();
        assert.equal(limit, String((96 + 96) * 1024 * 1024));
        assert.ok(fs.readFileSync(path.join(leaf, 'cgroup.procs'), 'utf8').includes(String(pid)));
      }
    }
    assert.equal((await server.request.get('/hello')).text, 'hi');
  });
});
