import { qualified } from './sql-text';

/**
 * Names of the objects the library's migrations create. They live in `public`,
 * qualified everywhere, so triggers work whatever the writer's search_path.
 */
const SCHEMA = 'public';

/** Bare names (in SCHEMA) of everything the library's migrations create; the qualified constants below derive from them. */
const NAMES = {
  notificationTable: 'pgpubsub_notification',
  inflightTable: 'pgpubsub_inflight',
  drainBeatSequence: 'pgpubsub_drain_beat',
  claimFunction: 'pgpubsub_claim',
  contextFunction: 'pgpubsub_context',
  dbVersionFunction: 'pgpubsub_db_version',
  refreshDbVersionTriggerFunction: 'pgpubsub_db_version_changed',
  parseContextFunction: 'pgpubsub_parse_context',
  refreshDbVersionFunction: 'pgpubsub_refresh_db_version',
  wakeFunction: 'pgpubsub_wake',
} as const;

/** The library's tables (bare names, sorted). */
export const LIBRARY_TABLES: readonly string[] = [NAMES.inflightTable, NAMES.notificationTable];
/**
 * The library's functions (bare names, sorted). `pgpubsub_db_version` is also the name of its
 * trigger on SequelizeMeta, the one trigger of the library's own that is not a managed channel trigger.
 */
export const LIBRARY_FUNCTIONS: readonly string[] = [
  NAMES.claimFunction,
  NAMES.contextFunction,
  NAMES.dbVersionFunction,
  NAMES.refreshDbVersionTriggerFunction,
  NAMES.parseContextFunction,
  NAMES.refreshDbVersionFunction,
  NAMES.wakeFunction,
];

export const NOTIFICATION_TABLE = qualified(SCHEMA, NAMES.notificationTable);
/** `pgpubsub_context()`: the current notification context as jsonb, `{}` when unset. */
export const CONTEXT_FUNCTION = qualified(SCHEMA, NAMES.contextFunction);
/**
 * `pgpubsub_db_version()`: the newest applied migration's name, or null. Its body is that name as a
 * constant, rewritten by REFRESH_DB_VERSION_FUNCTION whenever SequelizeMeta changes, so a write
 * pays nothing for it.
 */
export const DB_VERSION_FUNCTION = qualified(SCHEMA, NAMES.dbVersionFunction);
export const REFRESH_DB_VERSION_FUNCTION = qualified(SCHEMA, NAMES.refreshDbVersionFunction);
export const REFRESH_DB_VERSION_TRIGGER_FUNCTION = qualified(SCHEMA, NAMES.refreshDbVersionTriggerFunction);
/** `pgpubsub_parse_context(text)`: the context JSON, or `{"invalid_context": …}` when it is not JSON. */
export const PARSE_CONTEXT_FUNCTION = qualified(SCHEMA, NAMES.parseContextFunction);
/**
 * `pgpubsub_claim(channels, context, max_rows)`: locks and returns up to max_rows due notifications
 * in id order, skipping rows other listeners hold. A function so that it can carry its own planner
 * setting (enable_sort off) without a round trip of its own.
 */
export const CLAIM_FUNCTION = qualified(SCHEMA, NAMES.claimFunction);
/** `pgpubsub_wake(channel)`: wakes the channel's listeners when this transaction commits, unless none needs it. */
export const WAKE_FUNCTION = qualified(SCHEMA, NAMES.wakeFunction);
/**
 * `pgpubsub_inflight`: per listener, the ids of the batch it is running, written (committed) before
 * its callbacks run, so that the record outlives a claiming transaction that a dying process takes
 * with it. Keyed by the listener's holder key (see HOLDER_LOCK in inflight.ts).
 */
export const INFLIGHT_TABLE = qualified(SCHEMA, NAMES.inflightTable);
/** The time (epoch ms) the listener draining a channel last said so; producers trust a drain lock only while it is fresh. */
export const DRAIN_BEAT_SEQUENCE = qualified(SCHEMA, NAMES.drainBeatSequence);
/** The table sequelize-cli and Umzug's SequelizeStorage record applied migrations in. */
export const MIGRATION_META_TABLE = qualified(SCHEMA, 'SequelizeMeta');
