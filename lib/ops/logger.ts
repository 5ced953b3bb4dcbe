import { ListenOptionsError } from '../errors';
import { printable } from './terminal';
import { errorSummary } from '../error-text';

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
  const write = (at: LogLevel) => (message: string, given: Record<string, unknown> = {}) => {
    if (LOG_LEVELS.indexOf(at) < threshold) return;
    const fields = withErrorSummary(given);
    const time = new Date();
    if (format === 'json') {
      stream.write(`${JSON.stringify({ time: time.toISOString(), level: at, msg: message, pid: process.pid, ...base, ...withErrorObject(fields) })}\n`);
      return;
    }
    // `event` names the line for programs (JSON); the message already says it to people, and
    // `error` the error (its stack is for the JSON lines).
    const { event: _event, err: _err, ...rest } = fields;
    const who = Object.entries({ pid: process.pid, ...base }).map(([key, value]) => `${key} ${value}`).join(' ');
    const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
    // Channel names and errors come from the database: printed, they never drive the terminal.
    stream.write(`${time.toISOString().slice(11, 23)} ${at.toUpperCase().padEnd(5)} [${who}] ${printable(`${message}${extra}`)}\n`);
  };
  return normalising({ debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') });
}

/** Loggers that already take the library's fields as they are given (toLogger's and consoleLogger's): not wrapped again. */
const NORMALISING = new WeakSet<Logger>();

function normalising(logger: Logger): Logger {
  NORMALISING.add(logger);
  return logger;
}

/**
 * The fields with `error`, the one-line summary of their `err`, when a line gives only `err`: so
 * a call site passes the thrown value once, and pretty lines still say what went wrong.
 */
function withErrorSummary(fields: Record<string, unknown>): Record<string, unknown> {
  return fields.err === undefined || fields.error !== undefined ? fields : { ...fields, error: errorSummary(fields.err) };
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
 * The logger as the library calls it: each call goes to the logger's method of the moment, the
 * fields first for pino and bunyan, and `err` as withErrorObject() gives it (an Error as it is for
 * pino and bunyan). Checks the four methods are there.
 */
export function toLogger(logger: Logger, where = 'logger'): Logger {
  if (NORMALISING.has(logger)) return logger;
  const missing = (['debug', 'info', 'warn', 'error'] as const).filter((level) => typeof (logger as unknown as Record<string, unknown>)?.[level] !== 'function');
  if (missing.length > 0) {
    throw new ListenOptionsError('PGPUBSUB_LISTEN_OPTIONS', `${where}: a logger needs the methods debug, info, warn and error (console, pino, winston and bunyan have them); this one lacks ${missing.join(', ')}`);
  }
  const fieldsFirst = takesFieldsFirst(logger);
  // The method looked up at each call: pino swaps an instance's methods when its level changes,
  // and a spy put on a logger after listen() must see the calls.
  const call = (level: keyof Logger) => (message: string, given: Record<string, unknown> = {}): void => {
    const fields = withErrorSummary(given);
    const method = logger[level] as (...args: unknown[]) => void;
    // pino and bunyan get the Error itself (their `err` serializers print its type, message and
    // stack); message-first loggers a plain object that their JSON keeps.
    if (fieldsFirst) method.call(logger, fields.err === undefined || fields.err instanceof Error ? fields : withErrorObject(fields), message);
    else method.call(logger, message, withErrorObject(fields));
  };
  return normalising({ debug: call('debug'), info: call('info'), warn: call('warn'), error: call('error') });
}

/**
 * The fields with their `err` (the Error a line is about) as a plain object: type, message,
 * stack, and the driver's code when there is one, as pino's error serializer prints an Error.
 * winston's and the console logger's JSON keep it (an Error itself serializes as {}).
 */
export function withErrorObject(fields: Record<string, unknown>): Record<string, unknown> {
  const err = fields.err;
  if (err === undefined) return fields;
  // A callback may throw anything (a cyclic object, a BigInt): it goes out as its one-line summary.
  if (!(err instanceof Error)) return { ...fields, err: { type: typeof err, message: errorSummary(err) } };
  const e = err as Error & { code?: unknown; parent?: { code?: unknown } };
  const code = e.parent?.code ?? e.code;
  return { ...fields, err: { type: e.name, message: e.message, stack: e.stack, ...(typeof code === 'string' ? { code } : {}) } };
}
