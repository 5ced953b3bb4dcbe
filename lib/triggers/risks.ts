/**
 * What a channel's trigger would run with the library owner's rights that another role wrote. The
 * trigger functions are SECURITY DEFINER (a writer needs no right on the library's tables), so
 * whatever they call runs as the owner: a cast to json from a column's type (to_jsonb() calls it),
 * and the functions a `when.sql` condition calls. A role that owns such a type, cast or function
 * could make one INSERT run its code with those rights. `pgpubsub triggers check` and `sync` warn
 * about each; superusers' objects are not flagged (they can do anything anyway).
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import type { ModelChannel } from '../channels/channel';
import type { LibraryObjects } from '../db/objects';
import { LIBRARY_QUERY, qualified } from '../db/sql-text';

/** One object a channel's trigger would run as the library's owner, owned by another role. */
export interface TriggerRisk {
  channel: string;
  /** The channel's table, schema-qualified. */
  table: string;
  kind: 'type' | 'cast' | 'function';
  /** The type, cast or function, as PostgreSQL names it. */
  object: string;
  /** The role that owns it. */
  owner: string;
  /** What it means and what to do, in a sentence. */
  message: string;
}

/** A qualified function name called in a condition: `schema.name(` (unqualified ones resolve in pg_catalog only). */
const CALLED = /((?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)\s*\.\s*(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*))\s*\(/g;

/** The risks of each channel's trigger (one query per table, one per condition that calls a qualified function). */
export async function triggerRisks(sequelize: Sequelize, objects: LibraryObjects, channels: readonly ModelChannel[]): Promise<TriggerRisk[]> {
  const risks: TriggerRisk[] = [];
  const select = <R extends object>(sql: string, bind: unknown[]) => sequelize.query<R>(sql, { bind, type: QueryTypes.SELECT, ...LIBRARY_QUERY });
  const owner = `(SELECT n.nspowner FROM pg_catalog.pg_namespace AS n WHERE n.nspname = $1)`;
  for (const channel of channels) {
    const table = qualified(channel.schema, channel.table);
    const found = await select<{ kind: 'type' | 'cast'; object: string; owner: string; column: string }>(
      `WITH cols AS (
         SELECT a.attname, a.atttypid AS type FROM pg_catalog.pg_attribute AS a
          WHERE a.attrelid = pg_catalog.to_regclass($2) AND a.attnum > 0 AND NOT a.attisdropped
       ), types AS (
         SELECT cols.attname, cols.type FROM cols
         UNION SELECT cols.attname, t.typelem FROM cols JOIN pg_catalog.pg_type AS t ON t.oid = cols.type WHERE t.typelem <> 0
         UNION SELECT cols.attname, t.typbasetype FROM cols JOIN pg_catalog.pg_type AS t ON t.oid = cols.type WHERE t.typbasetype <> 0
       )
       SELECT 'type' AS kind, pg_catalog.format_type(t.oid, NULL) AS object, r.rolname AS owner, types.attname AS column
         FROM types JOIN pg_catalog.pg_type AS t ON t.oid = types.type JOIN pg_catalog.pg_roles AS r ON r.oid = t.typowner
        WHERE t.typowner <> ${owner} AND NOT r.rolsuper
       UNION ALL
       SELECT 'cast', pg_catalog.format('%s AS %s WITH FUNCTION %s', c.castsource::regtype, c.casttarget::regtype, p.oid::regprocedure), r.rolname, types.attname
         FROM types JOIN pg_catalog.pg_cast AS c ON c.castsource = types.type
         JOIN pg_catalog.pg_proc AS p ON p.oid = c.castfunc JOIN pg_catalog.pg_roles AS r ON r.oid = p.proowner
        WHERE p.proowner <> ${owner} AND NOT r.rolsuper
        ORDER BY 4, 1, 2`,
      [objects.schema, table],
    );
    for (const row of found) {
      risks.push({
        channel: channel.name, table, kind: row.kind, object: row.object, owner: row.owner,
        message: row.kind === 'type'
          ? `column ${row.column} of ${table} is of type ${row.object}, owned by role ${row.owner}: a cast that role creates from it runs in channel '${channel.name}''s trigger with the library owner's rights. Make the library's owner own the type, or leave the column out (exclude: ['${row.column}'])`
          : `the cast ${row.object}, owned by role ${row.owner}, runs in channel '${channel.name}''s trigger (column ${row.column}) with the library owner's rights: drop it, make the library's owner own it, or leave the column out`,
      });
    }
    const called = [...new Set([...(channel.condition ?? '').matchAll(CALLED)].map((match) => match[1].replace(/\s+/g, '')))];
    if (called.length === 0) continue;
    const functions = await select<{ object: string; owner: string }>(
      `SELECT DISTINCT p.oid::regprocedure::text AS object, r.rolname AS owner
         FROM pg_catalog.unnest($2::text[]) AS called(name)
         JOIN pg_catalog.pg_proc AS p ON p.oid = ANY (SELECT f.oid FROM pg_catalog.pg_proc AS f JOIN pg_catalog.pg_namespace AS s ON s.oid = f.pronamespace
                                                      WHERE pg_catalog.quote_ident(s.nspname) || '.' || pg_catalog.quote_ident(f.proname) = called.name
                                                         OR s.nspname || '.' || f.proname = called.name)
         JOIN pg_catalog.pg_roles AS r ON r.oid = p.proowner
        WHERE p.proowner <> ${owner} AND NOT r.rolsuper ORDER BY 1`,
      [objects.schema, called],
    );
    for (const row of functions) {
      risks.push({
        channel: channel.name, table, kind: 'function', object: row.object, owner: row.owner,
        message: `channel '${channel.name}''s when.sql calls ${row.object}, owned by role ${row.owner}: whatever it runs, it runs with the library owner's rights. Make the library's owner own it, or call only functions it owns`,
      });
    }
  }
  return risks;
}
