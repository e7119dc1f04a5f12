/**
 * Where the CLI sends its requests and with which token: `--url`, else KOA_FAAS_URL, else the
 * config file `login` wrote, else http://localhost:3000; `--token`, else KOA_FAAS_TOKEN, else the
 * config file. The config file is `$XDG_CONFIG_HOME/koa-faas/config.json` (`~/.config/…` when
 * XDG_CONFIG_HOME is unset), written with mode 0600 because it holds the admin token.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const DEFAULT_URL = 'http://localhost:3000';

/** What `login` stores. */
export interface StoredConfig {
  url?: string;
  token?: string;
}

/** The options every command takes (commander's `optsWithGlobals()`). */
export interface GlobalOptions {
  url?: string;
  token?: string;
  json?: boolean;
}

/** What a command works with: the server's URL (no trailing slash), the token if any, `--json`. */
export interface Settings {
  url: string;
  token?: string;
  json: boolean;
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'koa-faas', 'config.json');
}

/** The stored config, or `{}` when there is none. @throws when the file is not JSON. */
export function readConfig(file = configPath()): StoredConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  try {
    const parsed = JSON.parse(text) as StoredConfig;
    return typeof parsed === 'object' && parsed !== null ? parsed : {};
  } catch {
    throw new Error(`${file} is not valid JSON`);
  }
}

/** Writes the config (creating its folder), readable by its owner only. */
export function writeConfig(config: StoredConfig, file = configPath()): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  // writeFile's mode applies only when it creates the file.
  fs.chmodSync(file, 0o600);
}

export function resolveSettings(
  options: GlobalOptions,
  env: NodeJS.ProcessEnv = process.env,
): Settings {
  const stored = readConfig(configPath(env));
  const url = options.url || env.KOA_FAAS_URL || stored.url || DEFAULT_URL;
  const token = options.token || env.KOA_FAAS_TOKEN || stored.token || undefined;
  return { url: url.replace(/\/+$/, ''), token, json: options.json === true };
}
