import { qualified } from './sql-text';

/**
 * Names of the objects the library's migrations create. They live in `public`,
 * qualified everywhere, so triggers work whatever the writer's search_path.
 */
export const SCHEMA = 'public';
export const NOTIFICATION_TABLE = qualified(SCHEMA, 'pgpubsub_notification');
/** `pgpubsub_context()`: the current notification context as jsonb, `{}` when unset. */
export const CONTEXT_FUNCTION = qualified(SCHEMA, 'pgpubsub_context');
/**
 * `pgpubsub_db_version()`: the newest applied migration's name, or null. Its body is that name as a
 * constant, rewritten by REFRESH_DB_VERSION_FUNCTION whenever SequelizeMeta changes, so a write
 * pays nothing for it.
 */
export const DB_VERSION_FUNCTION = qualified(SCHEMA, 'pgpubsub_db_version');
export const REFRESH_DB_VERSION_FUNCTION = qualified(SCHEMA, 'pgpubsub_refresh_db_version');
export const REFRESH_DB_VERSION_TRIGGER_FUNCTION = qualified(SCHEMA, 'pgpubsub_db_version_changed');
/** `pgpubsub_parse_context(text)`: the context JSON, or `{"invalid_context": …}` when it is not JSON. */
export const PARSE_CONTEXT_FUNCTION = qualified(SCHEMA, 'pgpubsub_parse_context');
/**
 * `pgpubsub_claim(channels, context, max_rows)`: locks and returns up to max_rows due notifications
 * in id order, skipping rows other listeners hold. A function so that it can carry its own planner
 * setting (enable_sort off) without a round trip of its own.
 */
export const CLAIM_FUNCTION = qualified(SCHEMA, 'pgpubsub_claim');
/** `pgpubsub_wake(channel)`: wakes the channel's listeners when this transaction commits, unless none needs it. */
export const WAKE_FUNCTION = qualified(SCHEMA, 'pgpubsub_wake');
/**
 * Advisory lock namespaces (the first key of the two-key form; the second is `hashtext(channel)`)
 * through which producers and listeners agree on wake-ups without a table (see the migration):
 * - LISTENING: every live listener holds it shared on its LISTEN connection;
 * - DRAINING: the listener draining a channel's backlog holds it exclusively (its "drain lease");
 * - SKIPPED: a producer that skipped its NOTIFY holds it shared until it commits.
 * Session locks vanish with their connection, so a listener that dies gives up both of its locks.
 */
export const WAKE_LOCKS = { listening: 1885826930, draining: 1885826931, skipped: 1885826932 } as const;
/**
 * `pgpubsub_inflight`: per listener, the ids of the batch it is running, written (committed) before
 * its callbacks run, so that the record outlives a claiming transaction that a dying process takes
 * with it. Keyed by the listener's holder key, an advisory lock in HOLDER_LOCK held on its LISTEN
 * connection for as long as it lives: a marker whose lock is free belongs to a dead listener.
 */
export const INFLIGHT_TABLE = qualified(SCHEMA, 'pgpubsub_inflight');
export const HOLDER_LOCK = 1885826933;
/** The time (epoch ms) the listener draining a channel last said so; producers trust a drain lock only while it is fresh. */
export const DRAIN_BEAT_SEQUENCE = qualified(SCHEMA, 'pgpubsub_drain_beat');
/** The setting (GUC) that holds the notification context as JSON text. */
export const CONTEXT_SETTING = 'pgpubsub.notification_context';
/** The table sequelize-cli and Umzug's SequelizeStorage record applied migrations in. */
export const MIGRATION_META_TABLE = qualified(SCHEMA, 'SequelizeMeta');
/** Name prefix of the Umzug trigger step; not a schema version, so db_version skips it. */
export const TRIGGER_STEP_PREFIX = 'pgpubsub-triggers-';
