import { ListenOptionsError } from '../errors';
import { printable } from './terminal';

/**
 * The logger the listener writes to: any object with these four methods, called message first
 * (console, winston). pino and bunyan, whose methods take the fields first, are recognised and
 * called their way (see toLogger), so they too keep every field.
 * Every line the library logs has a stable `event` field (e.g. 'listening', 'batch', 'worker-died')
 * naming what happened, for programs; the message is for people and may change.
 */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'pretty' | 'json';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];
export const LOG_FORMATS: readonly LogFormat[] = ['pretty', 'json'];

export interface ConsoleLoggerOptions {
  /** Lowest level written. Default: PGPUBSUB_LOG_LEVEL, else 'warn'. */
  level?: LogLevel;
  /** 'pretty' (default) for people, 'json' (one object per line) for log collectors. */
  format?: LogFormat;
  /** Fields added to every line, e.g. { worker: 2 }. */
  base?: Record<string, unknown>;
  /** Where lines go. Default: stderr. */
  stream?: { write(text: string): unknown };
}

/**
 * A small console logger. Pretty lines read `12:00:00.123 INFO  [pid 123 worker 2] message {"k":1}`;
 * JSON lines carry time, level, msg, pid and the fields (among them `event`).
 */
export function consoleLogger(options: ConsoleLoggerOptions | LogLevel = {}): Logger {
  const { level = (process.env.PGPUBSUB_LOG_LEVEL as LogLevel) || 'warn', format = 'pretty', base = {}, stream = process.stderr } =
    typeof options === 'string' ? { level: options } : options;
  const threshold = Math.max(0, LOG_LEVELS.indexOf(level));
  const write = (at: LogLevel) => (message: string, fields: Record<string, unknown> = {}) => {
    if (LOG_LEVELS.indexOf(at) < threshold) return;
    const time = new Date();
    if (format === 'json') {
      stream.write(`${JSON.stringify({ time: time.toISOString(), level: at, msg: message, pid: process.pid, ...base, ...fields })}\n`);
      return;
    }
    // `event` names the line for programs (JSON); the message already says it to people.
    const { event: _event, ...rest } = fields;
    const who = Object.entries({ pid: process.pid, ...base }).map(([key, value]) => `${key} ${value}`).join(' ');
    const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
    // Channel names and errors come from the database: printed, they never drive the terminal.
    stream.write(`${time.toISOString().slice(11, 23)} ${at.toUpperCase().padEnd(5)} [${who}] ${printable(`${message}${extra}`)}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/** pino's and bunyan's methods: the fields first, then the message. */
type FieldsFirst = Record<LogLevel & keyof Logger, (fields: Record<string, unknown>, message: string) => void>;

/**
 * Whether `logger` takes the fields first: a pino logger (it has `bindings()` and a `levels` map)
 * or a bunyan one (`streams` and `addStream()`). Called message first, both would drop the fields.
 */
function takesFieldsFirst(logger: object): boolean {
  const candidate = logger as { child?: unknown; bindings?: unknown; levels?: unknown; streams?: unknown; addStream?: unknown };
  if (typeof candidate.child !== 'function') return false;
  const pino = typeof candidate.bindings === 'function' && typeof candidate.levels === 'object' && candidate.levels !== null;
  const bunyan = Array.isArray(candidate.streams) && typeof candidate.addStream === 'function';
  return pino || bunyan;
}

/**
 * The logger as the library calls it: a message-first logger as it is, a fields-first one (pino,
 * bunyan) wrapped so that each call passes the fields first. Checks the four methods are there.
 */
export function toLogger(logger: Logger, where = 'logger'): Logger {
  const missing = (['debug', 'info', 'warn', 'error'] as const).filter((level) => typeof (logger as unknown as Record<string, unknown>)?.[level] !== 'function');
  if (missing.length > 0) {
    throw new ListenOptionsError('PGPUBSUB_LISTEN_OPTIONS', `${where}: a logger needs the methods debug, info, warn and error (console, pino, winston and bunyan have them); this one lacks ${missing.join(', ')}`);
  }
  if (!takesFieldsFirst(logger)) return logger;
  const fieldsFirst = logger as unknown as FieldsFirst;
  const call = (level: keyof Logger) => (message: string, fields: Record<string, unknown> = {}) => fieldsFirst[level](fields, message);
  return { debug: call('debug'), info: call('info'), warn: call('warn'), error: call('error') };
}
