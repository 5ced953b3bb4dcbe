import { unknownKeyProblems } from '../channels/channel';
import type { NotificationContext } from '../channels/context';
import { ListenOptionsError } from '../errors';
import type { ListenConnectionConfig, ListenOptions } from './types';

/** The application_name of a listener's LISTEN connection (pg_stat_activity shows it). */
export const LISTENER_APPLICATION_NAME = 'pgpubsub-listener';

/**
 * listen()'s options: their defaults (which the CLI's --help shows too) and their validation, in
 * one place. Every problem is reported at once, as channel definitions' are.
 */
export const LISTEN_DEFAULTS = {
  batchSize: 100,
  /** Claim transactions at once per listener (see docs/callbacks-and-listeners.md, "Concurrency", for why 1). */
  concurrency: 1,
  callbackConcurrency: 1,
  /** A callback's time limit, for channels that set none. */
  timeoutMs: 60_000,
  recover: true,
  savepoints: 'on-failure',
  heartbeatMs: 60_000,
  reconnect: { minDelayMs: 100, maxDelayMs: 10_000 },
  /** How long something may hold back the cleanup of the notification table before the listener warns. */
  cleanupWarnAfterMs: 300_000,
} as const;

/** listen()'s options as the listener runs with them: defaults applied, checked. */
export interface ResolvedListenOptions {
  batchSize: number;
  concurrency: number;
  callbackConcurrency: number;
  timeoutMs: number;
  recover: boolean;
  savepoints: 'on-failure' | 'always';
  heartbeatMs: number;
  contextFilter?: NotificationContext;
  listenConnection?: string | ListenConnectionConfig;
  minDelayMs: number;
  maxDelayMs: number;
  failedRetentionMs?: number;
  cleanupWarnAfterMs: number | false;
}

const KNOWN: ReadonlyArray<keyof ListenOptions> = [
  'channels', 'batchSize', 'concurrency', 'callbackConcurrency', 'recover', 'contextFilter', 'heartbeatMs', 'savepoints', 'timeoutMs',
  'reconnect', 'listenConnection', 'logger', 'beforeRunningAlone', 'failedRetentionMs',
  'cleanupWarnAfterMs',
];

const positiveInteger = (value: unknown, name: string, unit = ''): string[] => (Number.isInteger(value) && (value as number) >= 1
  ? [] : [`${name} must be a positive integer${unit}, got ${JSON.stringify(value)}`]);

/**
 * Applies the defaults and checks every option; throws one ListenOptionsError listing every
 * problem. `poolMax`: the Sequelize pool's size, which `concurrency` needs room in.
 */
export function resolveListenOptions(options: ListenOptions, poolMax: number): ResolvedListenOptions {
  const problems = unknownKeyProblems(options, KNOWN, 'listen');
  const batchSize = options.batchSize ?? LISTEN_DEFAULTS.batchSize;
  const concurrency = options.concurrency ?? LISTEN_DEFAULTS.concurrency;
  const callbackConcurrency = options.callbackConcurrency ?? LISTEN_DEFAULTS.callbackConcurrency;
  const timeoutMs = options.timeoutMs ?? LISTEN_DEFAULTS.timeoutMs;
  const heartbeatMs = options.heartbeatMs ?? LISTEN_DEFAULTS.heartbeatMs;
  const savepoints = options.savepoints ?? LISTEN_DEFAULTS.savepoints;
  const recover = options.recover ?? LISTEN_DEFAULTS.recover;
  problems.push(
    ...positiveInteger(batchSize, 'batchSize'),
    ...positiveInteger(concurrency, 'concurrency'),
    ...positiveInteger(callbackConcurrency, 'callbackConcurrency'),
    ...positiveInteger(timeoutMs, 'timeoutMs', ' (milliseconds)'),
    ...positiveInteger(heartbeatMs, 'heartbeatMs', ' (milliseconds)'),
    ...contextFilterProblems(options.contextFilter),
    ...(options.failedRetentionMs === undefined ? [] : positiveInteger(options.failedRetentionMs, 'failedRetentionMs', ' (milliseconds)')),
    ...(options.cleanupWarnAfterMs === undefined || options.cleanupWarnAfterMs === false ? []
      : positiveInteger(options.cleanupWarnAfterMs, 'cleanupWarnAfterMs', ' (milliseconds) or false')),
  );
  if (typeof recover !== 'boolean') problems.push(`recover must be true or false, got ${JSON.stringify(options.recover)}`);
  if (savepoints !== 'on-failure' && savepoints !== 'always') {
    problems.push(`savepoints must be 'on-failure' or 'always', got ${JSON.stringify(options.savepoints)}`);
  }
  if ((callbackConcurrency as number) > 1 && savepoints === 'always') {
    problems.push("callbackConcurrency runs a batch's callbacks at once only without savepoints, and savepoints: 'always' runs them one at a time. Use one or the other");
  }
  if (Number.isInteger(concurrency) && poolMax < concurrency + 1) {
    problems.push(`concurrency ${concurrency} needs a Sequelize pool of at least ${concurrency + 1} connections (one per claim transaction, and one for the listener's other queries), `
      + `but this one's pool.max is ${poolMax}. Set pool: { max: ${concurrency + 1} } or more in the Sequelize options, or lower concurrency`);
  }
  const minDelayMs = options.reconnect?.minDelayMs ?? LISTEN_DEFAULTS.reconnect.minDelayMs;
  const maxDelayMs = options.reconnect?.maxDelayMs ?? Math.max(LISTEN_DEFAULTS.reconnect.maxDelayMs, minDelayMs);
  if (!(minDelayMs >= 0 && maxDelayMs >= minDelayMs)) {
    problems.push(`reconnect needs 0 <= minDelayMs <= maxDelayMs, got ${JSON.stringify(options.reconnect)}`);
  }
  const own = options.listenConnection;
  if (own !== undefined && typeof own !== 'string' && (typeof own !== 'object' || own === null || Array.isArray(own))) {
    problems.push(`listenConnection must be a connection URL or node-postgres client settings, got ${JSON.stringify(own)}`);
  }
  if (problems.length > 0) {
    const message = problems.length === 1 ? `listen: ${problems[0].replace(/^listen: /, '')}`
      : `listen: ${problems.length} invalid options:\n  - ${problems.map((p) => p.replace(/^listen: /, '')).join('\n  - ')}`;
    throw new ListenOptionsError('PGPUBSUB_LISTEN_OPTIONS', message, { problems });
  }
  return {
    batchSize, concurrency, callbackConcurrency, timeoutMs, recover, savepoints, heartbeatMs,
    contextFilter: options.contextFilter, listenConnection: own, minDelayMs, maxDelayMs, failedRetentionMs: options.failedRetentionMs,
    cleanupWarnAfterMs: options.cleanupWarnAfterMs ?? LISTEN_DEFAULTS.cleanupWarnAfterMs,
  };
}

/** Context filter values must be plain JSON: they are matched with jsonb containment. */
function contextFilterProblems(filter: unknown): string[] {
  if (filter === undefined) return [];
  if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) return ['contextFilter must be an object like { tenant: 7 }'];
  const problems: string[] = [];
  const check = (value: unknown, at: string) => {
    if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) problems.push(`contextFilter.${at} is ${value}, which JSON cannot hold`);
      return;
    }
    if (Array.isArray(value)) { value.forEach((item, i) => check(item, `${at}[${i}]`)); return; }
    if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      for (const [key, item] of Object.entries(value)) check(item, `${at}.${key}`);
      return;
    }
    problems.push(`contextFilter.${at} is ${typeof value === 'object' ? (value as object).constructor?.name ?? 'an object' : typeof value}; only JSON values (strings, numbers, booleans, null, arrays, plain objects) can be matched`);
  };
  for (const [key, value] of Object.entries(filter)) check(value, key);
  return problems;
}
