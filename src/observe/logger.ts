/**
 * The structured logger: pino (https://github.com/pinojs/pino), one JSON object per line with
 * `level` (as a label: `info`), `time` (epoch ms), the bindings of its child chain, the line's
 * fields, `msg`, and `err` for errors (`{ type, message, stack, code? }`). User-controlled strings
 * are only ever values, never keys. `LOG_FORMAT=text` prints `time LEVEL msg key=value …` instead,
 * formatted here from pino's line (text is for people at a terminal, not for speed).
 *
 * The interface is ours (`info(msg, fields)`), not pino's (`info(fields, msg)`), so its callers do
 * not depend on pino. A child made per request costs one small object until a line is written
 * at an enabled level: most requests write none below `info` (and none at all at `warn`).
 */
import pino from 'pino';
import type { Logger as Pino, LevelWithSilent } from 'pino';

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'json' | 'text';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** An info line written whatever the level (except silent): start-up facts such as the port. */
  announce(msg: string, fields?: Record<string, unknown>): void;
  child(bindings: Record<string, unknown>): Logger;
  /** Whether a line at `level` would be written (to skip building fields nobody reads). */
  isLevelEnabled(level: Method): boolean;
}

export interface LoggerOptions {
  level?: Level;
  /** `json` (default): one object per line; `text`: `time LEVEL msg key=value …`. */
  format?: LogFormat;
  /** Where lines go; defaults to process.stdout. */
  write?: (line: string) => void;
}

/** `err` as `{ type, message, stack, code? }`; anything that is not an Error as it is. */
function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { type: err.name, message: err.message, stack: err.stack };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  return out;
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

type Method = 'debug' | 'info' | 'warn' | 'error';

/** Our interface over one pino logger; `bindings` not yet applied make the pino child lazily. */
class PinoLogger implements Logger {
  private made?: Pino;

  constructor(
    private readonly parent: Pino,
    private readonly bindings: Record<string, unknown> | undefined,
    private readonly announcer: () => Pino | undefined,
  ) {}

  private get pino(): Pino {
    if (this.made === undefined) {
      this.made = this.bindings === undefined ? this.parent : this.parent.child(this.bindings);
    }
    return this.made;
  }

  isLevelEnabled(level: Method): boolean {
    return this.parent.isLevelEnabled(level);
  }

  private log(level: Method, msg: string, fields: Record<string, unknown> | undefined): void {
    if (!this.parent.isLevelEnabled(level)) return;
    if (fields === undefined) this.pino[level](msg);
    else this.pino[level](fields, msg);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log('error', msg, fields);
  }

  announce(msg: string, fields?: Record<string, unknown>): void {
    const loud = this.announcer();
    if (loud === undefined) return;
    const target = this.bindings === undefined ? loud : loud.child(this.bindings);
    if (fields === undefined) target.info(msg);
    else target.info(fields, msg);
  }

  child(bindings: Record<string, unknown>): Logger {
    // Bindings of a chain not yet made are merged, so a chain still makes one pino child.
    if (this.made === undefined && this.bindings !== undefined) {
      return new PinoLogger(this.parent, { ...this.bindings, ...bindings }, this.announcer);
    }
    return new PinoLogger(this.pino, bindings, () => this.announcerFor());
  }

  private announcerFor(): Pino | undefined {
    const loud = this.announcer();
    return loud === undefined || this.bindings === undefined ? loud : loud.child(this.bindings);
  }
}

/** A logger writing to stdout (or `write`) at `level` and above, as JSON lines or as text. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level: LevelWithSilent = options.level ?? 'info';
  const write = options.write ?? ((line: string) => void process.stdout.write(line));
  const text = options.format === 'text';
  const destination = {
    write: text
      ? (line: string) => write(toText(JSON.parse(line) as Record<string, unknown>) + '\n')
      : write,
  };
  const root = pino(
    {
      level,
      // No pid and hostname: the same fields as before pino.
      base: undefined,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError },
    },
    destination,
  );
  // `announce` writes at info whatever the level, except silent.
  const loud = level === 'silent' ? undefined : root.child({}, { level: 'info' });
  return new PinoLogger(root, undefined, () => loud);
}
