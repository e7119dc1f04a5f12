/**
 * The secret store of docs/spec.md §8: named values set through `PUT /_/secrets/<name>`, listed by name
 * and update time only, and read by the server for the functions whose `config.secrets` names
 * them (`context.secrets`). It lives beside the KV store, in the same SQLite file or Redis
 * (secrets-sqlite.ts, secrets-redis.ts); kv/index.ts builds both on one connection.
 */
import { InvalidSecretError, PayloadTooLargeError } from '../errors';

export interface SecretStore {
  /** Creates or replaces a secret. */
  set(name: string, value: string): Promise<{ created: boolean }>;
  /** true if it existed. */
  delete(name: string): Promise<boolean>;
  /** Names and update times (ISO 8601), by name; never values. */
  list(): Promise<{ name: string; updatedAt: string }[]>;
  /** The values of the named secrets that exist; the others are absent. */
  values(names: readonly string[]): Promise<Record<string, string>>;
  close(): Promise<void>;
}

/** A secret's name: what `config.secrets` lists and `context.secrets` is keyed by. */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
export const MAX_SECRET_BYTES = 64 * 1024;

/** @throws InvalidSecretError */
export function checkSecretName(name: string): string {
  if (!SECRET_NAME.test(name)) {
    const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
    throw new InvalidSecretError(
      `invalid secret name ${shown}: use [A-Za-z_][A-Za-z0-9_]*, at most 128 characters`,
    );
  }
  return name;
}

/** @throws PayloadTooLargeError over 64 KiB of UTF-8; InvalidSecretError when empty. */
export function checkSecretValue(value: string): string {
  if (typeof value !== 'string' || value === '') {
    throw new InvalidSecretError('a secret value must be non-empty text');
  }
  const size = Buffer.byteLength(value, 'utf8');
  if (size > MAX_SECRET_BYTES) {
    throw new PayloadTooLargeError(
      `the secret value is ${size} bytes of UTF-8: at most ${MAX_SECRET_BYTES}`,
    );
  }
  return value;
}
