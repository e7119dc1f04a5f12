/**
 * This machine's processes and ports, read from /proc: whether a process runs, a process's
 * children, ending a process group, and a free loopback port.
 */
import fs from 'node:fs';
import net from 'node:net';

/** "pid (comm) state ppid pgrp …": the fields after the last ')' of /proc/<pid>/stat. */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // no such process (any more)
  }
}

/** Whether a process with this pid is alive (a zombie, exited but not yet reaped, is not). */
export function isAlive(pid: number): boolean {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== 'Z';
}

/** Pids of the live child processes of `parent` (by default this process: the servers' workers). */
export function childPids(parent = process.pid): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (fields && Number(fields[1]) === parent && fields[0] !== 'Z') pids.push(Number(entry));
  }
  return pids;
}

/** SIGKILLs every process of process group `pgid` (a child spawned `detached` leads its own). */
export function killGroup(pgid: number | undefined): void {
  if (pgid === undefined) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // the group is gone
  }
}

/** A loopback port that was free a moment ago (bound, then closed: nothing listens on it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
