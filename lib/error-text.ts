/**
 * Error text for logs and `last_error`. Sequelize wraps driver errors and gives the wrapper a stack
 * whose first line has no message, so the text is built from the parts: `name: message`, the
 * driver's own message and SQL state when they add something, then the stack frames.
 */
import { inspect } from 'node:util';

interface ErrorParts {
  name?: string;
  message?: string;
  code?: unknown;
  stack?: string;
  parent?: { message?: string; code?: unknown; detail?: string };
  original?: { message?: string; code?: unknown; detail?: string };
  sql?: string;
}

const SQLSTATE = /^[0-9A-Z]{5}$/;

/** The SQL state PostgreSQL sent with this error, if it came from the server. */
export function sqlState(error: unknown): string | undefined {
  const e = error as ErrorParts | null;
  const code = e?.parent?.code ?? e?.original?.code ?? e?.code;
  return typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
}

/** One line: `SequelizeDatabaseError: relation "x" does not exist (SQLSTATE 42P01)`. */
export function errorSummary(error: unknown): string {
  if (!(error instanceof Error)) return typeof error === 'string' ? error : safeJson(error);
  const e = error as ErrorParts;
  const driver = e.parent ?? e.original;
  let text = `${error.name}: ${error.message}`;
  if (driver?.message && !error.message.includes(driver.message)) text += `: ${driver.message}`;
  if (driver?.detail) text += ` (${driver.detail})`;
  const state = sqlState(error);
  if (state) text += ` (SQLSTATE ${state})`;
  else if (typeof e.code === 'string' && e.code) text += ` (code ${e.code})`;
  return text;
}

/** The summary, then the stack frames: what `last_error` stores (capped at 8000 characters). */
export function errorText(error: unknown): string {
  const summary = errorSummary(error);
  const stack = error instanceof Error ? error.stack ?? '' : '';
  const frames = stack.split('\n').filter((line) => /^\s+at /.test(line)).join('\n');
  return (frames ? `${summary}\n${frames}` : summary).slice(0, 8000);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // A cycle or a BigInt: as Node prints it, which shows both.
    return inspect(value, { depth: 3, breakLength: Infinity });
  }
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE']);

/**
 * What a failure says of the database connection, the one classifier for every caller:
 * - `connection`: the connection failed or ended, or the database could not be reached (SQL state
 *   08 connection, 57P0x shutdown and start-up; a network error code; node-postgres's own words);
 * - `busy`: the server is there but out of resources (SQL state 53, too many connections);
 * - `server`: PostgreSQL reported an error on a live connection (any other SQL state);
 * - `unknown`: no SQL state, and nothing that says the connection failed.
 */
export type ConnectionFailureKind = 'connection' | 'busy' | 'server' | 'unknown';

export function connectionFailureKind(error: unknown): ConnectionFailureKind {
  const e = error as ErrorParts | null;
  const state = sqlState(error);
  if (state) return /^(08|57P0)/.test(state) ? 'connection' : state.startsWith('53') ? 'busy' : 'server';
  const codes = [e?.code, e?.parent?.code, e?.original?.code].filter((code): code is string => typeof code === 'string');
  const unreachable = Boolean(e?.name?.startsWith('SequelizeConnection'))
    || codes.some((code) => CONNECT_CODES.has(code))
    || /Connection terminated|is not queryable|timeout expired|Query read timeout|connect ECONNREFUSED|the database system is (starting up|shutting down)/i.test(`${e?.message ?? ''} ${e?.parent?.message ?? ''}`);
  return unreachable ? 'connection' : 'unknown';
}

/**
 * True for a failure to reach the database (down, restarting, unreachable, too many connections),
 * which is worth trying again; false for one that will not change by waiting (a wrong password, a
 * missing database or table).
 */
export function isUnreachable(error: unknown): boolean {
  const kind = connectionFailureKind(error);
  return kind === 'connection' || kind === 'busy';
}

/**
 * True for an error of a connection that failed or ended, as opposed to one PostgreSQL reported on
 * a live connection: asked after a probe query, where an error without a SQL state can only have
 * come from the connection under it.
 */
export function isConnectionFailure(error: unknown): boolean {
  const kind = connectionFailureKind(error);
  return kind === 'connection' || kind === 'unknown';
}

/**
 * Whether `error` says the database could not be reached or entered: unreachable (isUnreachable),
 * or refused the role (SQL state class 28) or has no such database (3D000). A command that meets
 * it could not check anything (the CLI's exit 2), as opposed to finding something wrong (exit 1).
 */
export function couldNotConnect(error: unknown): boolean {
  const state = sqlState(error);
  return isUnreachable(error) || (state !== undefined && (state.startsWith('28') || state === '3D000'));
}
