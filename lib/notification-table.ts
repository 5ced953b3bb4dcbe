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
/** The setting (GUC) that holds the notification context as JSON text. */
export const CONTEXT_SETTING = 'pgpubsub.notification_context';
/** The table sequelize-cli and Umzug's SequelizeStorage record applied migrations in. */
export const MIGRATION_META_TABLE = qualified(SCHEMA, 'SequelizeMeta');
/** Name prefix of the Umzug trigger step; not a schema version, so db_version skips it. */
export const TRIGGER_STEP_PREFIX = 'pgpubsub-triggers-';
