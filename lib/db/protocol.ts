/**
 * The protocol: every name and number the library's installed SQL embeds, in one place. The
 * library migrations (SQL text in lib/db/migrations/) read them only through their `{{…}}`
 * placeholders (see `protocolPlaceholders`), and the managed triggers and generated trigger
 * migrations through the constants below. Installed databases have these values in their function
 * bodies: changing one means a new library migration that installs the new value, never an edit
 * here alone (lib/db/schema.sql and its test catch a change).
 */
import { quoteLiteral } from './sql-text';

/**
 * Advisory lock namespaces of the wake-up protocol (the first key of the two-key form; the second
 * is `hashtext(channel)`), explained in lib/db/wake-locks.ts:
 * - listening: every live listener holds it shared on its LISTEN connection;
 * - draining: the listener draining a channel's backlog holds it exclusively (its "drain lease");
 * - skipped: a producer that skipped its NOTIFY holds it shared until it commits.
 */
export const WAKE_LOCKS = { listening: 1885826930, draining: 1885826931, skipped: 1885826932 } as const;

/**
 * The advisory lock namespace of listeners' holder keys: each listener holds (HOLDER_LOCK, its key)
 * on its LISTEN connection while it lives; its in-flight marker row is keyed by the same key.
 */
export const HOLDER_LOCK = 1885826933;

/** A listener without its holder lock for this long is dead (not reconnecting): its batch is retried alone. */
export const DEAD_AFTER_SECONDS = 10;

/** A producer trusts a drain lock only while the drain beat is younger than this (ms). */
export const DRAIN_BEAT_FRESH_MS = 1000;

/** The most a listener report's channels may take (bytes of jsonb). */
export const REPORT_MAX_BYTES = 65_536;
/** The latest a notification may be due (notify()'s runAt, send()'s available_at): send() refuses later and infinite times. */
export const LATEST_RUN_AT = new Date('9999-12-31T23:59:59.999Z');

/** The setting (GUC) that holds the notification context as JSON text; context() reads it. */
export const CONTEXT_SETTING = 'pgpubsub.notification_context';
/** The setting that holds the producer's W3C traceparent: context() adds it as `traceparent`. */
export const TRACE_SETTING = 'pgpubsub.traceparent';

/** Names of the Umzug trigger steps; db_version() skips them (they are not the app's schema version). */
export const TRIGGER_STEP_PREFIX = 'pgpubsub-triggers-';

/** Managed trigger and trigger function names start with this. */
export const TRIGGER_PREFIX = 'pgpubsub_';
/** Managed triggers' and their functions' comments start with this, then a JSON label. */
export const COMMENT_TAG = 'pgpubsub:trigger:';

/** The library's trigger on the migration storage table that keeps db_version() current. */
export const DB_VERSION_TRIGGER = 'sequelize_pgpubsub_db_version';

/** Library migrations of the same database take turns (two deploys, or two boots calling install()). */
export const INSTALL_LOCK_SQL = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgpubsub'), pg_catalog.hashtext('install'))";
/** Trigger syncs (and generated trigger migrations, which embed this text) take turns. */
export const SYNC_LOCK_SQL = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgpubsub'), pg_catalog.hashtext('trigger-sync'))";

/** The protocol's values as library migrations' placeholders: `{{name}}` → SQL text. */
export const PROTOCOL_PLACEHOLDERS: Readonly<Record<string, string>> = Object.freeze({
  lock_listening: String(WAKE_LOCKS.listening),
  lock_draining: String(WAKE_LOCKS.draining),
  lock_skipped: String(WAKE_LOCKS.skipped),
  lock_holder: String(HOLDER_LOCK),
  dead_after_seconds: String(DEAD_AFTER_SECONDS),
  drain_beat_fresh_ms: String(DRAIN_BEAT_FRESH_MS),
  report_max_bytes: String(REPORT_MAX_BYTES),
  latest_run_at: LATEST_RUN_AT.toISOString(),
  context_setting: quoteLiteral(CONTEXT_SETTING),
  trace_setting: quoteLiteral(TRACE_SETTING),
  trigger_step_pattern: quoteLiteral(`${TRIGGER_STEP_PREFIX}%`),
});
