import { CONTEXT_SETTING } from '../context';
import * as v3 from '../db-objects';
import { quoteIdent, quoteLiteral } from '../sql-text';
import { COMMENT_TAG, TRIGGER_PREFIX } from '../trigger-render';
import { TRIGGER_STEP_PREFIX } from '../trigger-step';
import { claimFunctionV2, wakeFunctionV2 } from './inflight';
import {
  contextFunctionV1,
  dbVersionFunctionV1,
  parseContextFunctionV1,
  refreshDbVersionFunctionV1,
  refreshDbVersionTriggerFunctionV1,
} from './notification-table';
import { libraryStep } from './runner';
import * as v2 from './v2-objects';

/**
 * Version 3: the library in a schema of its own, with least privilege and no search_path hijack.
 *
 * - Its tables, sequence and functions move from `public` (prefix `pgpubsub_`) to the schema
 *   `pgpubsub` (no prefix), by ALTER … SET SCHEMA: every stored notification keeps its id,
 *   attempts, error and times, and the id sequence goes on from where it was.
 * - Every function pins `search_path` to `pg_catalog, pg_temp` (the inlined SQL helpers qualify
 *   every call instead), so no function, operator or table another role creates is ever picked.
 * - Nothing is executable by PUBLIC. Writers need no rights at all: managed trigger functions run
 *   as their owner (SECURITY DEFINER), so a writer cannot forge a notification. notify() goes
 *   through `send()`, the one function an app's role is granted. The README lists the grants.
 * - `version` records each library migration, so that listeners can refuse a database they do
 *   not fit, and an idempotent install can tell what is missing.
 * - The managed trigger functions already installed are rewritten in place to the new names and
 *   made SECURITY DEFINER with a pinned search_path, so writes keep working before the next
 *   trigger migration replaces them (`pgpubsub triggers check` reports them outdated until then).
 */
const PINNED = v3.PINNED_SEARCH_PATH;
const MANAGED_NAMES = `${TRIGGER_PREFIX.replace(/_/g, '\\_')}%`;

const parseContext = `CREATE OR REPLACE FUNCTION ${v3.PARSE_CONTEXT_FUNCTION}(raw text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE ${PINNED} AS $fn$
BEGIN
  RETURN raw::jsonb;
EXCEPTION WHEN others THEN
  -- A hand-set, malformed context must never cancel the user's write.
  RETURN jsonb_build_object('invalid_context', raw);
END
$fn$`;

// SQL without a SET clause, so that the planner inlines it into each trigger's expression; every call qualified.
const context = `CREATE OR REPLACE FUNCTION ${v3.CONTEXT_FUNCTION}() RETURNS jsonb LANGUAGE sql STABLE AS $fn$
  SELECT CASE WHEN coalesce(pg_catalog.current_setting(${quoteLiteral(CONTEXT_SETTING)}, true), '') = '' THEN '{}'::pg_catalog.jsonb
              ELSE ${v3.PARSE_CONTEXT_FUNCTION}(pg_catalog.current_setting(${quoteLiteral(CONTEXT_SETTING)}, true)) END
$fn$`;

// Owner only: refreshing rewrites db_version(), which any role could otherwise hold up by calling it in an open transaction.
const refreshDbVersion = `CREATE OR REPLACE FUNCTION ${v3.REFRESH_DB_VERSION_FUNCTION}() RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER ${PINNED} AS $fn$
DECLARE
  newest text;
BEGIN
  IF to_regclass(${quoteLiteral(v3.MIGRATION_META_TABLE)}) IS NOT NULL THEN
    SELECT name INTO newest FROM ${v3.MIGRATION_META_TABLE}
     WHERE name NOT LIKE ${quoteLiteral(`${TRIGGER_STEP_PREFIX}%`)}
     ORDER BY name DESC LIMIT 1;
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION ${v3.DB_VERSION_FUNCTION}() RETURNS text LANGUAGE sql STABLE AS %L',
                 format(' SELECT %L::text ', newest));
END
$fn$`;

// Security definer, so that whoever may record a migration in SequelizeMeta may refresh db_version().
const refreshDbVersionTrigger = `CREATE OR REPLACE FUNCTION ${v3.REFRESH_DB_VERSION_TRIGGER_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER ${PINNED} AS $fn$
BEGIN
  PERFORM ${v3.REFRESH_DB_VERSION_FUNCTION}();
  RETURN NULL;
END
$fn$`;

/** The version-2 claim, under the new names and with its search_path pinned. */
const claim = claimFunctionV2
  .replace(`CREATE FUNCTION ${v2.CLAIM_FUNCTION}(`, `CREATE OR REPLACE FUNCTION ${v3.CLAIM_FUNCTION}(`)
  .replace('LANGUAGE plpgsql SET enable_sort = off AS', `LANGUAGE plpgsql SET enable_sort = off ${PINNED} AS`)
  .replaceAll(v2.INFLIGHT_TABLE, v3.INFLIGHT_TABLE)
  .replaceAll(v2.NOTIFICATION_TABLE, v3.NOTIFICATION_TABLE);

/** The version-2 wake-up, under the new names and with its search_path pinned. */
const wake = wakeFunctionV2
  .replace(`CREATE FUNCTION ${v2.WAKE_FUNCTION}(channel text) RETURNS boolean LANGUAGE plpgsql AS`,
    `CREATE OR REPLACE FUNCTION ${v3.WAKE_FUNCTION}(channel text) RETURNS boolean LANGUAGE plpgsql ${PINNED} AS`)
  .replaceAll(quoteLiteral(v2.DRAIN_BEAT_SEQUENCE), quoteLiteral(v3.DRAIN_BEAT_SEQUENCE));

// What notify() runs, as the library's owner. A role granted it can send on any channel, but only
// as op 'NOTIFY': a listener fails such a row on a model channel at once as malformed.
const send = `CREATE FUNCTION ${v3.SEND_FUNCTION}(channel text, payload jsonb, durable boolean) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER ${PINNED} AS $fn$
DECLARE
  message jsonb := jsonb_build_object('op', 'NOTIFY', 'payload', payload, 'context', ${v3.CONTEXT_FUNCTION}());
  woke boolean;
BEGIN
  IF durable THEN
    INSERT INTO ${v3.NOTIFICATION_TABLE} (channel, payload) VALUES (channel, message);
    woke := ${v3.WAKE_FUNCTION}(channel);
  ELSE
    PERFORM pg_notify(channel, message::text);
  END IF;
END
$fn$`;

/** Moves, then renames: [kind, old qualified name and arguments, old bare name, new bare name]. */
const MOVES: Array<[string, string, string, string]> = [
  ['TABLE', v2.NOTIFICATION_TABLE, 'pgpubsub_notification', 'notification'],
  ['TABLE', v2.INFLIGHT_TABLE, 'pgpubsub_inflight', 'inflight'],
  ['SEQUENCE', v2.DRAIN_BEAT_SEQUENCE, 'pgpubsub_drain_beat', 'drain_beat'],
  ['FUNCTION', `${v2.PARSE_CONTEXT_FUNCTION}(text)`, 'pgpubsub_parse_context(text)', 'parse_context'],
  ['FUNCTION', `${v2.CONTEXT_FUNCTION}()`, 'pgpubsub_context()', 'context'],
  ['FUNCTION', `${v2.DB_VERSION_FUNCTION}()`, 'pgpubsub_db_version()', 'db_version'],
  ['FUNCTION', `${v2.REFRESH_DB_VERSION_FUNCTION}()`, 'pgpubsub_refresh_db_version()', 'refresh_db_version'],
  ['FUNCTION', `${v2.REFRESH_DB_VERSION_TRIGGER_FUNCTION}()`, 'pgpubsub_db_version_changed()', 'db_version_changed'],
  ['FUNCTION', `${v2.CLAIM_FUNCTION}(text[], jsonb, integer, integer, integer)`, 'pgpubsub_claim(text[], jsonb, integer, integer, integer)', 'claim'],
  ['FUNCTION', `${v2.WAKE_FUNCTION}(text)`, 'pgpubsub_wake(text)', 'wake'],
];
const schema = quoteIdent(v3.LIBRARY_SCHEMA);
const moveUp = MOVES.flatMap(([kind, from, bare, to]) => [
  `ALTER ${kind} ${from} SET SCHEMA ${schema}`,
  `ALTER ${kind} ${schema}.${bare.replace(/^(\w+)/, '"$1"')} RENAME TO "${to}"`,
]);
const moveDown = MOVES.slice().reverse().flatMap(([kind, , bare, to]) => {
  const args = /\(.*\)$/.exec(bare)?.[0] ?? '';
  const oldName = bare.replace(/\(.*\)$/, '');
  return [
    `ALTER ${kind} ${schema}."${to}"${args} RENAME TO "${oldName}"`,
    `ALTER ${kind} ${schema}."${oldName}"${args} SET SCHEMA "public"`,
  ];
});

/** The names the managed trigger functions of versions 1 and 2 call, and what they are now. */
const RENAMED_IN_TRIGGERS: Array<[string, string]> = [
  [v2.NOTIFICATION_TABLE, v3.NOTIFICATION_TABLE],
  [v2.CONTEXT_FUNCTION, v3.CONTEXT_FUNCTION],
  [v2.DB_VERSION_FUNCTION, v3.DB_VERSION_FUNCTION],
  [v2.WAKE_FUNCTION, v3.WAKE_FUNCTION],
];

// It runs as its owner now: the role that owns the library's objects (this one), not whoever synced it.
const OWN = "EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO CURRENT_USER', f.fn);\n    ";

/** Rewrites every installed managed trigger function (name prefix and comment tag) with the names swapped. */
function rewriteManagedTriggers(direction: 'up' | 'down'): string {
  const pairs = RENAMED_IN_TRIGGERS.map(([from, to]) => (direction === 'up' ? [from, to] : [to, from]));
  const body = pairs.reduce((expr, [from, to]) => `replace(${expr}, ${quoteLiteral(from)}, ${quoteLiteral(to)})`, 'f.prosrc');
  const attributes = direction === 'up' ? `SECURITY DEFINER ${PINNED}` : '';
  const privileges = direction === 'up' ? 'REVOKE ALL ON FUNCTION %s FROM PUBLIC' : 'GRANT EXECUTE ON FUNCTION %s TO PUBLIC';
  return `DO $do$
DECLARE
  f record;
BEGIN
  -- Qualified by hand: regprocedure leaves out a schema on the search path, and CREATE OR REPLACE
  -- of an unqualified name could create a second function in another schema.
  FOR f IN SELECT pg_catalog.format('%I.%I()', n.nspname, p.proname) AS fn, p.prosrc
             FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
            WHERE p.proname LIKE ${quoteLiteral(MANAGED_NAMES)} AND p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype
              AND pg_catalog.obj_description(p.oid, 'pg_proc') LIKE ${quoteLiteral(`${COMMENT_TAG}%`)} LOOP
    EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION %s RETURNS trigger LANGUAGE plpgsql ${attributes} AS %L', f.fn, ${body});
    ${direction === 'up' ? OWN : ''}EXECUTE pg_catalog.format(${quoteLiteral(privileges)}, f.fn);
  END LOOP;
END
$do$`;
}

/** The SequelizeMeta trigger that keeps db_version() current: dropped under `drop`, created as `create` calling `fn`. */
function swapMetaTrigger(drop: string, create: string, fn: string): string {
  return `DO $do$
BEGIN
  IF pg_catalog.to_regclass(${quoteLiteral(v3.MIGRATION_META_TABLE)}) IS NOT NULL THEN
    DROP TRIGGER IF EXISTS ${drop} ON ${v3.MIGRATION_META_TABLE};
    CREATE TRIGGER ${create} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${v3.MIGRATION_META_TABLE}
      FOR EACH STATEMENT EXECUTE FUNCTION ${fn}();
  END IF;
END
$do$`;
}

const LIBRARY_MIGRATIONS = [
  [1, '00000000000001-pgpubsub-notification-table.js'],
  [2, '00000000000002-pgpubsub-inflight.js'],
  [3, '00000000000003-pgpubsub-schema.js'],
] as const;

const upSql = [
  `CREATE SCHEMA ${schema}`,
  `COMMENT ON SCHEMA ${schema} IS 'sequelize-pgpubsub: the library''s tables and functions'`,
  `REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC`,
  ...moveUp,
  parseContext,
  context,
  refreshDbVersion,
  refreshDbVersionTrigger,
  claim,
  wake,
  send,
  `CREATE TABLE ${v3.VERSION_TABLE} (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`,
  `COMMENT ON TABLE ${v3.VERSION_TABLE} IS 'sequelize-pgpubsub: the library migrations applied to this database'`,
  `INSERT INTO ${v3.VERSION_TABLE} (version, name) VALUES ${LIBRARY_MIGRATIONS.map(([n, file]) => `(${n}, ${quoteLiteral(file)})`).join(', ')}`,
  swapMetaTrigger('pgpubsub_db_version', v3.DB_VERSION_TRIGGER, v3.REFRESH_DB_VERSION_TRIGGER_FUNCTION),
  rewriteManagedTriggers('up'),
  `REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ${schema} FROM PUBLIC`,
  `SELECT ${v3.REFRESH_DB_VERSION_FUNCTION}()`,
];

const orReplace = (sql: string) => sql.replace(/^CREATE FUNCTION /, 'CREATE OR REPLACE FUNCTION ');

const downSql = [
  rewriteManagedTriggers('down'),
  swapMetaTrigger(v3.DB_VERSION_TRIGGER, 'pgpubsub_db_version', v3.REFRESH_DB_VERSION_TRIGGER_FUNCTION),
  `DROP TABLE ${v3.VERSION_TABLE}`,
  `DROP FUNCTION ${v3.SEND_FUNCTION}(text, jsonb, boolean)`,
  ...moveDown,
  ...[parseContextFunctionV1, contextFunctionV1, dbVersionFunctionV1, refreshDbVersionFunctionV1, refreshDbVersionTriggerFunctionV1, claimFunctionV2, wakeFunctionV2].map(orReplace),
  ...MOVES.filter(([kind]) => kind === 'FUNCTION').map(([, from]) => `GRANT EXECUTE ON FUNCTION ${from} TO PUBLIC`),
  `DROP SCHEMA ${schema}`,
  `SELECT ${v2.REFRESH_DB_VERSION_FUNCTION}()`,
];

export const schemaMigration = libraryStep(3, '00000000000003-pgpubsub-schema.js', upSql, downSql);
export const { name, up, down } = schemaMigration;

/**
 * A managed trigger as a trigger migration generated before version 3 froze it, rewritten for
 * version 3 as this migration rewrites installed ones: the library's new names, SECURITY DEFINER,
 * search_path pinned, not executable by PUBLIC. migration:generate uses it for the `down` of the
 * first trigger migration after the upgrade, so that undoing it leaves working triggers.
 */
export function upgradeTriggerSpec<T extends { install: string[] }>(spec: T): T {
  const frozen = spec.install.join('\n');
  if (!RENAMED_IN_TRIGGERS.some(([from]) => frozen.includes(from))) return spec;
  const install = spec.install.flatMap((statement) => {
    let sql = RENAMED_IN_TRIGGERS.reduce((text, [from, to]) => text.replaceAll(from, to), statement);
    const created = /^CREATE OR REPLACE FUNCTION (\S+\(\)) RETURNS trigger LANGUAGE plpgsql AS /.exec(sql);
    if (!created) return [sql];
    sql = sql.replace(' LANGUAGE plpgsql AS ', ` LANGUAGE plpgsql SECURITY DEFINER ${PINNED} AS `);
    return [sql, `REVOKE ALL ON FUNCTION ${created[1]} FROM PUBLIC`];
  });
  return { ...spec, install };
}
