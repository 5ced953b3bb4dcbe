import { SetupError } from '../errors';
import { MAX_IDENTIFIER_BYTES, qualified, shortHash } from './sql-text';
import { DB_VERSION_TRIGGER } from './protocol';

/**
 * The library's objects: all in a schema of their own (`pgpubsub` unless the app
 * chooses another with `use(pgpubsub, { schema })`), so that nothing of the library's can be
 * mistaken for the app's (or a managed trigger's) and no role needs rights on the app's schemas for
 * it. Every name is qualified wherever SQL uses it. What a fresh install leaves is lib/db/schema.sql.
 */
export const DEFAULT_SCHEMA = 'pgpubsub';

/**
 * The version of the library's database objects this code installs and runs on. Each library
 * migration records its number in the version table; a listener refuses a database at another version.
 */
export const LIBRARY_VERSION = 4;

/** Bare names (in the library's schema) of everything the library's migrations create. */
const NAMES = {
  notificationTable: 'notification',
  inflightTable: 'inflight',
  inboxTable: 'inbox',
  versionTable: 'version',
  pausedTable: 'paused',
  listenerTable: 'listener',
  drainBeatSequence: 'drain_beat',
  claimFunction: 'claim',
  listenerGoneFunction: 'listener_gone',
  contextFunction: 'context',
  dbVersionFunction: 'db_version',
  refreshDbVersionTriggerFunction: 'db_version_changed',
  parseContextFunction: 'parse_context',
  refreshDbVersionFunction: 'refresh_db_version',
  reportFunction: 'report',
  advanceDeletedFunction: 'advance_deleted',
  advanceReleasedFunction: 'advance_released',
  settleHeadsFunction: 'settle_heads',
  wakeFunction: 'wake',
  sendFunction: 'send',
} as const;

/** The library's tables (bare names in its schema, sorted). */
export const LIBRARY_TABLES: readonly string[] = [NAMES.inboxTable, NAMES.inflightTable, NAMES.listenerTable, NAMES.notificationTable, NAMES.pausedTable, NAMES.versionTable];
/** The library's functions (bare names in its schema, sorted). */
export const LIBRARY_FUNCTIONS: readonly string[] = [
  NAMES.advanceDeletedFunction,
  NAMES.advanceReleasedFunction,
  NAMES.claimFunction,
  NAMES.contextFunction,
  NAMES.dbVersionFunction,
  NAMES.refreshDbVersionTriggerFunction,
  NAMES.listenerGoneFunction,
  NAMES.parseContextFunction,
  NAMES.refreshDbVersionFunction,
  NAMES.reportFunction,
  NAMES.sendFunction,
  NAMES.settleHeadsFunction,
  NAMES.wakeFunction,
];

/** The library's objects in one schema, each name qualified and quoted for SQL text. */
export interface LibraryObjects {
  /** The schema's bare name. */
  readonly schema: string;
  readonly notificationTable: string;
  /**
   * `inflight`: per listener, the ids of the batch it is running, written (committed) before its
   * callbacks run, so that the record outlives a claiming transaction that a dying process takes
   * with it. Keyed by the listener's holder key (see HOLDER_LOCK in inflight.ts).
   */
  readonly inflightTable: string;
  /** `version`: one row per library migration applied (number, name, time). */
  readonly versionTable: string;
  /** `inbox`: the messages a listener fed from NATS JetStream ran (or failed for good), by message id. */
  readonly inboxTable: string;
  /** `paused`: the channels no listener claims until they are resumed. */
  readonly pausedTable: string;
  /** `listener`: what each live listener connection reports of itself (host, pid, channels). */
  readonly listenerTable: string;
  /** `report(host, pid, started_at, channels)`: writes the caller's own row of `listener`. */
  readonly reportFunction: string;
  /** The trigger functions that move an ordered key on when a statement deletes its rows, or releases them. */
  readonly advanceDeletedFunction: string;
  readonly advanceReleasedFunction: string;
  /** `settle_heads(channels)`: marks ordered rows that wait behind an earlier one, in a transaction of its own. */
  readonly settleHeadsFunction: string;
  /** The time (epoch ms) the listener draining a channel last said so; producers trust a drain lock only while it is fresh. */
  readonly drainBeatSequence: string;
  /**
   * `claim(channels, context, max_rows, claimer, timeout_ms)`: locks and returns up to max_rows due
   * notifications in id order, skipping rows other listeners hold, and flags those a dead listener held.
   */
  readonly claimFunction: string;
  /** `listener_gone(holder, backend_pid, backend_role, backend_start)`: whether the listener that wrote an in-flight marker is gone. */
  readonly listenerGoneFunction: string;
  /** `context()`: the current notification context as jsonb, `{}` when unset. */
  readonly contextFunction: string;
  /**
   * `db_version()`: the newest applied migration's name, or null. Its body is that name as a
   * constant, rewritten by refresh_db_version() whenever the migration storage table changes, so a
   * write pays nothing for it.
   */
  readonly dbVersionFunction: string;
  /** `refresh_db_version(storage regclass)`: rewrites db_version() from the migration storage table. */
  readonly refreshDbVersionFunction: string;
  /** The trigger function on the migration storage table that calls refresh_db_version(). */
  readonly refreshDbVersionTriggerFunction: string;
  /** `parse_context(text)`: the context JSON, or `{"invalid_context": …}` when it is not JSON. */
  readonly parseContextFunction: string;
  /** `wake(channel)`: wakes the channel's listeners when this transaction commits, unless none needs it. */
  readonly wakeFunction: string;
  /**
   * `send(channel, payload, durable)`: what notify() runs, as the library's owner: stores a durable
   * custom notification (and wakes), or broadcasts one. The one function an app's role is granted.
   */
  readonly sendFunction: string;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_$]*$/;

/**
 * Checks a schema name for the library: a plain lower-case identifier (so that it reads the same
 * quoted or not, in SQL and in psql), at most 63 bytes, not `public` (which PostgreSQL 14 and
 * earlier let every role write) and not a system schema.
 */
export function checkSchemaName(schema: unknown, where: string): string {
  const problem = typeof schema !== 'string' ? `must be a string, got ${JSON.stringify(schema)}`
    : !SCHEMA_NAME.test(schema) ? `'${schema}' is not a plain lower-case identifier (letters a-z, digits, _ and $, not starting with a digit)`
      : Buffer.byteLength(schema) > MAX_IDENTIFIER_BYTES ? `'${schema}' is longer than ${MAX_IDENTIFIER_BYTES} bytes`
        : schema === 'public' || schema === 'information_schema' || schema.startsWith('pg_')
          ? `'${schema}' is taken: the library needs a schema of its own, not public or a system schema` : null;
  if (problem) {
    throw new SetupError('PGPUBSUB_SCHEMA', `${where}: the library's schema ${problem}. Leave it out for the default '${DEFAULT_SCHEMA}', or name a schema such as 'app_pubsub'`);
  }
  return schema as string;
}

const cache = new Map<string, LibraryObjects>();

/** The library's objects in `schema` (default `pgpubsub`). */
export function libraryObjects(schema: string = DEFAULT_SCHEMA): LibraryObjects {
  let found = cache.get(schema);
  if (!found) {
    const name = (bare: string) => qualified(schema, bare);
    found = Object.freeze({
      schema,
      notificationTable: name(NAMES.notificationTable),
      inflightTable: name(NAMES.inflightTable),
      versionTable: name(NAMES.versionTable),
      inboxTable: name(NAMES.inboxTable),
      pausedTable: name(NAMES.pausedTable),
      listenerTable: name(NAMES.listenerTable),
      reportFunction: name(NAMES.reportFunction),
      advanceDeletedFunction: name(NAMES.advanceDeletedFunction),
      advanceReleasedFunction: name(NAMES.advanceReleasedFunction),
      settleHeadsFunction: name(NAMES.settleHeadsFunction),
      drainBeatSequence: name(NAMES.drainBeatSequence),
      claimFunction: name(NAMES.claimFunction),
      listenerGoneFunction: name(NAMES.listenerGoneFunction),
      contextFunction: name(NAMES.contextFunction),
      dbVersionFunction: name(NAMES.dbVersionFunction),
      refreshDbVersionFunction: name(NAMES.refreshDbVersionFunction),
      refreshDbVersionTriggerFunction: name(NAMES.refreshDbVersionTriggerFunction),
      parseContextFunction: name(NAMES.parseContextFunction),
      wakeFunction: name(NAMES.wakeFunction),
      sendFunction: name(NAMES.sendFunction),
    });
    cache.set(schema, found);
  }
  return found;
}

/** The library's trigger on the migration storage table that keeps db_version() current. */
export { DB_VERSION_TRIGGER };
/**
 * The library's trigger on the migration storage table of a schema's library. Named apart for a
 * schema other than the default, so that two libraries' triggers never replace each other.
 */
export function dbVersionTrigger(schema: string): string {
  return schema === DEFAULT_SCHEMA ? DB_VERSION_TRIGGER : `${DB_VERSION_TRIGGER}_${shortHash(schema, 8)}`;
}

/**
 * The role that owns the managed trigger functions (NOLOGIN, no right but writing notifications),
 * so that whatever a trigger runs (a cast from a column's type, a function a condition calls) runs
 * with no more than that: `pgpubsub_trigger_owner` for the default schema, else one per schema.
 */
export function triggerOwnerRole(schema: string): string {
  return schema === DEFAULT_SCHEMA ? 'pgpubsub_trigger_owner' : `pgpubsub_trigger_owner_${shortHash(schema, 8)}`;
}

/** Where sequelize-cli and Umzug's SequelizeStorage record applied migrations unless told otherwise. */
export const DEFAULT_MIGRATION_STORAGE = { tableName: 'SequelizeMeta', schema: 'public' } as const;
/** What every library function runs with: built-ins from pg_catalog, nothing from a schema another role can write. */
export const PINNED_SEARCH_PATH = 'SET search_path = pg_catalog, pg_temp';
