/** The logger the listener writes to: any object with these four methods (console, pino, winston…). */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

/** A console logger writing `level` and above to stderr; PGPUBSUB_LOG_LEVEL sets the default (warn). */
export function consoleLogger(level: LogLevel = (process.env.PGPUBSUB_LOG_LEVEL as LogLevel) || 'warn'): Logger {
  const threshold = Math.max(0, LEVELS.indexOf(level));
  const write = (at: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (LEVELS.indexOf(at) < threshold) return;
    const extra = fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
    process.stderr.write(`[pgpubsub pid=${process.pid}] ${at}: ${message}${extra}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}
