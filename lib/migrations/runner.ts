import type { QueryInterface, Sequelize, Transaction } from 'sequelize';
import { installedLibraryVersion } from '../catalog';
import { SetupError } from '../errors';

/** A migration usable both by Umzug v3 (`{ name, up, down }`) and, re-exported, by sequelize-cli. */
export interface LibraryMigration {
  name: string;
  up: (...args: unknown[]) => Promise<void>;
  down: (...args: unknown[]) => Promise<void>;
  /** Like up, for install(): resolves whether it ran (false: the database was at its version already). */
  apply?: (...args: unknown[]) => Promise<boolean>;
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

/** Library migrations of the same database take turns (two deploys, or two boots calling install()). */
const INSTALL_LOCK_SQL = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgpubsub'), pg_catalog.hashtext('install'))";

/** Runs statements in order in one transaction, so a failed migration leaves nothing half-done. */
export async function runInTransaction(
  args: readonly unknown[],
  statements: readonly string[],
  before?: (sequelize: Sequelize, transaction: Transaction) => Promise<void>,
): Promise<void> {
  const sequelize = sequelizeFromMigrationArgs(args);
  await sequelize.transaction(async (transaction) => {
    if (before) await before(sequelize, transaction);
    for (const sql of statements) await sequelize.query(sql, { transaction, raw: true });
  });
}

/**
 * The up of library migration `version`: under the install lock, and only if the database is not
 * at that version or later already, so that install() and a migration runner can both apply the
 * library's migrations, in any order and concurrently. Resolves whether it ran.
 */
export async function runLibraryStep(args: readonly unknown[], version: number, statements: readonly string[]): Promise<boolean> {
  const sequelize = sequelizeFromMigrationArgs(args);
  return sequelize.transaction(async (transaction) => {
    await sequelize.query(INSTALL_LOCK_SQL, { transaction, raw: true });
    if (await installedLibraryVersion(sequelize, transaction) >= version) return false;
    for (const sql of statements) await sequelize.query(sql, { transaction, raw: true });
    return true;
  });
}

/**
 * Library migration `version` as both runners take it: `{ name, up, down }` for Umzug v3 (and, as
 * the module's own exports, for a sequelize-cli stub), plus `apply` for install().
 */
export function libraryStep(version: number, name: string, upSql: readonly string[], downSql: readonly string[]): Required<LibraryMigration> {
  const apply = (...args: unknown[]) => runLibraryStep(args, version, upSql);
  return {
    name,
    apply,
    /** Accepts sequelize-cli's `(queryInterface, Sequelize)` and Umzug v3's `({ context })`. */
    up: async (...args: unknown[]) => { await apply(...args); },
    down: (...args: unknown[]) => runInTransaction(args, downSql),
  };
}
