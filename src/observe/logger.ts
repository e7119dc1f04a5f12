/**
 * A small JSON-lines logger in pino's shape: one object per line with `level`, `time`, `msg`,
 * the bindings of its child chain, and `err` for errors. User-controlled strings are only ever
 * values, never keys.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'json' | 'text';

const RANK: Record<Level, number> = { debug: 20, info: 30, warn: 40, error: 50, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** An info line written whatever the level (except silent): start-up facts such as the port. */
  announce(msg: string, fields?: Record<string, unknown>): void;
  child(bindings: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: Level;
  /** `json` (default): one object per line; `text`: `time LEVEL msg key=value …`. */
  format?: LogFormat;
  /** Where lines go; defaults to process.stdout. */
  write?: (line: string) => void;
}

function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { type: err.name, message: err.message, stack: err.stack };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  return out;
}

function toJson(entry: Record<string, unknown>): string {
  try {
    return JSON.stringify(entry);
  } catch {
    return JSON.stringify({
      level: entry.level,
      time: entry.time,
      msg: entry.msg,
      note: 'unserializable',
    });
  }
}

function toText(entry: Record<string, unknown>): string {
  const { level, time, msg, ...rest } = entry;
  let line = `${new Date(time as number).toISOString()} ${String(level).toUpperCase().padEnd(5)} ${String(msg)}`;
  for (const [key, value] of Object.entries(rest)) {
    let shown: string;
    try {
      shown = typeof value === 'string' ? value : JSON.stringify(value);
    } catch {
      shown = String(value);
    }
    line += ` ${key}=${/[\s"]/.test(shown) ? JSON.stringify(shown) : shown}`;
  }
  return line;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const threshold = RANK[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stdout.write(line));

  const make = (bindings: Record<string, unknown>): Logger => {
    const log = (
      level: Exclude<Level, 'silent'>,
      msg: string,
      fields?: Record<string, unknown>,
      force = false,
    ) => {
      if (RANK[level] < threshold && !(force && threshold < RANK.silent)) return;
      const entry: Record<string, unknown> = {
        level,
        time: Date.now(),
        ...bindings,
        ...fields,
        msg,
      };
      if (entry.err !== undefined) entry.err = serializeError(entry.err);
      write((options.format === 'text' ? toText(entry) : toJson(entry)) + '\n');
    };
    return {
      debug: (msg, fields) => log('debug', msg, fields),
      info: (msg, fields) => log('info', msg, fields),
      warn: (msg, fields) => log('warn', msg, fields),
      error: (msg, fields) => log('error', msg, fields),
      announce: (msg, fields) => log('info', msg, fields, true),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return make({});
}
