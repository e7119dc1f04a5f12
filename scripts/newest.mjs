// The newest modification time of a tree, for the build scripts' "has anything changed" checks.
import fs from 'node:fs';
import path from 'node:path';

/** The newest modification time (ms) of a file or of any file or folder under a folder; 0 if absent. */
export function newest(file) {
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  if (!stat) return 0;
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = stat.mtimeMs;
  for (const entry of fs.readdirSync(file))
    latest = Math.max(latest, newest(path.join(file, entry)));
  return latest;
}
