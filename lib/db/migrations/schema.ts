import { CONTEXT_SETTING } from '../../channels/context';
import { DB_VERSION_TRIGGER, DEFAULT_SCHEMA, type LibraryObjects, PINNED_SEARCH_PATH, libraryObjects } from '../objects';
import { quoteIdent, quoteLiteral, shortHash } from '../sql-text';
import { COMMENT_TAG, TRIGGER_PREFIX } from '../../triggers/render';
import { TRIGGER_STEP_PREFIX } from '../../triggers/step';
import { claimFunctionV2, wakeFunctionV2 } from './inflight';
import {
  contextFunctionV1,
  dbVersionFunctionV1,
  parseContextFunctionV1,
  refreshDbVersionFunctionV1,
  refreshDbVersionTriggerFunctionV1,
} from './notification-table';
import { type MigrationTarget, libraryStep } from './runner';
import * as v2 from './v2-objects';

/**
 * Version 3: the library in a schema of its own, with least privilege and no search_path hijack.
 *
 * - Its tables, sequence and functions move from `public` (prefix `pgpubsub_`) to the schema
 *   `pgpubsub` (no prefix; or the schema the migration is given), by ALTER … SET SCHEMA: every stored notification keeps its id,
 *   attempts, error and times, and the id sequence goes on from where it was.
 * - Every function pins `search_path` to `pg_catalog, pg_temp` (the inlined SQL helpers qualify
 *   every call instead), so no function, operator or table another role creates is ever picked.
 * - Nothing is executable by PUBLIC. Writers need no rights at all: managed trigger functions run
 *   as their owner (SECURITY DEFINER), so a writer cannot forge a notification. notify() goes
 *   through `send()`, the one function an app's role is granted. The README lists the grants.
 * - db_version() follows the app's migration storage table, wherever it is (sequelize-cli's
 *   `migrationStorageTableName`/`migrationStorageTableSchema`, or the storage option).
 * - `version` records each library migration, so that listeners can refuse a database they do
 *   not fit, and an idempotent install can tell what is missing.
 * - The managed trigger functions already installed are rewritten in place to the new names and
 *   made SECURITY DEFINER with a pinned search_path, so writes keep working before the next
 *   trigger migration replaces them (`pgpubsub triggers check` reports them outdated until then).
 */
const PINNED = PINNED_SEARCH_PATH;
const MANAGED_NAMES = `${TRIGGER_PREFIX.replace(/_/g, '\\_')}%`;

/**
 * The library's trigger on the migration storage table of a schema's library. Named apart for a
 * schema other than the default, so that two libraries' triggers never replace each other.
 */
export function dbVersionTrigger(schema: string): string {
  return schema === DEFAULT_SCHEMA ? DB_VERSION_TRIGGER : `${DB_VERSION_TRIGGER}_${shortHash(schema, 8)}`;
}

/** context() of version 3: the context setting as jsonb. Version 5 adds the trace context (migrations/listeners.ts). */
export function contextFunctionV3(v3: LibraryObjects): string {
  // SQL without a SET clause, so that the planner inlines it into each trigger's expression; every call qualified.
  return `CREATE OR REPLACE FUNCTION ${v3.contextFunction}() RETURNS jsonb LANGUAGE sql STABLE AS $fn$
  SELECT CASE WHEN coalesce(pg_catalog.current_setting(${quoteLiteral(CONTEXT_SETTING)}, true), '') = '' THEN '{}'::pg_catalog.jsonb
              ELSE ${v3.parseContextFunction}(pg_catalog.current_setting(${quoteLiteral(CONTEXT_SETTING)}, true)) END
$fn$`;
}

/** The claim of version 3: version 2's, under the new names and with its search_path pinned (version 6 replaces it). */
export function claimFunctionV3(v3: LibraryObjects): string {
  return claimFunctionV2
    .replace(`CREATE FUNCTION ${v2.CLAIM_FUNCTION}(`, `CREATE OR REPLACE FUNCTION ${v3.claimFunction}(`)
    .replace('LANGUAGE plpgsql SET enable_sort = off AS', `LANGUAGE plpgsql SET enable_sort = off ${PINNED} AS`)
    .replaceAll(v2.INFLIGHT_TABLE, v3.inflightTable)
    .replaceAll(v2.NOTIFICATION_TABLE, v3.notificationTable);
}

/** The wake-up of version 3: version 2's, under the new names and with its search_path pinned (version 7 replaces it). */
export function wakeFunctionV3(v3: LibraryObjects): string {
  return wakeFunctionV2
    .replace(`CREATE FUNCTION ${v2.WAKE_FUNCTION}(channel text) RETURNS boolean LANGUAGE plpgsql AS`,
      `CREATE OR REPLACE FUNCTION ${v3.wakeFunction}(channel text) RETURNS boolean LANGUAGE plpgsql ${PINNED} AS`)
    .replaceAll(quoteLiteral(v2.DRAIN_BEAT_SEQUENCE), quoteLiteral(v3.drainBeatSequence));
}

/** The functions of version 3 in the target schema (also what install() creates). */
function functions(v3: LibraryObjects) {
  const parseContext = `CREATE OR REPLACE FUNCTION ${v3.parseContextFunction}(raw text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE ${PINNED} AS $fn$
BEGIN
  RETURN raw::jsonb;
EXCEPTION WHEN others THEN
  -- A hand-set, malformed context must never cancel the user's write.
  RETURN jsonb_build_object('invalid_context', raw);
END
$fn$`;

  const context = contextFunctionV3(v3);

  // Owner only: refreshing rewrites db_version(), which any role could otherwise hold up by calling
  // it in an open transaction; and it reads the table it is given as the owner.
  const refreshDbVersion = `CREATE OR REPLACE FUNCTION ${v3.refreshDbVersionFunction}(storage regclass) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER ${PINNED} AS $fn$
DECLARE
  newest text;
BEGIN
  IF storage IS NOT NULL THEN
    EXECUTE format('SELECT name FROM %s WHERE name NOT LIKE %L ORDER BY name DESC LIMIT 1', storage, ${quoteLiteral(`${TRIGGER_STEP_PREFIX}%`)})
       INTO newest;
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION ${v3.dbVersionFunction}() RETURNS text LANGUAGE sql STABLE AS %L',
                 format(' SELECT %L::pg_catalog.text ', newest));
END
$fn$`;

  // Security definer, so that whoever may record a migration in the storage table may refresh db_version().
  const refreshDbVersionTrigger = `CREATE OR REPLACE FUNCTION ${v3.refreshDbVersionTriggerFunction}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER ${PINNED} AS $fn$
BEGIN
  PERFORM ${v3.refreshDbVersionFunction}(TG_RELID::regclass);
  RETURN NULL;
END
$fn$`;

  const claim = claimFunctionV3(v3);

  const wake = wakeFunctionV3(v3);

  // What notify() runs, as the library's owner. A role granted it can send on any channel, but only
  // as op 'NOTIFY': a listener fails such a row on a model channel at once as malformed.
  const send = `CREATE FUNCTION ${v3.sendFunction}(channel text, payload jsonb, durable boolean) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER ${PINNED} AS $fn$
DECLARE
  message jsonb := jsonb_build_object('op', 'NOTIFY', 'payload', payload, 'context', ${v3.contextFunction}());
  woke boolean;
BEGIN
  IF durable THEN
    INSERT INTO ${v3.notificationTable} (channel, payload) VALUES (channel, message);
    woke := ${v3.wakeFunction}(channel);
  ELSE
    PERFORM pg_notify(channel, message::text);
  END IF;
END
$fn$`;
  return [parseContext, context, refreshDbVersion, refreshDbVersionTrigger, claim, wake, send];
}

/** Moves, then renames: [kind, old qualified name and arguments, old bare name, new bare name]. */
const MOVES: Array<[string, string, string, string]> = [
  ['TABLE', v2.NOTIFICATION_TABLE, 'pgpubsub_notification', 'notification'],
  ['TABLE', v2.INFLIGHT_TABLE, 'pgpubsub_inflight', 'inflight'],
  ['SEQUENCE', v2.DRAIN_BEAT_SEQUENCE, 'pgpubsub_drain_beat', 'drain_beat'],
  ['FUNCTION', `${v2.PARSE_CONTEXT_FUNCTION}(text)`, 'pgpubsub_parse_context(text)', 'parse_context'],
  ['FUNCTION', `${v2.CONTEXT_FUNCTION}()`, 'pgpubsub_context()', 'context'],
  ['FUNCTION', `${v2.DB_VERSION_FUNCTION}()`, 'pgpubsub_db_version()', 'db_version'],
  ['FUNCTION', `${v2.CLAIM_FUNCTION}(text[], jsonb, integer, integer, integer)`, 'pgpubsub_claim(text[], jsonb, integer, integer, integer)', 'claim'],
  ['FUNCTION', `${v2.WAKE_FUNCTION}(text)`, 'pgpubsub_wake(text)', 'wake'],
];
/** Version-2 functions version 3 replaces with new ones (their signature or body differs): dropped on up, created again on down. */
const REPLACED: Array<[string, string]> = [
  [`${v2.REFRESH_DB_VERSION_TRIGGER_FUNCTION}()`, refreshDbVersionTriggerFunctionV1],
  [`${v2.REFRESH_DB_VERSION_FUNCTION}()`, refreshDbVersionFunctionV1],
];

function moves(schema: string) {
  const to = quoteIdent(schema);
  const up = MOVES.flatMap(([kind, from, bare, name]) => [
    `ALTER ${kind} ${from} SET SCHEMA ${to}`,
    `ALTER ${kind} ${to}.${bare.replace(/^(\w+)/, '"$1"')} RENAME TO "${name}"`,
  ]);
  const down = MOVES.slice().reverse().flatMap(([kind, , bare, name]) => {
    const args = /\(.*\)$/.exec(bare)?.[0] ?? '';
    const oldName = bare.replace(/\(.*\)$/, '');
    return [
      `ALTER ${kind} ${to}."${name}"${args} RENAME TO "${oldName}"`,
      `ALTER ${kind} ${to}."${oldName}"${args} SET SCHEMA "public"`,
    ];
  });
  return { up, down };
}

/** The names the managed trigger functions of versions 1 and 2 call, and what they are in version 3. */
function renamedInTriggers(v3: LibraryObjects): Array<[string, string]> {
  return [
    [v2.NOTIFICATION_TABLE, v3.notificationTable],
    [v2.CONTEXT_FUNCTION, v3.contextFunction],
    [v2.DB_VERSION_FUNCTION, v3.dbVersionFunction],
    [v2.WAKE_FUNCTION, v3.wakeFunction],
  ];
}

// It runs as its owner now: the role that owns the library's objects (this one), not whoever synced it.
const OWN = "EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO CURRENT_USER', f.fn);\n    ";

/** Rewrites every installed managed trigger function (name prefix and comment tag) with the names swapped. */
function rewriteManagedTriggers(v3: LibraryObjects, direction: 'up' | 'down'): string {
  const pairs = renamedInTriggers(v3).map(([from, to]) => (direction === 'up' ? [from, to] : [to, from]));
  const body = pairs.reduce((expr, [from, to]) => `replace(${expr}, ${quoteLiteral(from)}, ${quoteLiteral(to)})`, 'f.prosrc');
  const attributes = direction === 'up' ? `SECURITY DEFINER ${PINNED}` : '';
  const privileges = direction === 'up' ? 'REVOKE ALL ON FUNCTION %s FROM PUBLIC' : 'GRANT EXECUTE ON FUNCTION %s TO PUBLIC';
  // Only the functions that call this library's objects (a trigger of another schema's library is left alone).
  const calls = quoteLiteral(`%${pairs[0][0]}%`);
  return `DO $do$
DECLARE
  f record;
BEGIN
  -- Qualified by hand: regprocedure leaves out a schema on the search path, and CREATE OR REPLACE
  -- of an unqualified name could create a second function in another schema.
  FOR f IN SELECT pg_catalog.format('%I.%I()', n.nspname, p.proname) AS fn, p.prosrc
             FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
            WHERE p.proname LIKE ${quoteLiteral(MANAGED_NAMES)} AND p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype
              AND pg_catalog.obj_description(p.oid, 'pg_proc') LIKE ${quoteLiteral(`${COMMENT_TAG}%`)}
              AND p.prosrc LIKE ${calls} LOOP
    EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION %s RETURNS trigger LANGUAGE plpgsql ${attributes} AS %L', f.fn, ${body});
    ${direction === 'up' ? OWN : ''}EXECUTE pg_catalog.format(${quoteLiteral(privileges)}, f.fn);
  END LOOP;
END
$do$`;
}

/** Drops trigger `drop.trigger` on table `drop.on` (when the table exists). */
function dropStorageTrigger(drop: { trigger: string; on: string }): string {
  return `DO $do$
BEGIN
  IF pg_catalog.to_regclass(${quoteLiteral(drop.on)}) IS NOT NULL THEN
    DROP TRIGGER IF EXISTS ${quoteIdent(drop.trigger)} ON ${drop.on};
  END IF;
END
$do$`;
}

/** Creates (or replaces) trigger `create.trigger` calling `create.fn` on table `create.on` (when the table exists). */
function createStorageTrigger(create: { trigger: string; on: string; fn: string }): string {
  return `DO $do$
BEGIN
  IF pg_catalog.to_regclass(${quoteLiteral(create.on)}) IS NOT NULL THEN
    DROP TRIGGER IF EXISTS ${quoteIdent(create.trigger)} ON ${create.on};
    CREATE TRIGGER ${quoteIdent(create.trigger)} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${create.on}
      FOR EACH STATEMENT EXECUTE FUNCTION ${create.fn}();
  END IF;
END
$do$`;
}

const LIBRARY_MIGRATIONS = [
  [1, '00000000000001-pgpubsub-notification-table.js'],
  [2, '00000000000002-pgpubsub-inflight.js'],
  [3, '00000000000003-pgpubsub-schema.js'],
] as const;

const orReplace = (sql: string) => sql.replace(/^CREATE FUNCTION /, 'CREATE OR REPLACE FUNCTION ');

function schemaSql({ objects: v3, storage }: MigrationTarget) {
  const schema = quoteIdent(v3.schema);
  const moved = moves(v3.schema);
  const trigger = dbVersionTrigger(v3.schema);
  const up = [
    `CREATE SCHEMA ${schema}`,
    `COMMENT ON SCHEMA ${schema} IS 'sequelize-pgpubsub: the library''s tables and functions'`,
    `REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC`,
    ...moved.up,
    dropStorageTrigger({ trigger: 'pgpubsub_db_version', on: v2.MIGRATION_META_TABLE }),
    ...REPLACED.map(([fn]) => `DROP FUNCTION ${fn}`),
    ...functions(v3),
    createStorageTrigger({ trigger, on: storage, fn: v3.refreshDbVersionTriggerFunction }),
    `CREATE TABLE ${v3.versionTable} (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`,
    `COMMENT ON TABLE ${v3.versionTable} IS 'sequelize-pgpubsub: the library migrations applied to this database'`,
    `INSERT INTO ${v3.versionTable} (version, name) VALUES ${LIBRARY_MIGRATIONS.map(([n, file]) => `(${n}, ${quoteLiteral(file)})`).join(', ')}`,
    rewriteManagedTriggers(v3, 'up'),
    `REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ${schema} FROM PUBLIC`,
    `SELECT ${v3.refreshDbVersionFunction}(pg_catalog.to_regclass(${quoteLiteral(storage)}))`,
  ];
  const down = [
    rewriteManagedTriggers(v3, 'down'),
    dropStorageTrigger({ trigger, on: storage }),
    `DROP TABLE ${v3.versionTable}`,
    `DROP FUNCTION ${v3.sendFunction}(text, jsonb, boolean)`,
    `DROP FUNCTION ${v3.refreshDbVersionTriggerFunction}()`,
    `DROP FUNCTION ${v3.refreshDbVersionFunction}(regclass)`,
    ...moved.down,
    ...[parseContextFunctionV1, contextFunctionV1, dbVersionFunctionV1, claimFunctionV2, wakeFunctionV2].map(orReplace),
    ...REPLACED.map(([, create]) => orReplace(create)),
    createStorageTrigger({ trigger: 'pgpubsub_db_version', on: v2.MIGRATION_META_TABLE, fn: v2.REFRESH_DB_VERSION_TRIGGER_FUNCTION }),
    ...MOVES.filter(([kind]) => kind === 'FUNCTION').map(([, from]) => `GRANT EXECUTE ON FUNCTION ${from} TO PUBLIC`),
    `DROP SCHEMA ${schema}`,
    `SELECT ${v2.REFRESH_DB_VERSION_FUNCTION}()`,
  ];
  return { up, down };
}

export const schemaMigration = libraryStep(3, '00000000000003-pgpubsub-schema.js', schemaSql);
export const { name, up, down, withOptions } = schemaMigration;

/**
 * A managed trigger as a trigger migration generated before version 3 froze it, rewritten for
 * version 3 as this migration rewrites installed ones: the library's new names, SECURITY DEFINER,
 * search_path pinned, not executable by PUBLIC. migration:generate uses it for the `down` of the
 * first trigger migration after the upgrade, so that undoing it leaves working triggers.
 */
export function upgradeTriggerSpec<T extends { install: string[] }>(spec: T, objects: LibraryObjects = libraryObjects()): T {
  const renamed = renamedInTriggers(objects);
  const frozen = spec.install.join('\n');
  if (!renamed.some(([from]) => frozen.includes(from))) return spec;
  const install = spec.install.flatMap((statement) => {
    let sql = renamed.reduce((text, [from, to]) => text.replaceAll(from, to), statement);
    const created = /^CREATE OR REPLACE FUNCTION (\S+\(\)) RETURNS trigger LANGUAGE plpgsql AS /.exec(sql);
    if (!created) return [sql];
    sql = sql.replace(' LANGUAGE plpgsql AS ', ` LANGUAGE plpgsql SECURITY DEFINER ${PINNED} AS `);
    return [sql, `REVOKE ALL ON FUNCTION ${created[1]} FROM PUBLIC`];
  });
  return { ...spec, install };
}
