import type { Sequelize } from 'sequelize';
import { DEFAULT_MIGRATION_STORAGE, type LibraryObjects } from '../db/objects';
import { qualified } from '../db/sql-text';
import type { LibraryMigration } from '../db/migrations/runner';
import { quoteLiteral } from '../db/sql-text';
import type { TriggerSpec } from './render';
import { stateHash, syncTriggers } from './reconcile';
import { TRIGGER_STEP_PREFIX } from '../db/protocol';

/**
 * Name prefix of the Umzug trigger step; not a schema version, so db_version skips it. Installed
 * databases' refresh_db_version() has it in its body (lib/db/protocol.ts).
 */
export { TRIGGER_STEP_PREFIX };

/**
 * An Umzug v3 step that syncs the triggers to `desired`. Its name carries a hash of the rendered
 * triggers, so Umzug runs it again whenever a definition changes. `down` removes every managed trigger.
 */
export function triggerStep(sequelize: Sequelize, desired: readonly TriggerSpec[], objects: LibraryObjects): LibraryMigration {
  const name = `${TRIGGER_STEP_PREFIX}${stateHash(desired)}`;
  return {
    name,
    up: async () => {
      await syncTriggers(sequelize, desired, objects);
      // Forget earlier trigger steps, so returning to an earlier definition (a revert) runs its step again.
      await forgetOtherTriggerSteps(sequelize, objects, name);
    },
    down: async () => { await syncTriggers(sequelize, [], objects); },
  };
}

const DEFAULT_STORAGE = qualified(DEFAULT_MIGRATION_STORAGE.schema, DEFAULT_MIGRATION_STORAGE.tableName);

/**
 * Deletes the other trigger steps' rows from the migration storage table: the tables the library's
 * db_version trigger is on (the library's migrations put it on the storage table they ran with),
 * else public."SequelizeMeta".
 */
async function forgetOtherTriggerSteps(sequelize: Sequelize, objects: LibraryObjects, keep: string): Promise<void> {
  await sequelize.query(
    `DO $$
     DECLARE
       storage regclass;
     BEGIN
       FOR storage IN
         SELECT t.tgrelid::regclass FROM pg_catalog.pg_trigger AS t
          WHERE t.tgfoid = pg_catalog.to_regprocedure(${quoteLiteral(`${objects.refreshDbVersionTriggerFunction}()`)})
         UNION
         SELECT pg_catalog.to_regclass(${quoteLiteral(DEFAULT_STORAGE)})
          WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger AS t
                             WHERE t.tgfoid = pg_catalog.to_regprocedure(${quoteLiteral(`${objects.refreshDbVersionTriggerFunction}()`)}))
       LOOP
         CONTINUE WHEN storage IS NULL;
         EXECUTE pg_catalog.format('DELETE FROM %s WHERE name LIKE %L AND name <> %L', storage, ${quoteLiteral(`${TRIGGER_STEP_PREFIX}%`)}, ${quoteLiteral(keep)});
       END LOOP;
     END $$`,
  );
}
