import { baseline } from './baseline';
import { claimByDue } from './claim-by-due';
import { inbox } from './inbox';
import { claimPlan } from './claim-plan';
import { DEFAULT_SCHEMA, LIBRARY_VERSION } from '../objects';
import { LibraryVersionError, MissingTableError } from '../../errors';
import type { LibraryMigration, LibraryMigrationModule, LibraryMigrationOptions } from './runner';

/**
 * The library's own schema migrations, in order, for a programmatic Umzug v3 instance.
 * Their names match the sequelize-cli stub files, so both runners record the same rows in SequelizeMeta.
 */
export const migrations: readonly LibraryMigration[] = [baseline, claimByDue, inbox, claimPlan];

const MODULES: readonly LibraryMigrationModule[] = [baseline, claimByDue, inbox, claimPlan];

/**
 * The library's migrations for another schema or migration storage table, for Umzug v3.
 *
 * @example
 * new Umzug({ migrations: [...libraryMigrations({ schema: 'app_pubsub', storage: { tableName: 'migrations' } }), ...appMigrations], … })
 */
export function libraryMigrations(options: LibraryMigrationOptions = {}): LibraryMigration[] {
  return MODULES.map((migration) => migration.withOptions(options));
}

/** Each library migration: the version it brings the database to, and the module a sequelize-cli stub requires. */
export const LIBRARY_STEPS: ReadonlyArray<{ version: number; name: string; module: string }> = [
  { version: 1, name: baseline.name, module: 'sequelize-pgpubsub/migrations/baseline' },
  { version: 2, name: claimByDue.name, module: 'sequelize-pgpubsub/migrations/claim-by-due' },
  { version: 3, name: inbox.name, module: 'sequelize-pgpubsub/migrations/inbox' },
  { version: 4, name: claimPlan.name, module: 'sequelize-pgpubsub/migrations/claim-plan' },
];

export type { LibraryMigration, LibraryMigrationModule, LibraryMigrationOptions } from './runner';

/**
 * The sequelize-cli stubs of the library migrations after `version`, for messages:
 * `name (module.exports = require('…'))`, … (with `.withOptions({ schema })` for another schema
 * than the default).
 */
export function stubsAfter(version: number, schema: string = DEFAULT_SCHEMA): string {
  return LIBRARY_STEPS.filter((step) => step.version > version)
    .map((step) => `${step.name} (${stubExport(step, schema)})`).join(', ');
}

/** A library migration's sequelize-cli stub: `module.exports = require('…')` (with `.withOptions({ schema })` off the default schema). */
export function stubExport(step: { module: string }, schema: string = DEFAULT_SCHEMA): string {
  const options = schema !== DEFAULT_SCHEMA ? `.withOptions({ schema: '${schema}' })` : '';
  return `module.exports = require('${step.module}')${options}`;
}

/**
 * Why `who` (e.g. 'listen') cannot run on a database whose library objects are at version `found`,
 * naming the migrations to run; null when `found` is this code's version.
 */
export function libraryVersionProblem(
  found: number,
  who: string,
  schema: string = DEFAULT_SCHEMA,
  elsewhere: readonly string[] = [],
): MissingTableError | LibraryVersionError | null {
  if (found === LIBRARY_VERSION) return null;
  const fix = `Add the library's migration stubs ${stubsAfter(found, schema)} to your migrations (npx pgpubsub migration:generate writes them) and run npx sequelize-cli db:migrate, `
    + 'or run the exported migrations with Umzug, or call sequelize.pgpubsub.install()';
  if (found === 0) {
    const hint = elsewhere.length > 0
      ? ` (this database has it in schema ${elsewhere.join(', ')}: is use(pgpubsub, { schema }) set to the schema your migrations installed?)`
      : '';
    return new MissingTableError('PGPUBSUB_NOT_INSTALLED', `${who}: the library's objects (schema ${schema}) are not installed in this database${hint}. ${fix}`);
  }
  if (found < LIBRARY_VERSION) {
    return new LibraryVersionError(found, LIBRARY_VERSION, `${who}: this database has the library's objects at version ${found}; this sequelize-pgpubsub runs on version ${LIBRARY_VERSION}. ${fix}`);
  }
  return new LibraryVersionError(found, LIBRARY_VERSION, `${who}: this database has the library's objects at version ${found}, newer than this sequelize-pgpubsub knows (${LIBRARY_VERSION}). `
    + 'Upgrade sequelize-pgpubsub in this app, or undo the newer library migrations');
}

