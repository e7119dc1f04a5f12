/**
 * A throwaway redis-server for tests: loopback, an ephemeral port, no persistence, in a temp
 * folder. `REDIS_MISSING` says why Redis tests skip when the binary is not installed (`.ci/run`
 * installs it, so CI always runs them).
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './system';

function missing(): string | false {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'redis-server is not installed (apt-get install redis-server): Redis tests skipped';
  }
}

export const REDIS_MISSING = missing();

export interface TestRedis {
  url: string;
  /** Kills the server (SIGKILL) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** SIGSTOP: the server keeps its connections open and answers nothing (a stall). */
  pause(): void;
  /** SIGCONT: it runs again, and answers what it was sent meanwhile. */
  resume(): void;
  close(): Promise<void>;
}

/** `args`: more redis-server options (e.g. `--appendonly yes` to keep data across a stop). */
export async function startRedis(args: string[] = []): Promise<TestRedis> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kf-redis-'));
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args],
      { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const proc = child;
    const ready = new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => reject(new Error(`redis-server did not start: ${out}`)),
        10_000,
      );
      proc.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}: ${out}`));
      });
    });
    await ready.catch(async (err: Error) => {
      await stop(); // a server that did not start must not outlive the test
      throw err;
    });
    proc.stdout?.resume();
  };

  const stop = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };

  await start().catch((err: Error) => {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    close: async () => {
      child?.kill('SIGCONT');
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
