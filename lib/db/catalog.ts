import type { Transaction } from 'sequelize';
import { type Reader, selectRows } from './select';
import { libraryObjects } from './objects';
import { quoteLiteral } from './sql-text';
import { COMMENT_TAG, TRIGGER_PREFIX, type TriggerLabel, parseLabel } from '../triggers/render';

/** The catalog lookups (pg_catalog): which managed triggers and functions, and which tables, a database has. */

const PREFIX_PATTERN = quoteLiteral(`${TRIGGER_PREFIX.replace(/_/g, '\\_')}%`);
const TAG_PATTERN = quoteLiteral(`${COMMENT_TAG}%`);

/**
 * SQL condition: the pg_trigger row `alias` is a managed channel trigger. Recognised by its name
 * prefix AND its comment marker, so the library's own trigger on SequelizeMeta (pgpubsub_db_version),
 * and anyone else's trigger that happens to start with the prefix, are not.
 *
 * @example
 * `SELECT tgname FROM pg_trigger t WHERE ${managedTriggerSql('t')}`
 */
export function managedTriggerSql(alias: string): string {
  return `NOT ${alias}.tgisinternal AND ${alias}.tgname LIKE ${PREFIX_PATTERN} AND pg_catalog.obj_description(${alias}.oid, 'pg_trigger') LIKE ${TAG_PATTERN}`;
}

/** SQL condition: the pg_proc row `alias` is a managed trigger function (name prefix and comment marker). */
export function managedFunctionSql(alias: string): string {
  return `${alias}.proname LIKE ${PREFIX_PATTERN} AND pg_catalog.obj_description(${alias}.oid, 'pg_proc') LIKE ${TAG_PATTERN}`;
}

/** A managed trigger or function found in the database. */
export interface InstalledObject {
  schema: string;
  /** The trigger's table; null for a managed function that no trigger uses (an orphan). */
  table: string | null;
  name: string;
  label: TriggerLabel | null;
  functionLabel: TriggerLabel | null;
  body: string | null;
}

/** Managed triggers (with their function) and orphaned managed functions, as installed now. */
export async function installedObjects(via: Reader, transaction?: Transaction): Promise<InstalledObject[]> {
  const rows = await selectRows<Omit<InstalledObject, 'label' | 'functionLabel'> & { triggerComment: string | null; functionComment: string | null }>(via,
    `SELECT n.nspname AS schema, c.relname AS "table", t.tgname AS name,
            pg_catalog.obj_description(t.oid, 'pg_trigger') AS "triggerComment",
            pg_catalog.obj_description(p.oid, 'pg_proc') AS "functionComment", p.prosrc AS body
       FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_proc p ON p.oid = t.tgfoid
      WHERE ${managedTriggerSql('t')}
     UNION ALL
     SELECT n.nspname, NULL, p.proname, NULL, pg_catalog.obj_description(p.oid, 'pg_proc'), p.prosrc
       FROM pg_proc p
       JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE ${managedFunctionSql('p')}
        AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid)`,
    [], transaction,
  );
  return rows.map(({ triggerComment, functionComment, ...row }) => ({
    ...row,
    label: parseLabel(triggerComment),
    functionLabel: parseLabel(functionComment),
  }));
}

const MISSING_RELATIONS_SQL = `SELECT name FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS t(name, i) WHERE pg_catalog.to_regclass(name) IS NULL ORDER BY i`;

/** Which of these (qualified) tables do not exist, in the order given: one query, on a pg client or through Sequelize. */
export async function missingRelations(via: Reader, names: readonly string[], transaction?: Transaction): Promise<string[]> {
  if (names.length === 0) return [];
  return (await selectRows<{ name: string }>(via, MISSING_RELATIONS_SQL, [names], transaction)).map((row) => row.name);
}

/**
 * The version of the library's objects in `schema`: the newest row of its version table, 0 when
 * nothing is installed. On a pg client, or through Sequelize (in `transaction` if given).
 */
export async function installedLibraryVersion(via: Reader, schema: string, transaction?: Transaction): Promise<number> {
  // pg_class read with this statement's snapshot, not to_regclass(): the catalog caches of a session
  // that waited on the install lock may not have seen the tables another session just committed.
  const [found] = await selectRows<{ current: boolean }>(via,
    `SELECT EXISTS (SELECT FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS s ON s.oid = c.relnamespace
                     WHERE s.nspname = $1 AND c.relname = $2) AS current`,
    [schema, 'version'], transaction);
  if (!found.current) return 0;
  const [row] = await selectRows<{ version: number | null }>(via, `SELECT pg_catalog.max(version) AS version FROM ${libraryObjects(schema).versionTable}`, [], transaction);
  return row.version ?? 0;
}

/**
 * The name the version table records for library migration 1 in `schema`, or null: tells a
 * database installed by a pre-release commit (whose first migration had another name) from one
 * a newer release migrated.
 */
export async function firstLibraryMigration(via: Reader, schema: string): Promise<string | null> {
  const [row] = await selectRows<{ name: string }>(via, `SELECT name FROM ${libraryObjects(schema).versionTable} WHERE version = 1`, []);
  return row?.name ?? null;
}

/** The schemas holding a library (its version table), for messages. */
export async function librarySchemas(via: Reader): Promise<string[]> {
  const rows = await selectRows<{ schema: string }>(via,
    `SELECT s.nspname AS schema FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS s ON s.oid = c.relnamespace
      WHERE c.relname = 'version' AND c.relkind = 'r'
        AND pg_catalog.obj_description(c.oid, 'pg_class') LIKE 'sequelize-pgpubsub:%' ORDER BY 1`, []);
  return rows.map((row) => row.schema);
}
