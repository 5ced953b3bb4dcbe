import type { Sequelize } from 'sequelize';
import { MIGRATION_META_TABLE } from './db-objects';
import type { LibraryMigration } from './migrations/runner';
import { quoteLiteral } from './sql-text';
import type { TriggerSpec } from './trigger-render';
import { stateHash, syncTriggers } from './trigger-reconcile';

/**
 * Name prefix of the Umzug trigger step; not a schema version, so db_version skips it. Frozen:
 * installed databases' pgpubsub_refresh_db_version() has it in its body.
 */
export const TRIGGER_STEP_PREFIX = 'pgpubsub-triggers-';

/**
 * An Umzug v3 step that syncs the triggers to `desired`. Its name carries a hash of the rendered
 * triggers, so Umzug runs it again whenever a definition changes. `down` removes every managed trigger.
 */
export function triggerStep(sequelize: Sequelize, desired: readonly TriggerSpec[]): LibraryMigration {
  const name = `${TRIGGER_STEP_PREFIX}${stateHash(desired)}`;
  return {
    name,
    up: async () => {
      await syncTriggers(sequelize, desired);
      // Forget earlier trigger steps, so returning to an earlier definition (a revert) runs its step again.
      await forgetOtherTriggerSteps(sequelize, name);
    },
    down: async () => { await syncTriggers(sequelize, []); },
  };
}

async function forgetOtherTriggerSteps(sequelize: Sequelize, keep: string): Promise<void> {
  await sequelize.query(
    `DO $$ BEGIN
       IF pg_catalog.to_regclass('${MIGRATION_META_TABLE.replace(/'/g, "''")}') IS NOT NULL THEN
         DELETE FROM ${MIGRATION_META_TABLE} WHERE name LIKE '${TRIGGER_STEP_PREFIX}%' AND name <> ${quoteLiteral(keep)};
       END IF;
     END $$`,
  );
}
