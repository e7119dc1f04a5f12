/**
 * Sandboxes: a vm2 context per function version. A shell is a new context with our own scripts
 * in it (the envelope, the transport's sandbox side, the globals: see sandbox-source.ts) and no
 * function code yet; `createSandbox` takes one and runs a function's file in it. One shell is
 * kept ready between invocations, so a cold start pays only for the function's own file.
 */
import { VM, VMScript } from 'vm2';
import { noteBlock } from './blocks';
import { ENVELOPE_SOURCE } from './envelope';
import { GLOBALS_SOURCE } from './globals';
import type { AttachServices, HostRequest, InstallGlobals } from './globals';
import { hostCall } from './host-bridge';
import { hostClearTimer, hostLog, hostRequests, hostSetTimer } from './invocations';
import { readSandboxFile } from './sandbox-source';

export type Invoke = (eventJson: string | undefined, contextJson: string) => unknown;

/** A compiled function version: its own vm2 context and the envelope's invoke function. */
export interface Sandbox {
  invoke?: Invoke;
  /** The file's exported config as JSON text, when it exports one. */
  config?: string;
  /** Why the version yields no function (an Outcome.compile payload), when it does not. */
  compileError?: string;
  /** How long the file's top-level code (and the load of what it yields) ran, ms. */
  startupMs?: number;
}

/** A new vm2 context with our envelope and globals in it, no function code yet. */
export interface Shell {
  sandboxVm: VM;
  load: (completion: unknown, attachServices: AttachServices) => unknown;
  attachServices: AttachServices;
}

const envelopeScript = new VMScript(ENVELOPE_SOURCE, 'faas-envelope.js');
const globalsScript = new VMScript(GLOBALS_SOURCE, 'faas-globals.js');
/**
 * The sandbox's side of hostRequest: a sandbox function, so that a refused call throws the
 * sandbox's own Error (host-requests.ts answers why as a string; no host error object crosses).
 */
const requestScript = new VMScript(readSandboxFile('request.js'), 'faas-request.js');

/**
 * Whether the worker is in its own setup code (a shell) rather than in function code: a watchdog
 * that fires then stopped no loop of the function's (the worker is starved of CPU), so the
 * invocation times out without being named the blocker.
 */
let inOwnCode = false;

/**
 * Whether the watchdog's termination, just caught, stopped the worker in its own setup code
 * (see `inOwnCode`); forgets it (the termination skipped makeShell's `finally`).
 */
export function stoppedInSetup(): boolean {
  const was = inOwnCode;
  inOwnCode = false;
  return was;
}

export function makeShell(): Shell {
  inOwnCode = true;
  try {
    const sandboxVm = new VM({ eval: false, wasm: false, allowAsync: true });
    const setup = sandboxVm.run(envelopeScript) as (...host: unknown[]) => unknown;
    const load = setup(hostLog, hostSetTimer, hostClearTimer) as Shell['load'];
    // hostRequest reaches the sandbox through a sandbox function (requestScript), which throws
    // the sandbox's own Error when a call is refused.
    const request = (sandboxVm.run(requestScript) as (host: unknown) => HostRequest)(
      hostRequests.hostRequest,
    );
    const attachServices = (sandboxVm.run(globalsScript) as InstallGlobals)(hostCall, request);
    return { sandboxVm, load, attachServices };
  } finally {
    inOwnCode = false;
  }
}

/**
 * One shell is kept ready (made at start, before `ready`, and again after each use, between
 * invocations): a cold start pays only for the function's own file, and a fresh process's first
 * context (the slowest: ~100–300 ms while V8 warms up) is never made inside an invocation.
 */
let spareShell: Shell | undefined;
/** Stands for the worker itself in blocks.ts, when its own setup holds the loop. */
const SETUP = { id: -1, fn: '(sandbox setup)' };
let spareScheduled = false;

/** Makes the first spare shell (at start, before the worker says `ready`). */
export function prepareSpareShell(): void {
  spareShell = makeShell();
}

function takeShell(): Shell {
  const shell = spareShell ?? makeShell();
  spareShell = undefined;
  if (!spareScheduled) {
    spareScheduled = true;
    setImmediate(() => {
      spareScheduled = false;
      const from = Date.now();
      spareShell ??= makeShell();
      // Our own work between invocations: a neighbour whose deadline passed meanwhile gets its time back.
      noteBlock(SETUP, from);
    });
  }
  return shell;
}

function compileErrorPayload(err: unknown, what = 'the file does not compile'): string {
  let message: string;
  let stack = '';
  try {
    const { name, message: text, stack: trace } = err as Record<string, unknown>;
    message = name !== undefined ? `${String(name)}: ${String(text)}` : String(err);
    stack = String(trace);
  } catch {
    message = 'a value that cannot be read';
  }
  const match = /:(\d+)(?::(\d+))?\)?\s*$/m.exec(stack);
  return JSON.stringify({
    message: `${what}: ${message}`,
    line: match ? Number(match[1]) : undefined,
    column: match?.[2] ? Number(match[2]) : undefined,
  });
}

/** Builds a context for one version and runs the file in it (under the batch's watchdog). */
export function createSandbox(file: string, source: string): Sandbox {
  const { sandboxVm, load, attachServices } = takeShell();
  let script: VMScript;
  try {
    script = new VMScript(source, file).compile();
  } catch (err) {
    return { compileError: compileErrorPayload(err) };
  }
  let completion: unknown;
  const started = performance.now();
  try {
    completion = sandboxVm.run(script);
  } catch (err) {
    // The file's top level threw. (The watchdog's termination cannot be caught here: it
    // unwinds to runBatch.)
    return { compileError: compileErrorPayload(err, 'the file threw while loading') };
  }
  const loaded = load(completion, attachServices);
  const startupMs = performance.now() - started;
  if (typeof loaded === 'string') return { compileError: JSON.stringify({ message: loaded }) };
  const [invoke, config] = loaded as [Invoke, string | undefined];
  return { invoke, config, startupMs };
}
