/** Files for tests: a tree written at once. */
import fs from 'node:fs/promises';
import path from 'node:path';

/** Writes `files` under `dir` (paths relative to it, `/`-separated), creating folders. */
export async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [file, contents] of Object.entries(files)) {
    const target = path.join(dir, ...file.split('/'));
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, contents);
  }
}
