/**
 * The envelope: the script that runs in every sandbox before the function itself (console,
 * timers, `module`/`exports`, and the function's invoke path). Its code and its contract are in
 * ./sandbox/envelope.js.
 */
import { readSandboxFile } from './sandbox-source';

/** The envelope's source: evaluates to `(hostLog, hostSetTimer, hostClearTimer) => load`. */
export const ENVELOPE_SOURCE = readSandboxFile('envelope.js');
