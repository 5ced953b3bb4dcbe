import { CONTEXT_SETTING } from '../../channels/context';
import {
  CLAIM_FUNCTION,
  CONTEXT_FUNCTION,
  DB_VERSION_FUNCTION,
  MIGRATION_META_TABLE,
  NOTIFICATION_TABLE,
  PARSE_CONTEXT_FUNCTION,
  REFRESH_DB_VERSION_FUNCTION,
  REFRESH_DB_VERSION_TRIGGER_FUNCTION,
  WAKE_FUNCTION,
} from './v2-objects';
import { TRIGGER_STEP_PREFIX } from '../../triggers/step';
import { WAKE_LOCKS } from '../wake-locks';
import { quoteLiteral } from '../sql-text';
import { libraryStep } from './runner';

/**
 * The notification table, the helper functions every trigger calls, and the wake-up machinery.
 *
 * Rows are claimed `WHERE failed_at IS NULL AND available_at <= now() ORDER BY id
 * FOR UPDATE SKIP LOCKED`; the partial index on id serves that claim without
 * scanning failed rows. Autovacuum runs early because the table is a hot queue:
 * every row is inserted once and deleted once.
 *
 * Wake-ups: pgpubsub_wake() is the producer's side of the wake-up protocol, explained once in
 * lib/db/wake-locks.ts (this SQL is frozen; later versions replace the function).
 * The helpers avoid EXCEPTION blocks on their common path: each would cost a subtransaction.
 */
/** The claim as this migration creates it (the in-flight migration replaces it, and puts it back on down). */
export const claimFunctionV1 = `CREATE FUNCTION ${CLAIM_FUNCTION}(channels text[], context jsonb, max_rows integer)
  RETURNS TABLE (id text, channel text, payload text, attempts integer)
  LANGUAGE plpgsql SET enable_sort = off AS $fn$
BEGIN
  RETURN QUERY
    SELECT n.id::text, n.channel, n.payload::text, n.attempts
      FROM ${NOTIFICATION_TABLE} AS n
     WHERE n.failed_at IS NULL AND n.channel = ANY (channels) AND n.available_at <= now()
       AND (context IS NULL OR n.payload -> 'context' @> context)
     ORDER BY n.id
     LIMIT max_rows
       FOR UPDATE OF n SKIP LOCKED;
END
$fn$`;

/** The wake-up as this migration creates it (replaced by the in-flight migration). */
export const wakeFunctionV1 = `CREATE FUNCTION ${WAKE_FUNCTION}(channel text) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
  key integer := hashtext(channel);
  unlocked boolean;
BEGIN
  FOR pass IN 1..2 LOOP
    -- An exclusive probe fails while any listener listens (or, for an instant, another producer probes).
    IF NOT pg_try_advisory_lock(${WAKE_LOCKS.listening}, key) THEN
      -- A shared probe fails only while a listener holds the drain lock: it will find the row.
      IF pg_try_advisory_lock_shared(${WAKE_LOCKS.draining}, key) THEN
        unlocked := pg_advisory_unlock_shared(${WAKE_LOCKS.draining}, key);
        PERFORM pg_notify(channel, '');
        RETURN true;
      END IF;
    ELSE
      -- Nobody listens: the next listener's start-up sweep finds the row.
      unlocked := pg_advisory_unlock(${WAKE_LOCKS.listening}, key);
    END IF;
    -- Skipping: say so until commit. Fails only in the instant a listener checks; then wake after all.
    IF pass = 1 AND NOT pg_try_advisory_xact_lock_shared(${WAKE_LOCKS.skipped}, key) THEN
      PERFORM pg_notify(channel, '');
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END
$fn$`;

/** The helper functions as this migration creates them (version 3 moves and hardens them, and puts these back on down). */
export const parseContextFunctionV1 = `CREATE FUNCTION ${PARSE_CONTEXT_FUNCTION}(raw text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
  RETURN raw::jsonb;
EXCEPTION WHEN others THEN
  -- A hand-set, malformed context must never cancel the user's write.
  RETURN jsonb_build_object('invalid_context', raw);
END
$fn$`;

export const contextFunctionV1 = `CREATE FUNCTION ${CONTEXT_FUNCTION}() RETURNS jsonb LANGUAGE sql STABLE AS $fn$
  SELECT CASE WHEN coalesce(current_setting(${quoteLiteral(CONTEXT_SETTING)}, true), '') = '' THEN '{}'::jsonb
              ELSE ${PARSE_CONTEXT_FUNCTION}(current_setting(${quoteLiteral(CONTEXT_SETTING)}, true)) END
$fn$`;

export const dbVersionFunctionV1 = `CREATE FUNCTION ${DB_VERSION_FUNCTION}() RETURNS text LANGUAGE sql STABLE AS $fn$ SELECT NULL::text $fn$`;

export const refreshDbVersionFunctionV1 = `CREATE FUNCTION ${REFRESH_DB_VERSION_FUNCTION}() RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
  newest text;
BEGIN
  IF to_regclass(${quoteLiteral(MIGRATION_META_TABLE)}) IS NOT NULL THEN
    SELECT name INTO newest FROM ${MIGRATION_META_TABLE}
     WHERE name NOT LIKE ${quoteLiteral(`${TRIGGER_STEP_PREFIX}%`)}
     ORDER BY name DESC LIMIT 1;
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION ${DB_VERSION_FUNCTION}() RETURNS text LANGUAGE sql STABLE AS %L',
                 format(' SELECT %L::text ', newest));
END
$fn$`;

export const refreshDbVersionTriggerFunctionV1 = `CREATE FUNCTION ${REFRESH_DB_VERSION_TRIGGER_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM ${REFRESH_DB_VERSION_FUNCTION}();
  RETURN NULL;
END
$fn$`;

const upSql = [
  parseContextFunctionV1,
  // SQL, so that the planner inlines it into each trigger's expression: no function call on a write.
  contextFunctionV1,
  // db_version is read by every write to a channel's table, so it is a constant (a SQL function the
  // planner inlines), rewritten in the transaction that changes SequelizeMeta: a migration's new
  // version shows exactly when its SequelizeMeta row does. Security definer, so that whoever may
  // record a migration may refresh it.
  dbVersionFunctionV1,
  refreshDbVersionFunctionV1,
  refreshDbVersionTriggerFunctionV1,
  // sequelize-cli and Umzug's SequelizeStorage create SequelizeMeta before the first migration runs.
  `DO $do$
BEGIN
  IF to_regclass(${quoteLiteral(MIGRATION_META_TABLE)}) IS NOT NULL THEN
    CREATE TRIGGER pgpubsub_db_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${MIGRATION_META_TABLE}
      FOR EACH STATEMENT EXECUTE FUNCTION ${REFRESH_DB_VERSION_TRIGGER_FUNCTION}();
  END IF;
  PERFORM ${REFRESH_DB_VERSION_FUNCTION}();
END
$do$`,
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
  // The claim walks the partial index in id order and stops at max_rows. Right after a bulk insert
  // the table has no statistics and the planner would sort the whole backlog: sorting is off here.
  claimFunctionV1,
  // Lock calls are plain assignments and conditions (PL/pgSQL evaluates those without the executor), not PERFORMs.
  // Returns whether it sent the NOTIFY; callers assign the result (cheaper than PERFORM).
  wakeFunctionV1,
];

const downSql = [
  `DROP FUNCTION IF EXISTS ${WAKE_FUNCTION}(text)`,
  `DROP FUNCTION IF EXISTS ${CLAIM_FUNCTION}(text[], jsonb, integer)`,
  `DROP TABLE IF EXISTS ${NOTIFICATION_TABLE}`,
  `DROP FUNCTION IF EXISTS ${PARSE_CONTEXT_FUNCTION}(text)`,
  `DO $do$
BEGIN
  IF to_regclass(${quoteLiteral(MIGRATION_META_TABLE)}) IS NOT NULL THEN
    DROP TRIGGER IF EXISTS pgpubsub_db_version ON ${MIGRATION_META_TABLE};
  END IF;
END
$do$`,
  `DROP FUNCTION IF EXISTS ${REFRESH_DB_VERSION_TRIGGER_FUNCTION}()`,
  `DROP FUNCTION IF EXISTS ${REFRESH_DB_VERSION_FUNCTION}()`,
  `DROP FUNCTION IF EXISTS ${DB_VERSION_FUNCTION}()`,
  `DROP FUNCTION IF EXISTS ${CONTEXT_FUNCTION}()`,
];

// Frozen in `public`, whatever the schema: version 3 moves the objects to it.
export const notificationTable = libraryStep(1, '00000000000001-pgpubsub-notification-table.js', () => ({ up: upSql, down: downSql }));
export const { name, up, down, withOptions } = notificationTable;
