/**
 * The worker's settings, from the pool (worker-process.ts passes them as argv[2], JSON): the
 * worker starts with an empty environment, so nothing here comes from process.env.
 */

export interface RunnerOptions {
  isolation: 'warm' | 'fresh';
  warmContexts: number;
  maxResultBytes: number;
  maxLogBytes: number;
  maxTimers: number;
  /** The longest a version's top-level code may run when it is loaded, ms (docs/spec.md §2). */
  maxStartupMs: number;
}

export const options: RunnerOptions = {
  isolation: 'warm',
  warmContexts: 1000,
  maxResultBytes: 6 * 1024 * 1024,
  maxLogBytes: 64 * 1024,
  maxTimers: 1000,
  maxStartupMs: 1000,
  ...(JSON.parse(process.argv[2] ?? '{}') as Partial<RunnerOptions>),
};
