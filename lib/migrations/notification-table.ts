import {
  CONTEXT_FUNCTION,
  CONTEXT_SETTING,
  DB_VERSION_FUNCTION,
  DRAIN_LEASE_TABLE,
  MIGRATION_META_TABLE,
  NOTIFICATION_TABLE,
  PARSE_CONTEXT_FUNCTION,
  TRIGGER_STEP_PREFIX,
  WAKE_AT_COMMIT_FUNCTION,
  WAKE_FUNCTION,
  WAKE_REQUEST_TABLE,
} from '../notification-table';
import { quoteLiteral } from '../sql-text';
import { type LibraryMigration, runInTransaction } from './runner';

/**
 * The notification table, the helper functions every trigger calls, and the wake-up machinery.
 *
 * Rows are claimed `WHERE failed_at IS NULL AND available_at <= now() ORDER BY id
 * FOR UPDATE SKIP LOCKED`; the partial index on id serves that claim without
 * scanning failed rows. Autovacuum runs early because the table is a hot queue:
 * every row is inserted once and deleted once.
 *
 * Wake-ups: a NOTIFY makes PostgreSQL serialise the commits of every transaction that sent one,
 * which caps concurrent writers at about a third of their rate. So producers do not NOTIFY
 * directly: pgpubsub_wake() records a request, and a deferred constraint trigger decides at
 * commit, once per transaction and channel, whether to NOTIFY. It does not while a listener holds
 * a drain lease on the channel: that listener claims again before it lets the lease go, and once
 * more after a short linger, so a row committed meanwhile is found within milliseconds.
 * The helpers avoid EXCEPTION blocks on their common path: each would cost a subtransaction.
 */
const upSql = [
  `CREATE FUNCTION ${PARSE_CONTEXT_FUNCTION}(raw text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
  RETURN raw::jsonb;
EXCEPTION WHEN others THEN
  -- A hand-set, malformed context must never cancel the user's write.
  RETURN jsonb_build_object('invalid_context', raw);
END
$fn$`,
  `CREATE FUNCTION ${CONTEXT_FUNCTION}() RETURNS jsonb LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  raw text := current_setting(${quoteLiteral(CONTEXT_SETTING)}, true);
BEGIN
  IF raw IS NULL OR raw = '' THEN
    RETURN '{}'::jsonb;
  END IF;
  RETURN ${PARSE_CONTEXT_FUNCTION}(raw);
END
$fn$`,
  `CREATE FUNCTION ${DB_VERSION_FUNCTION}() RETURNS text LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  IF to_regclass(${quoteLiteral(MIGRATION_META_TABLE)}) IS NULL THEN
    RETURN NULL;
  END IF;
  RETURN (SELECT name FROM ${MIGRATION_META_TABLE}
           WHERE name NOT LIKE ${quoteLiteral(`${TRIGGER_STEP_PREFIX}%`)}
           ORDER BY name DESC LIMIT 1);
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
  // Unlogged: both tables hold only short-lived coordination state, which a crash may lose.
  `CREATE UNLOGGED TABLE ${DRAIN_LEASE_TABLE} (
  listener text PRIMARY KEY,
  channels text[] NOT NULL,
  until timestamptz NOT NULL
)`,
  `CREATE UNLOGGED TABLE ${WAKE_REQUEST_TABLE} (
  txid bigint NOT NULL,
  channel text NOT NULL,
  PRIMARY KEY (txid, channel)
)`,
  `CREATE FUNCTION ${WAKE_FUNCTION}(channel text) RETURNS void LANGUAGE sql AS $fn$
  INSERT INTO ${WAKE_REQUEST_TABLE} (txid, channel) VALUES (txid_current(), channel) ON CONFLICT DO NOTHING
$fn$`,
  `CREATE FUNCTION ${WAKE_AT_COMMIT_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM ${WAKE_REQUEST_TABLE} WHERE txid = NEW.txid AND channel = NEW.channel;
  IF NOT EXISTS (SELECT FROM ${DRAIN_LEASE_TABLE} WHERE until > clock_timestamp() AND NEW.channel = ANY (channels)) THEN
    PERFORM pg_notify(NEW.channel, '');
  END IF;
  RETURN NULL;
END
$fn$`,
  `CREATE CONSTRAINT TRIGGER pgpubsub_wake_at_commit AFTER INSERT ON ${WAKE_REQUEST_TABLE}
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${WAKE_AT_COMMIT_FUNCTION}()`,
];

const downSql = [
  `DROP TABLE IF EXISTS ${WAKE_REQUEST_TABLE}`,
  `DROP FUNCTION IF EXISTS ${WAKE_AT_COMMIT_FUNCTION}()`,
  `DROP FUNCTION IF EXISTS ${WAKE_FUNCTION}(text)`,
  `DROP TABLE IF EXISTS ${DRAIN_LEASE_TABLE}`,
  `DROP TABLE IF EXISTS ${NOTIFICATION_TABLE}`,
  `DROP FUNCTION IF EXISTS ${PARSE_CONTEXT_FUNCTION}(text)`,
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
