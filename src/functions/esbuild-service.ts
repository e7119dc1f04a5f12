/**
 * esbuild's long-lived service process, as every compile and bundle of the server (and the CLI)
 * uses it: one process for all builds, restarted when it died, stopped when the server closes.
 */
import { build, stop } from 'esbuild';
import type { BuildFailure, BuildOptions } from 'esbuild';

/** Whether `err` is esbuild's failure of a build (its `errors` say why). */
export function isBuildFailure(err: unknown): err is BuildFailure {
  return err instanceof Error && Array.isArray((err as Partial<BuildFailure>).errors);
}

/**
 * esbuild's async API: one long-lived esbuild process, so the event loop never waits on it.
 * @throws BuildFailure when the build fails (its `errors` say why).
 */
export async function runEsbuild(options: BuildOptions): ReturnType<typeof build> {
  try {
    return await build(options);
  } catch (err) {
    if (isBuildFailure(err)) throw err;
    // esbuild keeps using its service process after that process died (killed, out of memory)
    // and answers "The service is no longer running" forever; stop() forgets it, so the next
    // build starts a new one.
    await stop();
    return build(options);
  }
}

/**
 * Ends esbuild's service process, if one is running (the server's close calls it, so nothing it
 * started outlives it). The next compile starts a new one.
 */
export async function stopCompiler(): Promise<void> {
  await stop();
}
