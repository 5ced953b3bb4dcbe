import { qualified } from './sql-text';

/**
 * The library's objects: since version 3 all in a schema of their own, so that nothing of the
 * library's can be mistaken for the app's (or a managed trigger's) and no role needs rights on the
 * app's schemas for it. Every name is qualified wherever SQL uses it. (Versions 1 and 2 kept them in
 * `public` under a `pgpubsub_` prefix: see migrations/v2-objects.ts.)
 */
export const LIBRARY_SCHEMA = 'pgpubsub';

/**
 * The version of the library's database objects this code installs and runs on. Each library
 * migration records its number in VERSION_TABLE; a listener refuses a database at another version.
 */
export const LIBRARY_VERSION = 3;

/** Bare names (in LIBRARY_SCHEMA) of everything the library's migrations create. */
const NAMES = {
  notificationTable: 'notification',
  inflightTable: 'inflight',
  versionTable: 'version',
  drainBeatSequence: 'drain_beat',
  claimFunction: 'claim',
  contextFunction: 'context',
  dbVersionFunction: 'db_version',
  refreshDbVersionTriggerFunction: 'db_version_changed',
  parseContextFunction: 'parse_context',
  refreshDbVersionFunction: 'refresh_db_version',
  wakeFunction: 'wake',
  sendFunction: 'send',
} as const;

/** The library's tables (bare names in LIBRARY_SCHEMA, sorted). */
export const LIBRARY_TABLES: readonly string[] = [NAMES.inflightTable, NAMES.notificationTable, NAMES.versionTable];
/** The library's functions (bare names in LIBRARY_SCHEMA, sorted). */
export const LIBRARY_FUNCTIONS: readonly string[] = [
  NAMES.claimFunction,
  NAMES.contextFunction,
  NAMES.dbVersionFunction,
  NAMES.refreshDbVersionTriggerFunction,
  NAMES.parseContextFunction,
  NAMES.refreshDbVersionFunction,
  NAMES.sendFunction,
  NAMES.wakeFunction,
];

export const NOTIFICATION_TABLE = qualified(LIBRARY_SCHEMA, NAMES.notificationTable);
/** `context()`: the current notification context as jsonb, `{}` when unset. */
export const CONTEXT_FUNCTION = qualified(LIBRARY_SCHEMA, NAMES.contextFunction);
/**
 * `db_version()`: the newest applied migration's name, or null. Its body is that name as a
 * constant, rewritten by REFRESH_DB_VERSION_FUNCTION whenever SequelizeMeta changes, so a write
 * pays nothing for it.
 */
export const DB_VERSION_FUNCTION = qualified(LIBRARY_SCHEMA, NAMES.dbVersionFunction);
export const REFRESH_DB_VERSION_FUNCTION = qualified(LIBRARY_SCHEMA, NAMES.refreshDbVersionFunction);
export const REFRESH_DB_VERSION_TRIGGER_FUNCTION = qualified(LIBRARY_SCHEMA, NAMES.refreshDbVersionTriggerFunction);
/** The library's trigger on SequelizeMeta that keeps db_version() current. */
export const DB_VERSION_TRIGGER = 'sequelize_pgpubsub_db_version';
/** `parse_context(text)`: the context JSON, or `{"invalid_context": …}` when it is not JSON. */
export const PARSE_CONTEXT_FUNCTION = qualified(LIBRARY_SCHEMA, NAMES.parseContextFunction);
/**
 * `claim(channels, context, max_rows, claimer, timeout_ms)`: locks and returns up to max_rows due
 * notifications in id order, skipping rows other listeners hold, and flags those a dead listener held.
 */
export const CLAIM_FUNCTION = qualified(LIBRARY_SCHEMA, NAMES.claimFunction);
/** `wake(channel)`: wakes the channel's listeners when this transaction commits, unless none needs it. */
export const WAKE_FUNCTION = qualified(LIBRARY_SCHEMA, NAMES.wakeFunction);
/**
 * `send(channel, payload, durable)`: what notify() runs, as the library's owner: stores a durable
 * custom notification (and wakes), or broadcasts one. The one function an app's role is granted.
 */
export const SEND_FUNCTION = qualified(LIBRARY_SCHEMA, NAMES.sendFunction);
/**
 * `inflight`: per listener, the ids of the batch it is running, written (committed) before its
 * callbacks run, so that the record outlives a claiming transaction that a dying process takes
 * with it. Keyed by the listener's holder key (see HOLDER_LOCK in inflight.ts).
 */
export const INFLIGHT_TABLE = qualified(LIBRARY_SCHEMA, NAMES.inflightTable);
/** `version`: one row per library migration applied (number, name, time). */
export const VERSION_TABLE = qualified(LIBRARY_SCHEMA, NAMES.versionTable);
/** The time (epoch ms) the listener draining a channel last said so; producers trust a drain lock only while it is fresh. */
export const DRAIN_BEAT_SEQUENCE = qualified(LIBRARY_SCHEMA, NAMES.drainBeatSequence);
/** The table sequelize-cli and Umzug's SequelizeStorage record applied migrations in. */
export const MIGRATION_META_TABLE = qualified('public', 'SequelizeMeta');
/** What every library function runs with: built-ins from pg_catalog, nothing from a schema another role can write. */
export const PINNED_SEARCH_PATH = 'SET search_path = pg_catalog, pg_temp';
