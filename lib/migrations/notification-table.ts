import {
  CONTEXT_FUNCTION,
  CONTEXT_SETTING,
  DB_VERSION_FUNCTION,
  MIGRATION_META_TABLE,
  NOTIFICATION_TABLE,
  TRIGGER_STEP_PREFIX,
} from '../notification-table';
import { quoteLiteral } from '../sql-text';
import { type LibraryMigration, runInTransaction } from './runner';

/**
 * The notification table and the two helper functions every trigger calls.
 *
 * Rows are claimed `WHERE failed_at IS NULL AND available_at <= now() ORDER BY id
 * FOR UPDATE SKIP LOCKED`; the partial index on id serves that claim without
 * scanning failed rows. Autovacuum runs early because the table is a hot queue:
 * every row is inserted once and deleted once.
 */
const upSql = [
  `CREATE FUNCTION ${CONTEXT_FUNCTION}() RETURNS jsonb LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  raw text := current_setting(${quoteLiteral(CONTEXT_SETTING)}, true);
BEGIN
  IF raw IS NULL OR raw = '' THEN
    RETURN '{}'::jsonb;
  END IF;
  RETURN raw::jsonb;
EXCEPTION WHEN others THEN
  -- A hand-set, malformed context must never cancel the user's write.
  RETURN jsonb_build_object('invalid_context', raw);
END
$fn$`,
  `CREATE FUNCTION ${DB_VERSION_FUNCTION}() RETURNS text LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN (SELECT name FROM ${MIGRATION_META_TABLE}
           WHERE name NOT LIKE ${quoteLiteral(`${TRIGGER_STEP_PREFIX}%`)}
           ORDER BY name DESC LIMIT 1);
EXCEPTION WHEN undefined_table THEN
  RETURN NULL;
END
$fn$`,
  `CREATE TABLE ${NOTIFICATION_TABLE} (
  id bigserial PRIMARY KEY,
  channel text NOT NULL CONSTRAINT pgpubsub_notification_channel_length CHECK (octet_length(channel) BETWEEN 1 AND 63),
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  db_version text DEFAULT ${DB_VERSION_FUNCTION}(),
  attempts integer NOT NULL DEFAULT 0,
  available_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  failed_at timestamptz
) WITH (
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
)`,
  `CREATE INDEX pgpubsub_notification_claim ON ${NOTIFICATION_TABLE} (id) WHERE failed_at IS NULL`,
  `COMMENT ON TABLE ${NOTIFICATION_TABLE} IS 'sequelize-pgpubsub: stored notifications of durable channels, deleted when processed; failed_at marks those that used up their attempts'`,
];

const downSql = [
  `DROP TABLE IF EXISTS ${NOTIFICATION_TABLE}`,
  `DROP FUNCTION IF EXISTS ${DB_VERSION_FUNCTION}()`,
  `DROP FUNCTION IF EXISTS ${CONTEXT_FUNCTION}()`,
];

export const name = '00000000000001-pgpubsub-notification-table.js';

/** Accepts sequelize-cli's `(queryInterface, Sequelize)` and Umzug v3's `({ context })`. */
export async function up(...args: unknown[]): Promise<void> {
  await runInTransaction(args, upSql);
}

export async function down(...args: unknown[]): Promise<void> {
  await runInTransaction(args, downSql);
}

export const notificationTable: LibraryMigration = { name, up, down };
