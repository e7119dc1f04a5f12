/**
 * What the escape suites (test/worker/escape.test.ts, package-escape.test.ts) share: a canary
 * secret planted in the server's environment, the check that an answer carries nothing of the
 * host, and the sandbox-side `summary(v)` each probe describes what it reached with.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Response } from 'supertest';

export const CANARY_VAR = 'KOA_FAAS_ESCAPE_CANARY';
export const CANARY = `canary-${randomUUID()}`;

/** What `attempt` answers for `Function` from a string in the sandbox. */
export const NO_CODEGEN = {
  threw: 'EvalError',
  message: 'Code generation from strings disallowed for this context',
};

/**
 * Sandbox code: `summary(v)` describes a value without handing back host objects (its type, and
 * whether it looks like a process, an env or a require).
 */
export const SUMMARY_SOURCE = `
function summary(v) {
  const t = typeof v;
  if (v === null || (t !== 'object' && t !== 'function')) return { got: t, value: v === undefined ? 'undefined' : v };
  const s = { got: t };
  try { if (typeof v.pid === 'number') s.pid = v.pid; } catch (e) {}
  try { if (v.env) s.env = Object.keys(v.env); } catch (e) {}
  try { if (v.mainModule || typeof v.binding === 'function' || typeof v.dlopen === 'function') s.processLike = true; } catch (e) {}
  try { if (typeof v.require === 'function') s.require = true; } catch (e) {}
  return s;
}
`;

/**
 * Puts the canary into this process's environment (the server's, which the workers must never
 * see) and returns the values of the server's own env long enough not to occur by chance.
 */
export function plantCanary(): string[] {
  process.env[CANARY_VAR] = CANARY;
  const secrets: string[] = [];
  for (const name of ['PATH', 'HOME', 'PWD', 'NODE_OPTIONS', 'npm_config_cache']) {
    const value = process.env[name];
    if (value && value.length >= 6) secrets.push(value);
  }
  return secrets;
}

/** Nothing host-side in an answer: the canary, env values, host paths, a process summary. */
export function assertNoLeak(res: Response, serverSecrets: readonly string[]): void {
  const text = `${JSON.stringify(res.headers)}\n${res.text}`;
  assert.ok(!text.includes(CANARY), 'the canary secret leaked');
  for (const secret of serverSecrets) assert.ok(!text.includes(secret), `${secret} leaked`);
  assert.doesNotMatch(text, /\/work\/|node_modules|\/dist\/|runner\.js/, 'a host path leaked');
  assert.doesNotMatch(text, /"pid"|"processLike"|"require":true|"env":\[/, 'a host object leaked');
}
