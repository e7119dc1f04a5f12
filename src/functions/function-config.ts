/**
 * A function's own settings (docs/spec.md §7): `export const config = {…}` or `module.exports.config`
 * beside the handler. The worker that loads a version sends the config as JSON text; this module
 * validates it into a frozen FunctionConfig, or says which key is wrong. One row per key: later
 * settings add a row, nothing else.
 */
import { Cron } from 'croner';
import { FunctionCompileError } from '../errors';

/** HTTP methods a function may list in `config.methods`. */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

/** A validated function config; every key is optional (absent = the server's default). */
export interface FunctionConfig {
  /** This function's wall-clock limit, ms (10 … MAX_TIMEOUT_MS). */
  readonly timeoutMs?: number;
  /** The methods it answers; any other is 405 with `Allow`. Upper case, no duplicates. */
  readonly methods?: readonly HttpMethod[];
  /** Whether the event carries `rawBody` (the body's exact bytes, base64). */
  readonly rawBody?: boolean;
  /** Who answers CORS: the server (default) or the function itself, preflights included. */
  readonly cors?: 'server' | 'function';
  /** `context.env`: names to string values. */
  readonly env?: Readonly<Record<string, string>>;
  /** Which secrets reach `context.secrets` (docs/spec.md §8). */
  readonly secrets?: readonly string[];
  /** Invocations of this function in the pool at once (running or waiting); past it, 429. */
  readonly maxConcurrency?: number;
  /** Cron expressions (5 fields, or 6 with seconds first) it is invoked on (docs/spec.md §9). */
  readonly schedule?: readonly string[];
  /** The IANA zone `schedule` is read in; UTC when absent. */
  readonly timezone?: string;
  /**
   * What a tick does while the previous run of its schedule is still queued or running
   * (docs/spec.md §9): `skip` it (the default: counted and recorded), or `allow` it to run too.
   */
  readonly overlap?: 'skip' | 'allow';
  /** The async invocation policy (docs/spec.md §9); absent keys take ASYNC_DEFAULTS. */
  readonly async?: Readonly<Partial<AsyncPolicy>>;
}

/** How an async invocation of a function is retried (`config.async`, docs/spec.md §9). */
export interface AsyncPolicy {
  /** Attempts after the first, when an attempt fails (0 … 10). */
  retries: number;
  /** An invocation this old (from its arrival) is not started again (1 … 86400). */
  maxAgeSeconds: number;
}

export const ASYNC_DEFAULTS: Readonly<AsyncPolicy> = Object.freeze({
  retries: 2,
  maxAgeSeconds: 3600,
});

/** The async policy a config asks for, defaults filled in. */
export function asyncPolicy(config: FunctionConfig): AsyncPolicy {
  return { ...ASYNC_DEFAULTS, ...config.async };
}

/** How cron expressions are read everywhere (validation, croner's timers, BullMQ's schedulers). */
export const CRON_MODE = '5-or-6-parts';
/** At most this many expressions in one `config.schedule`. */
const MAX_SCHEDULES = 16;

/**
 * A cron expression's parsed form, for its next run times; `timezone` undefined is UTC.
 * @throws Error saying what is wrong with the expression or the zone.
 */
export function cronOf(expression: string, timezone = 'UTC'): Cron {
  return new Cron(expression, { timezone, mode: CRON_MODE, paused: true });
}

/** A secret's name (also checked by the secrets store). */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** The largest config.maxConcurrency (a bound, not a reservation). */
const MAX_CONCURRENCY = 100_000;
/** Bounds of config.env: it travels with every invocation. */
const MAX_ENV_KEYS = 100;
const MAX_ENV_BYTES = 64 * 1024;

/** What validation needs to know about the server. */
export interface ConfigLimits {
  maxTimeoutMs: number;
}

type Rule = (value: unknown, limits: ConfigLimits) => unknown;

class Invalid extends Error {}

const RULES: Record<string, Rule> = {
  timeoutMs(value, { maxTimeoutMs }) {
    if (!Number.isInteger(value) || (value as number) < 10 || (value as number) > maxTimeoutMs) {
      throw new Invalid(`must be a whole number of ms from 10 to ${maxTimeoutMs} (MAX_TIMEOUT_MS)`);
    }
    return value;
  },
  methods(value) {
    if (!Array.isArray(value) || value.length === 0) {
      throw new Invalid(`must be a non-empty array of ${HTTP_METHODS.join(', ')}`);
    }
    const methods = new Set<HttpMethod>();
    for (const item of value) {
      const method = typeof item === 'string' ? item.toUpperCase() : undefined;
      if (!HTTP_METHODS.includes(method as HttpMethod)) {
        throw new Invalid(`holds ${JSON.stringify(item)}; use ${HTTP_METHODS.join(', ')}`);
      }
      methods.add(method as HttpMethod);
    }
    return Object.freeze([...methods]);
  },
  maxConcurrency(value) {
    if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_CONCURRENCY) {
      throw new Invalid(`must be a whole number from 1 to ${MAX_CONCURRENCY}`);
    }
    return value;
  },
  rawBody(value) {
    if (typeof value !== 'boolean') throw new Invalid('must be true or false');
    return value;
  },
  env(value) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Invalid('must be an object of names to strings');
    }
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length > MAX_ENV_KEYS) throw new Invalid(`has more than ${MAX_ENV_KEYS} names`);
    let bytes = 0;
    for (const [name, text] of entries) {
      if (!ENV_NAME.test(name))
        throw new Invalid(`has the name ${JSON.stringify(name)}; use [A-Za-z_][A-Za-z0-9_]*`);
      if (typeof text !== 'string') throw new Invalid(`.${name} must be a string`);
      bytes += Buffer.byteLength(name) + Buffer.byteLength(text);
    }
    if (bytes > MAX_ENV_BYTES) throw new Invalid(`is over ${MAX_ENV_BYTES} bytes`);
    return Object.freeze(Object.fromEntries(entries));
  },
  secrets(value) {
    if (!Array.isArray(value)) throw new Invalid('must be an array of secret names');
    for (const name of value) {
      if (typeof name !== 'string' || !SECRET_NAME.test(name)) {
        throw new Invalid(`holds ${JSON.stringify(name)}; a secret name is [A-Za-z_][A-Za-z0-9_]*`);
      }
    }
    return Object.freeze([...new Set(value as string[])]);
  },
  cors(value) {
    if (value !== 'server' && value !== 'function') {
      throw new Invalid('must be "server" or "function"');
    }
    return value;
  },
  schedule(value) {
    const list: unknown[] = Array.isArray(value) ? value : [value];
    if (list.length === 0 || list.length > MAX_SCHEDULES) {
      throw new Invalid(`must be a cron expression or an array of 1 to ${MAX_SCHEDULES} of them`);
    }
    const expressions = new Set<string>();
    for (const item of list) {
      if (typeof item !== 'string' || item.length > 200) {
        throw new Invalid(`holds ${JSON.stringify(item)}; a cron expression is a string`);
      }
      const expression = item.trim().replace(/\s+/g, ' ');
      let next: Date | null;
      try {
        const cron = cronOf(expression);
        next = cron.nextRun();
        cron.stop();
      } catch (err) {
        throw new Invalid(
          `holds ${JSON.stringify(item)}: ${cronMessage(err)} ` +
            '(5 fields "min hour day month weekday", or 6 with seconds first)',
        );
      }
      if (next === null) throw new Invalid(`holds ${JSON.stringify(item)}, which never fires`);
      expressions.add(expression);
    }
    return Object.freeze([...expressions]);
  },
  timezone(value) {
    if (typeof value !== 'string' || value.length > 64) {
      throw new Invalid('must be an IANA time zone name such as "Europe/Berlin"');
    }
    try {
      // Intl knows the zones of the IANA database that Node ships, and refuses the rest.
      new Intl.DateTimeFormat('en-US', { timeZone: value });
    } catch {
      throw new Invalid(`is ${JSON.stringify(value)}, not an IANA time zone name (e.g. "UTC")`);
    }
    return value;
  },
  overlap(value) {
    if (value !== 'skip' && value !== 'allow') {
      throw new Invalid(`must be "skip" or "allow", got ${JSON.stringify(value)?.slice(0, 40)}`);
    }
    return value;
  },
  async(value) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Invalid('must be an object { retries?, maxAgeSeconds? }');
    }
    const policy: Partial<AsyncPolicy> = {};
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      const range = key === 'retries' ? [0, 10] : key === 'maxAgeSeconds' ? [1, 86_400] : undefined;
      if (!range) {
        throw new Invalid(
          `.${JSON.stringify(key).slice(1, -1)} is not a key of it (retries, maxAgeSeconds)`,
        );
      }
      if (!Number.isInteger(item) || (item as number) < range[0] || (item as number) > range[1]) {
        throw new Invalid(`.${key} must be a whole number from ${range[0]} to ${range[1]}`);
      }
      policy[key as keyof AsyncPolicy] = item as number;
    }
    return Object.freeze(policy);
  },
};

/** croner's message without its class prefix ("CronPattern: …"). */
function cronMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/^Cron\w*:\s*/, '');
}

const fail = (message: string) => new FunctionCompileError(`invalid config: ${message}`);

/**
 * Validates a function's config, given as the JSON text its worker sent (`undefined` or `null`
 * when the file exports none).
 * @throws FunctionCompileError naming the key and what it must be.
 */
export function parseFunctionConfig(
  json: string | undefined,
  limits: ConfigLimits,
): FunctionConfig {
  const raw: unknown = json === undefined ? undefined : JSON.parse(json);
  if (raw === undefined || raw === null) return Object.freeze({});
  if (typeof raw !== 'object' || Array.isArray(raw)) throw fail('config must be an object');
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const rule = Object.hasOwn(RULES, key) ? RULES[key] : undefined;
    if (!rule) {
      const known = Object.keys(RULES).join(', ');
      throw fail(`unknown key config.${JSON.stringify(key).slice(1, -1)} (known: ${known})`);
    }
    try {
      config[key] = rule(value, limits);
    } catch (err) {
      if (err instanceof Invalid) {
        const joint = err.message.startsWith('.') ? '' : ' ';
        throw fail(`config.${key}${joint}${err.message}`);
      }
      throw err;
    }
  }
  return Object.freeze(config) as FunctionConfig;
}
