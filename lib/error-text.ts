/**
 * Error text for logs and `last_error`. Sequelize wraps driver errors and gives the wrapper a stack
 * whose first line has no message, so the text is built from the parts: `name: message`, the
 * driver's own message and SQL state when they add something, then the stack frames.
 */

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
    return String(value);
  }
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE']);

/**
 * True for a failure to reach the database (down, restarting, unreachable), which is worth trying
 * again; false for one that will not change by waiting (a wrong password, a missing database or table).
 */
export function isUnreachable(error: unknown): boolean {
  const e = error as ErrorParts | null;
  const state = sqlState(error);
  // 08: connection, 57P0x: shutdown and start-up, 53: out of resources (too many connections).
  if (state) return /^(08|57P0|53)/.test(state);
  const codes = [e?.code, e?.parent?.code, e?.original?.code].filter((code): code is string => typeof code === 'string');
  return Boolean(e?.name?.startsWith('SequelizeConnection'))
    || codes.some((code) => CONNECT_CODES.has(code))
    || /Connection terminated|is not queryable|timeout expired|Query read timeout|connect ECONNREFUSED|the database system is (starting up|shutting down)/i.test(`${e?.message ?? ''} ${e?.parent?.message ?? ''}`);
}
