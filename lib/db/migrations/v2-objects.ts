import { qualified } from '../sql-text';

/**
 * The names of the library's objects at versions 1 and 2, when they lived in `public`. Frozen: the
 * migrations of those versions (notification-table.ts, inflight.ts) render their SQL from these,
 * which installed databases ran, and version 3 (schema.ts) moves the objects from these names.
 */
export const V2_SCHEMA = 'public';

/** Bare names (in SCHEMA) of everything the library's migrations create; the qualified constants below derive from them. */
export const V2_NAMES = {
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

export const NOTIFICATION_TABLE = qualified(V2_SCHEMA, V2_NAMES.notificationTable);
/** `pgpubsub_context()`: the current notification context as jsonb, `{}` when unset. */
export const CONTEXT_FUNCTION = qualified(V2_SCHEMA, V2_NAMES.contextFunction);
/**
 * `pgpubsub_db_version()`: the newest applied migration's name, or null. Its body is that name as a
 * constant, rewritten by REFRESH_DB_VERSION_FUNCTION whenever SequelizeMeta changes, so a write
 * pays nothing for it.
 */
export const DB_VERSION_FUNCTION = qualified(V2_SCHEMA, V2_NAMES.dbVersionFunction);
export const REFRESH_DB_VERSION_FUNCTION = qualified(V2_SCHEMA, V2_NAMES.refreshDbVersionFunction);
export const REFRESH_DB_VERSION_TRIGGER_FUNCTION = qualified(V2_SCHEMA, V2_NAMES.refreshDbVersionTriggerFunction);
/** `pgpubsub_parse_context(text)`: the context JSON, or `{"invalid_context": …}` when it is not JSON. */
export const PARSE_CONTEXT_FUNCTION = qualified(V2_SCHEMA, V2_NAMES.parseContextFunction);
/**
 * `pgpubsub_claim(channels, context, max_rows)`: locks and returns up to max_rows due notifications
 * in id order, skipping rows other listeners hold. A function so that it can carry its own planner
 * setting (enable_sort off) without a round trip of its own.
 */
export const CLAIM_FUNCTION = qualified(V2_SCHEMA, V2_NAMES.claimFunction);
/** `pgpubsub_wake(channel)`: wakes the channel's listeners when this transaction commits, unless none needs it. */
export const WAKE_FUNCTION = qualified(V2_SCHEMA, V2_NAMES.wakeFunction);
/**
 * `pgpubsub_inflight`: per listener, the ids of the batch it is running, written (committed) before
 * its callbacks run, so that the record outlives a claiming transaction that a dying process takes
 * with it. Keyed by the listener's holder key (see HOLDER_LOCK in inflight.ts).
 */
export const INFLIGHT_TABLE = qualified(V2_SCHEMA, V2_NAMES.inflightTable);
/** The time (epoch ms) the listener draining a channel last said so; producers trust a drain lock only while it is fresh. */
export const DRAIN_BEAT_SEQUENCE = qualified(V2_SCHEMA, V2_NAMES.drainBeatSequence);
/** The table sequelize-cli and Umzug's SequelizeStorage record applied migrations in. */
export const MIGRATION_META_TABLE = qualified(V2_SCHEMA, 'SequelizeMeta');
