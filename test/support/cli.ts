/**
 * The `koa-faas` CLI as tests run it: a real process (`node dist/src/cli/main.js …`), its output
 * collected, killed and failed past a timeout so a CLI that hangs never hangs the test.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

export const CLI = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');

/** Generous: the machine may be loaded. */
const SPAWN_TIMEOUT_MS = 60_000;

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** The whole environment of the process. */
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to its stdin, which is then closed (empty by default). */
  stdin?: string;
}

/**
 * Runs the CLI; resolves when it exits, with its exit code and output.
 * @throws Error when it is still running after SPAWN_TIMEOUT_MS (it is killed).
 */
export function runCli(args: string[], options: CliOptions): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`koa-faas ${args.join(' ')}: still running after ${SPAWN_TIMEOUT_MS} ms`));
    }, SPAWN_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.stdin ?? '');
  });
}
