import { inflight } from './inflight';
import { notificationTable } from './notification-table';
import type { LibraryMigration } from './runner';

/**
 * The library's own schema migrations, in order, for a programmatic Umzug v3 instance.
 * Their names match the sequelize-cli stub files, so both runners record the same rows in SequelizeMeta.
 */
export const migrations: readonly LibraryMigration[] = [notificationTable, inflight];

export type { LibraryMigration } from './runner';
