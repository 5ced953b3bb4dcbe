import { inflight } from './inflight';
import { notificationTable } from './notification-table';
import { schemaMigration } from './schema';
import type { LibraryMigration } from './runner';

/**
 * The library's own schema migrations, in order, for a programmatic Umzug v3 instance.
 * Their names match the sequelize-cli stub files, so both runners record the same rows in SequelizeMeta.
 */
export const migrations: readonly LibraryMigration[] = [notificationTable, inflight, schemaMigration];

/** Each library migration: the version it brings the database to, and the module a sequelize-cli stub requires. */
export const LIBRARY_STEPS: ReadonlyArray<{ version: number; name: string; module: string }> = [
  { version: 1, name: notificationTable.name, module: 'sequelize-pgpubsub/migrations/notification-table' },
  { version: 2, name: inflight.name, module: 'sequelize-pgpubsub/migrations/inflight' },
  { version: 3, name: schemaMigration.name, module: 'sequelize-pgpubsub/migrations/schema' },
];

export type { LibraryMigration } from './runner';
