/**
 * What a fresh install of the library leaves in its schema, as reviewable SQL: lib/db/schema.sql.
 * Read from the catalog (not pg_dump, whose output changes between PostgreSQL versions and needs
 * its binary), in a fixed order, with the owner left out (the installing role differs per server).
 *
 *   npm run schema:dump            rewrites lib/db/schema.sql from a fresh install
 *   npm run schema:dump -- <file>  writes it to <file> instead
 *   (test/schema.test.ts fails while a fresh install differs from the file)
 */
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { connect } from './example-app';
import { createEmptyDatabase, dropDatabase, scratchDatabaseName, startPostgres } from './postgres';
import { migrations } from '../lib/db/migrations/index';

export const SCHEMA_FILE = path.join(__dirname, '..', 'lib', 'db', 'schema.sql');

const HEADER = `-- What a fresh install of sequelize-pgpubsub leaves in its schema (the default, pgpubsub), read
-- from the catalog: review schema changes here. Not run by anything: the library migrations in
-- lib/db/migrations/ install it. Rewritten by \`npm run schema:dump\`; test/schema.test.ts fails while
-- a fresh install differs from it.
`;

type Row = Record<string, string>;

async function rows(client: Client, text: string, schema: string): Promise<Row[]> {
  return (await client.query<Row>(text, [schema])).rows;
}

/** GRANTs of an object's ACL to other roles than its owner (PUBLIC as PUBLIC), and a REVOKE when PUBLIC lost a default right. */
const ACL = `(SELECT pg_catalog.string_agg(pg_catalog.format('GRANT %s ON %s %s TO %s;', a.privilege_type, $KIND, $NAME,
                CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(a.grantee::regrole::text) END), E'\\n'
                ORDER BY a.grantee::regrole::text, a.privilege_type)
          FROM pg_catalog.aclexplode($ACL) AS a WHERE a.grantee <> $OWNER)`;
const acl = (kind: string, name: string, column: string, owner: string) => ACL.replace('$KIND', kind).replace('$NAME', name).replace('$ACL', column).replace('$OWNER', owner);

/** The library's schema as SQL text, in a fixed order. */
export async function dumpSchema(client: Client, schema = 'pgpubsub'): Promise<string> {
  const out: string[] = [HEADER];
  const [ns] = await rows(client, `SELECT pg_catalog.obj_description(n.oid, 'pg_namespace') AS comment,
      ${acl("'SCHEMA'", 'pg_catalog.quote_ident(n.nspname)', 'coalesce(n.nspacl, pg_catalog.acldefault(\'n\', n.nspowner))', 'n.nspowner')} AS grants
    FROM pg_catalog.pg_namespace AS n WHERE n.nspname = $1`, schema);
  if (!ns) throw new Error(`schema ${schema} does not exist: install the library first`);
  out.push(`CREATE SCHEMA ${schema};`, `COMMENT ON SCHEMA ${schema} IS ${quote(ns.comment)};`, `-- grants other than the owner's: ${ns.grants ?? 'none'}`, '');

  const tables = await rows(client, `SELECT c.oid, c.relname AS name, pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
      pg_catalog.array_to_string(c.reloptions, ', ') AS options,
      ${acl("'TABLE'", "pg_catalog.format('%I.%I', n.nspname, c.relname)", 'coalesce(c.relacl, pg_catalog.acldefault(\'r\', c.relowner))', 'c.relowner')} AS grants,
      (SELECT pg_catalog.string_agg(pg_catalog.format('  %I %s%s%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')), E',\\n' ORDER BY a.attnum)
         FROM pg_catalog.pg_attribute AS a LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
      (SELECT pg_catalog.string_agg(pg_catalog.format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s;', n.nspname, c.relname, k.conname, pg_catalog.pg_get_constraintdef(k.oid)), E'\\n' ORDER BY k.conname)
         FROM pg_catalog.pg_constraint AS k WHERE k.conrelid = c.oid AND k.contype <> 'n') AS constraints,  -- 'n': NOT NULL, as a constraint since PostgreSQL 18
      (SELECT pg_catalog.string_agg(pg_catalog.pg_get_indexdef(i.indexrelid) || ';', E'\\n' ORDER BY x.relname)
         FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS x ON x.oid = i.indexrelid
        WHERE i.indrelid = c.oid AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint AS k WHERE k.conindid = i.indexrelid)) AS indexes,
      (SELECT pg_catalog.string_agg(pg_catalog.pg_get_triggerdef(t.oid) || ';', E'\\n' ORDER BY t.tgname)
         FROM pg_catalog.pg_trigger AS t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) AS triggers
    FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
   WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname`, schema);
  for (const t of tables) {
    out.push(`CREATE TABLE ${schema}.${t.name} (\n${t.columns}\n)${t.options ? ` WITH (${t.options})` : ''};`);
    for (const part of [t.constraints, t.indexes, t.triggers]) if (part) out.push(part);
    out.push(`COMMENT ON TABLE ${schema}.${t.name} IS ${quote(t.comment)};`);
    if (t.grants) out.push(t.grants);
    out.push('');
  }

  const sequences = await rows(client, `SELECT c.relname AS name, pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
      s.seqstart AS start, s.seqmin AS min, s.seqmax AS max, s.seqincrement AS increment, s.seqcycle AS cycle, pg_catalog.format_type(s.seqtypid, NULL) AS type,
      (SELECT pg_catalog.format('%I.%I', dn.nspname, dc.relname) FROM pg_catalog.pg_depend AS d JOIN pg_catalog.pg_class AS dc ON dc.oid = d.refobjid
         JOIN pg_catalog.pg_namespace AS dn ON dn.oid = dc.relnamespace WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') AND d.refclassid = 'pg_catalog.pg_class'::regclass) AS owned_by,
      ${acl("'SEQUENCE'", "pg_catalog.format('%I.%I', n.nspname, c.relname)", 'coalesce(c.relacl, pg_catalog.acldefault(\'s\', c.relowner))', 'c.relowner')} AS grants
    FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace JOIN pg_catalog.pg_sequence AS s ON s.seqrelid = c.oid
   WHERE n.nspname = $1 AND c.relkind = 'S' ORDER BY c.relname`, schema);
  for (const s of sequences) {
    out.push(`CREATE SEQUENCE ${schema}.${s.name} AS ${s.type} INCREMENT ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} START ${s.start}${s.cycle ? ' CYCLE' : ' NO CYCLE'};`
      + (s.owned_by ? ` -- owned by ${s.owned_by}` : ''));
    if (s.comment) out.push(`COMMENT ON SEQUENCE ${schema}.${s.name} IS ${quote(s.comment)};`);
    if (s.grants) out.push(s.grants);
    out.push('');
  }

  const functions = await rows(client, `SELECT pg_catalog.pg_get_functiondef(p.oid) AS definition, pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,
      pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) AS signature,
      ${acl("'FUNCTION'", "pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))", 'coalesce(p.proacl, pg_catalog.acldefault(\'f\', p.proowner))', 'p.proowner')} AS grants
    FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
   WHERE n.nspname = $1 ORDER BY p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)`, schema);
  for (const f of functions) {
    out.push(`${f.definition.trimEnd()};`);
    if (f.comment) out.push(`COMMENT ON FUNCTION ${f.signature} IS ${quote(f.comment)};`);
    out.push(`-- grants other than the owner's: ${f.grants ?? 'none'}`, '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function quote(text: string | null): string {
  return text === null ? 'NULL' : `'${text.replace(/'/g, "''")}'`;
}

/** `npm run schema:dump [-- file]`: installs the library in a scratch database and rewrites lib/db/schema.sql (or writes `file`). */
async function main(file = SCHEMA_FILE): Promise<void> {
  const server = await startPostgres();
  const name = scratchDatabaseName('t', 'schema');
  try {
    const url = await createEmptyDatabase(server.url, name);
    const sequelize = connect(url);
    try {
      for (const migration of migrations) await migration.up({ context: sequelize.getQueryInterface() });
    } finally {
      await sequelize.close();
    }
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      fs.writeFileSync(file, await dumpSchema(client));
    } finally {
      await client.end();
    }
    console.log(`wrote ${path.relative(process.cwd(), file)}`);
  } finally {
    await dropDatabase(server.url, name);
    await server.stop();
  }
}

if (require.main === module) {
  main(process.argv[2] ? path.resolve(process.argv[2]) : undefined).catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
