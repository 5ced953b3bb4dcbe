import fs from 'node:fs';
import path from 'node:path';
import { SetupError } from '../../errors';
import { PROTOCOL_PLACEHOLDERS } from '../protocol';
import { quoteIdent, quoteLiteral } from '../sql-text';
import { dbVersionTrigger, triggerOwnerRole } from '../objects';
import { type LibraryMigrationModule, type MigrationTarget, libraryStep } from './runner';

/**
 * Where the library migrations' SQL text lives: beside this module, in lib/ as in dist/ (the build
 * copies the .sql files).
 */
const SQL_DIR = __dirname;

const PLACEHOLDER = /\{\{([a-z_]+)\}\}/g;

/**
 * A library migration's SQL text with its placeholders filled: `{{schema}}` (the library's
 * schema, a quoted identifier), `{{storage}}` (the migration storage table, a string literal),
 * `{{db_version_trigger}}` (the name of the library's trigger on it, a string literal),
 * `{{trigger_owner}}` / `{{trigger_owner_name}}` (the role owning the trigger functions, as an
 * identifier and as a string literal) and the protocol's values (lib/db/protocol.ts). An unknown placeholder is an error, never left in.
 */
export function renderMigrationSql(text: string, target: MigrationTarget, file = 'migration'): string {
  const values: Record<string, string> = {
    ...PROTOCOL_PLACEHOLDERS,
    schema: quoteIdent(target.objects.schema),
    storage: quoteLiteral(target.storage),
    db_version_trigger: quoteLiteral(dbVersionTrigger(target.objects.schema)),
    trigger_owner: quoteIdent(triggerOwnerRole(target.objects.schema)),
    trigger_owner_name: quoteLiteral(triggerOwnerRole(target.objects.schema)),
  };
  return text.replace(PLACEHOLDER, (whole, name: string) => {
    if (!Object.hasOwn(values, name)) {
      throw new SetupError('PGPUBSUB_MIGRATION_SQL', `pgpubsub library migration ${file}: unknown placeholder ${whole}. Use one of ${Object.keys(values).map((key) => `{{${key}}}`).join(', ')}`);
    }
    return values[name];
  });
}

/** Reads `<dir>/<base>.up.sql` and `.down.sql`. */
export function readMigrationSql(base: string, dir: string = SQL_DIR): { up: string; down: string } {
  const read = (direction: 'up' | 'down') => fs.readFileSync(path.join(dir, `${base}.${direction}.sql`), 'utf8');
  return { up: read('up'), down: read('down') };
}

/**
 * Library migration `version` from SQL text (`<base>.up.sql` / `.down.sql` in `dir`): up runs the
 * text, then records the version; down forgets the version, then runs the down text. Both in the
 * one transaction libraryStep gives every migration, under the install lock.
 */
export function sqlTextStep(version: number, name: string, base: string, dir: string = SQL_DIR): LibraryMigrationModule {
  let text: { up: string; down: string } | undefined;
  return libraryStep(version, name, (target) => {
    text ??= readMigrationSql(base, dir);
    const record = `INSERT INTO ${target.objects.versionTable} (version, name) VALUES (${version}, ${quoteLiteral(name)})`;
    const forget = `DELETE FROM ${target.objects.versionTable} WHERE version = ${version}`;
    return {
      up: [renderMigrationSql(text.up, target, `${base}.up.sql`), record],
      down: [forget, renderMigrationSql(text.down, target, `${base}.down.sql`)],
    };
  });
}
