import type { QueryInterface, Sequelize } from 'sequelize';
import { installedOn } from '../../installed';
import { installedLibraryVersion } from '../catalog';
import { DEFAULT_MIGRATION_STORAGE, DEFAULT_SCHEMA, type LibraryObjects, checkSchemaName, libraryObjects } from '../objects';
import { SetupError } from '../../errors';
import { INSTALL_LOCK_SQL } from '../protocol';
import { qualified } from '../sql-text';

/** A migration usable both by Umzug v3 (`{ name, up, down }`) and, re-exported, by sequelize-cli. */
export interface LibraryMigration {
  name: string;
  up: (...args: unknown[]) => Promise<void>;
  down: (...args: unknown[]) => Promise<void>;
  /** Like up, for install(): resolves whether it ran (false: the database was at its version already). */
  apply?: (...args: unknown[]) => Promise<boolean>;
}

/** Where a library migration puts the library, and where the app records its migrations. */
export interface LibraryMigrationOptions {
  /**
   * The library's schema (default `pgpubsub`, or the schema of `use(pgpubsub, { schema })` when the
   * migration runs on that Sequelize instance). Give every library migration the same one.
   */
  schema?: string;
  /**
   * The table the migration runner records applied migrations in, which keeps `db_version()`
   * current. Default: sequelize-cli's `migrationStorageTableName`/`migrationStorageTableSchema`
   * when sequelize-cli runs it, else `public."SequelizeMeta"`. Pass Umzug's
   * `SequelizeStorage({ tableName, schema })` values here.
   */
  storage?: { tableName?: string; schema?: string };
}

/** A library migration module: the migration itself, and the same migration with other options. */
export interface LibraryMigrationModule extends Required<LibraryMigration> {
  /**
   * This migration for another schema or migration storage table.
   *
   * @example
   * // migrations/00000000000001-pgpubsub-baseline.js
   * module.exports = require('sequelize-pgpubsub/migrations/baseline').withOptions({ schema: 'app_pubsub' });
   */
  withOptions(options: LibraryMigrationOptions): LibraryMigrationModule;
}

/** What a library migration works on, resolved when it runs. */
export interface MigrationTarget {
  objects: LibraryObjects;
  /** The migration storage table, qualified and quoted. */
  storage: string;
}

function isSequelize(value: unknown): value is Sequelize {
  return typeof value === 'object' && value !== null && typeof (value as Sequelize).getQueryInterface === 'function'
    && typeof (value as Sequelize).transaction === 'function';
}

function isQueryInterface(value: unknown): value is QueryInterface {
  return typeof value === 'object' && value !== null && isSequelize((value as QueryInterface).sequelize);
}

/**
 * Finds the Sequelize instance in a migration's arguments, whichever runner called it:
 * sequelize-cli passes `(queryInterface, Sequelize)`, Umzug v3 passes `({ name, context })`
 * where context is a QueryInterface or a Sequelize instance.
 */
function sequelizeFromMigrationArgs(args: readonly unknown[]): Sequelize {
  const first = args[0];
  if (isQueryInterface(first)) return first.sequelize;
  if (isSequelize(first)) return first;
  const context = (first as { context?: unknown } | undefined)?.context;
  if (isQueryInterface(context)) return context.sequelize;
  if (isSequelize(context)) return context;
  throw new SetupError(
    'PGPUBSUB_MIGRATION_ARGS',
    'pgpubsub migration: could not find a Sequelize instance in the arguments. '
      + 'Run it with sequelize-cli, or with Umzug v3 using context: sequelize.getQueryInterface() (or the sequelize instance)',
  );
}

/**
 * Resolves options when the migration runs: the schema from the options, else from the plugin on
 * this Sequelize instance, else the default; the storage table from the options, else from
 * sequelize-cli's config (it passes its whole config to the Sequelize it creates), else the default.
 */
function resolveTarget(sequelize: Sequelize, options: LibraryMigrationOptions): MigrationTarget {
  const plugin = installedOn<{ schema?: string }>(sequelize);
  const schema = checkSchemaName(options.schema ?? plugin?.schema ?? DEFAULT_SCHEMA, 'pgpubsub migration');
  const cli = (sequelize as unknown as { options: object }).options as { migrationStorageTableName?: string; migrationStorageTableSchema?: string };
  const tableName = options.storage?.tableName ?? cli.migrationStorageTableName ?? DEFAULT_MIGRATION_STORAGE.tableName;
  const tableSchema = options.storage?.schema ?? cli.migrationStorageTableSchema ?? DEFAULT_MIGRATION_STORAGE.schema;
  return { objects: libraryObjects(schema), storage: qualified(tableSchema, tableName) };
}


/** A library migration's statements for a target. */
export type StepSql = (target: MigrationTarget) => { up: readonly string[]; down: readonly string[] };

/**
 * Library migration `version` as both runners take it: `{ name, up, down }` for Umzug v3 (and, as
 * the module's own exports, for a sequelize-cli stub), `apply` for install(), and `withOptions`.
 * Up runs under the install lock, and only if the library in the target schema is not at that
 * version or later already, so that install() and a migration runner can both apply the library's
 * migrations, in any order and concurrently. Each runs in one transaction, so a failed migration
 * leaves nothing half-done.
 */
export function libraryStep(version: number, name: string, sql: StepSql, options: LibraryMigrationOptions = {}): LibraryMigrationModule {
  const apply = async (...args: unknown[]) => {
    const sequelize = sequelizeFromMigrationArgs(args);
    const target = resolveTarget(sequelize, options);
    return sequelize.transaction(async (transaction) => {
      await sequelize.query(INSTALL_LOCK_SQL, { transaction, raw: true });
      if (await installedLibraryVersion(sequelize, target.objects.schema, transaction) >= version) return false;
      for (const statement of sql(target).up) await sequelize.query(statement, { transaction, raw: true });
      return true;
    });
  };
  return {
    name,
    apply,
    /** Accepts sequelize-cli's `(queryInterface, Sequelize)` and Umzug v3's `({ context })`. */
    up: async (...args: unknown[]) => { await apply(...args); },
    down: async (...args: unknown[]) => {
      const sequelize = sequelizeFromMigrationArgs(args);
      const target = resolveTarget(sequelize, options);
      await sequelize.transaction(async (transaction) => {
        for (const statement of sql(target).down) await sequelize.query(statement, { transaction, raw: true });
      });
    },
    withOptions: (more: LibraryMigrationOptions) => libraryStep(version, name, sql, { ...options, ...more }),
  };
}
