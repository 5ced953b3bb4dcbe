/** Reconciles the database with the rendered triggers: compares (ls/check), installs, replaces and prunes, under one advisory lock. */
import type { Sequelize, Transaction } from 'sequelize';
import type { ModelChannel } from '../channels/channel';
import { MissingTableError } from '../errors';
import { installedObjects, missingRelations } from '../db/catalog';
import type { LibraryObjects } from '../db/objects';
import { type TriggerSpec, labelLibrary, renderTrigger, uninstallStatements } from './render';
import { qualified, shortHash } from '../db/sql-text';
import { SYNC_LOCK_SQL } from '../db/protocol';

export type TriggerStatus = 'INSTALLED' | 'OUTDATED' | 'UNINSTALLED' | 'PRUNE';

/** One line of `pgpubsub triggers ls`. */
export interface TriggerState {
  status: TriggerStatus;
  schema: string;
  table: string;
  name: string;
  channel: string | null;
  event: string | null;
  model: string | null;
}

/**
 * Serialises every trigger sync on a database: two deploys migrating at once take turns. The key
 * ('trigger-sync', lib/db/protocol.ts) is frozen: generated migrations take the same lock by its text.
 */
export { SYNC_LOCK_SQL };

/** The triggers the definitions call for, in a stable order. */
export function desiredTriggers(channels: readonly ModelChannel[], objects: LibraryObjects): TriggerSpec[] {
  return channels
    .flatMap((channel) => channel.events.map((event) => renderTrigger(channel, event, objects)))
    .sort((a, b) => (a.schema + a.table + a.name).localeCompare(b.schema + b.table + b.name));
}

/** One hash over the whole desired state; names the Umzug trigger step. */
export function stateHash(specs: readonly Pick<TriggerSpec, 'schema' | 'name' | 'hash'>[]): string {
  return shortHash(JSON.stringify(specs.map((spec) => [spec.schema, spec.name, spec.hash])), 12);
}

const key = (schema: string, name: string) => `${schema}\0${name}`;

/**
 * Compares desired triggers with the database: one state per trigger, desired or installed. An
 * installed trigger of another library (one in another schema: another app in the same database)
 * is none of this one's business.
 */
export async function triggerStates(
  sequelize: Sequelize,
  desired: readonly TriggerSpec[],
  objects: LibraryObjects,
  scope: { schemas?: readonly string[] } = {},
  transaction?: Transaction,
): Promise<TriggerState[]> {
  const found = (await installedObjects(sequelize, transaction)).filter((o) => !scope.schemas || scope.schemas.includes(o.schema));
  const installed = new Map(found.map((o) => [key(o.schema, o.name), o]));
  const states: TriggerState[] = desired.map((spec) => {
    const found = installed.get(key(spec.schema, spec.name));
    installed.delete(key(spec.schema, spec.name));
    const current = found?.table === spec.table && found.label?.hash === spec.hash
      && found.functionLabel?.hash === spec.hash && found.body === spec.body;
    return {
      status: !found?.table ? 'UNINSTALLED' : current ? 'INSTALLED' : 'OUTDATED',
      schema: spec.schema,
      table: spec.table,
      name: spec.name,
      channel: spec.channel,
      event: spec.event,
      model: spec.model,
    };
  });
  for (const orphan of installed.values()) {
    const label = orphan.label ?? orphan.functionLabel;
    if (label && labelLibrary(label) !== objects.schema) continue;
    states.push({
      status: 'PRUNE',
      schema: orphan.schema,
      table: orphan.table ?? '',
      name: orphan.name,
      channel: label?.channel ?? null,
      event: label?.event ?? null,
      model: label?.model ?? null,
    });
  }
  return states;
}

export interface SyncResult {
  installed: string[];
  replaced: string[];
  pruned: string[];
}

/**
 * Brings the database to the desired triggers in one transaction under an advisory lock:
 * installs missing ones, replaces outdated ones, and (unless `prune: false`) drops managed
 * triggers no definition asks for, with their functions. Triggers it does not manage are never touched.
 */
export async function syncTriggers(
  sequelize: Sequelize,
  desired: readonly TriggerSpec[],
  objects: LibraryObjects,
  options: { prune?: boolean; install?: boolean; schemas?: readonly string[] } = {},
): Promise<SyncResult> {
  const { prune = true, install = true, schemas } = options;
  return sequelize.transaction(async (transaction) => {
    await sequelize.query(SYNC_LOCK_SQL, { transaction });
    await assertTablesExist(sequelize, desired, transaction);
    const states = await triggerStates(sequelize, desired, objects, { schemas }, transaction);
    const bySpec = new Map(desired.map((spec) => [key(spec.schema, spec.name), spec]));
    const result: SyncResult = { installed: [], replaced: [], pruned: [] };
    for (const state of states) {
      const spec = bySpec.get(key(state.schema, state.name));
      let statements: string[] = [];
      if (install && spec && state.status !== 'INSTALLED') {
        statements = spec.install;
        (state.status === 'UNINSTALLED' ? result.installed : result.replaced).push(state.name);
      } else if (prune && state.status === 'PRUNE') {
        statements = state.table
          ? uninstallStatements(state.schema, state.table, state.name)
          : [`DROP FUNCTION IF EXISTS ${qualified(state.schema, state.name)}()`];
        result.pruned.push(state.name);
      }
      for (const sql of statements) await sequelize.query(sql, { transaction });
    }
    return result;
  });
}

async function assertTablesExist(sequelize: Sequelize, desired: readonly TriggerSpec[], transaction: Transaction) {
  const tables = [...new Map(desired.map((spec) => [key(spec.schema, spec.table), spec])).values()];
  if (tables.length === 0) return;
  const missingNames = new Set(await missingRelations(sequelize, tables.map((spec) => qualified(spec.schema, spec.table)), transaction));
  const missing = tables.filter((spec) => missingNames.has(qualified(spec.schema, spec.table)));
  if (missing.length > 0) {
    throw new MissingTableError(
      'PGPUBSUB_TABLE_MISSING',
      missing.map((spec) => `channel '${spec.channel}' on model ${spec.model}: table ${qualified(spec.schema, spec.table)} does not exist`).join('\n')
        + '\nCreate the tables first (run your migrations, e.g. npx sequelize-cli db:migrate), then sync the triggers',
    );
  }
}

/** Statements that move a database from one frozen trigger state to another (used by generated migrations). */
export function transitionStatements(from: readonly TriggerSpec[], to: readonly TriggerSpec[]): string[] {
  const before = new Map(from.map((spec) => [key(spec.schema, spec.name), spec]));
  const after = new Map(to.map((spec) => [key(spec.schema, spec.name), spec]));
  return [
    ...from.filter((spec) => !after.has(key(spec.schema, spec.name))).flatMap((spec) => spec.uninstall),
    ...to.filter((spec) => before.get(key(spec.schema, spec.name))?.hash !== spec.hash).flatMap((spec) => spec.install),
  ];
}

