import { qualified } from './sql-text';

/**
 * Names of the objects the library's migrations create. They live in `public`,
 * qualified everywhere, so triggers work whatever the writer's search_path.
 */
export const SCHEMA = 'public';
export const NOTIFICATION_TABLE = qualified(SCHEMA, 'pgpubsub_notification');
/** `pgpubsub_context()`: the current notification context as jsonb, `{}` when unset. */
export const CONTEXT_FUNCTION = qualified(SCHEMA, 'pgpubsub_context');
/** `pgpubsub_db_version()`: the newest applied migration's name, or null. */
export const DB_VERSION_FUNCTION = qualified(SCHEMA, 'pgpubsub_db_version');
/** `pgpubsub_parse_context(text)`: the context JSON, or `{"invalid_context": …}` when it is not JSON. */
export const PARSE_CONTEXT_FUNCTION = qualified(SCHEMA, 'pgpubsub_parse_context');
/** `pgpubsub_wake(channel)`: asks for a wake-up of the channel's listeners when this transaction commits. */
export const WAKE_FUNCTION = qualified(SCHEMA, 'pgpubsub_wake');
export const WAKE_AT_COMMIT_FUNCTION = qualified(SCHEMA, 'pgpubsub_wake_at_commit');
/** Wake-ups requested by open transactions, one row per (transaction, channel); emptied at commit. */
export const WAKE_REQUEST_TABLE = qualified(SCHEMA, 'pgpubsub_wake_request');
/** Leases of listeners busy draining: while one is held for a channel, producers skip its NOTIFY. */
export const DRAIN_LEASE_TABLE = qualified(SCHEMA, 'pgpubsub_drain_lease');
/** The setting (GUC) that holds the notification context as JSON text. */
export const CONTEXT_SETTING = 'pgpubsub.notification_context';
/** The table sequelize-cli and Umzug's SequelizeStorage record applied migrations in. */
export const MIGRATION_META_TABLE = qualified(SCHEMA, 'SequelizeMeta');
/** Name prefix of the Umzug trigger step; not a schema version, so db_version skips it. */
export const TRIGGER_STEP_PREFIX = 'pgpubsub-triggers-';
