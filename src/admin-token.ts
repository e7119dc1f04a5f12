/**
 * The first-run admin token (docs/configuration.md "The admin token"). Without ADMIN_TOKEN, a
 * server that keeps its state on this machine (no REDIS_URL) makes a token on its first start,
 * keeps it in `<DATA_DIR>/admin-token` (mode 0600) and uses it on every start after, so the
 * admin API and the console work from the first minute, as Jupyter's token does. With REDIS_URL
 * the replicas must share one token, which only the operator can give them: without
 * ADMIN_TOKEN the admin API stays disabled (403), as before.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config';
import type { Logger } from './observe/logger';

/** The file, in DATA_DIR, that keeps a first-run token. */
export const TOKEN_FILE = 'admin-token';

/** Where the token came from. */
export type TokenSource = 'env' | 'file' | 'created' | 'none';

/**
 * The admin token the server runs with: ADMIN_TOKEN; else (no REDIS_URL) the one in
 * `<DATA_DIR>/admin-token`, made (32 random bytes, base64url) when the file does not exist.
 * Never throws: a DATA_DIR that cannot be written leaves the admin API disabled, with a log line.
 */
export function adminToken(
  config: Pick<Config, 'adminToken' | 'redisUrl' | 'dataDir'>,
  logger: Logger,
): { token: string | undefined; source: TokenSource } {
  if (config.adminToken !== undefined) return { token: config.adminToken, source: 'env' };
  if (config.redisUrl) {
    logger.warn('admin API disabled: set ADMIN_TOKEN (replicas sharing REDIS_URL need one token)');
    return { token: undefined, source: 'none' };
  }
  const file = path.join(config.dataDir, TOKEN_FILE);
  try {
    const kept = fs.readFileSync(file, 'utf8').trim();
    if (kept.length >= 16) return { token: kept, source: 'file' };
    logger.warn('admin API disabled: the token file holds under 16 characters', { file });
    return { token: undefined, source: 'none' };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      logger.warn('admin API disabled: cannot read the token file', { file, err });
      return { token: undefined, source: 'none' };
    }
  }
  const token = randomBytes(32).toString('base64url');
  try {
    fs.mkdirSync(config.dataDir, { recursive: true });
    // `wx`: a second server starting at the same moment keeps the first one's token.
    fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
    return { token, source: 'created' };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return adminToken(config, logger);
    logger.warn('admin API disabled: cannot write the token file (set ADMIN_TOKEN)', { file, err });
    return { token: undefined, source: 'none' };
  }
}
