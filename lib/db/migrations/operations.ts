import { qualified, quoteLiteral } from '../sql-text';
import { type MigrationTarget, libraryStep } from './runner';

/**
 * Version 4: what operators need (`pgpubsub channels pause|resume`, `pgpubsub failed`).
 *
 * - `paused`: a channel listed here is claimed by no listener until it is resumed; its
 *   notifications stay stored. The state lives in the database, so it survives restarts and holds
 *   for every listener. Readable by any role with USAGE on the library's schema (the listeners),
 *   so an upgrade needs no new grant; only the owner (or a role granted it) pauses and resumes.
 * - An index on the failed notifications by failure time, so that listing them, and purging the
 *   old ones in bounded batches, reads only them, never the pending backlog.
 */
export const OPERATIONS_NAME = '00000000000004-pgpubsub-operations.js';

function operationsSql({ objects }: MigrationTarget) {
  const up = [
    `CREATE TABLE ${objects.pausedTable} (
  channel text PRIMARY KEY,
  paused_at timestamptz NOT NULL DEFAULT pg_catalog.now()
)`,
    `COMMENT ON TABLE ${objects.pausedTable} IS 'sequelize-pgpubsub: channels no listener claims until resumed'`,
    `GRANT SELECT ON ${objects.pausedTable} TO PUBLIC`,
    `CREATE INDEX notification_failed_at ON ${objects.notificationTable} (failed_at) WHERE failed_at IS NOT NULL`,
    `INSERT INTO ${objects.versionTable} (version, name) VALUES (4, ${quoteLiteral(OPERATIONS_NAME)})`,
  ];
  const down = [
    `DELETE FROM ${objects.versionTable} WHERE version = 4`,
    `DROP INDEX ${qualified(objects.schema, 'notification_failed_at')}`,
    `DROP TABLE ${objects.pausedTable}`,
  ];
  return { up, down };
}

export const operations = libraryStep(4, OPERATIONS_NAME, operationsSql);
export const { name, up, down, withOptions } = operations;
