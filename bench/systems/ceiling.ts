import path from 'node:path';
import { insertAuthors, migrateApp } from '../support/db';
import { startChildren } from './children';
import type { QueueSystem, StartOptions } from './types';

const WORKER = path.join(__dirname, '..', 'workers', 'ceiling-worker.ts');

/**
 * The ceiling loop over our own notification table (filled by our trigger, like ours), N plain
 * processes, batch 100; with `savepoints`, a SAVEPOINT/RELEASE around each message's insert; with
 * `sequelize`, every statement through `sequelize.query` in a Sequelize transaction.
 */
export function ceiling(options: { savepoints: boolean; batchSize?: number; sequelize?: boolean }): QueueSystem {
  const { savepoints, batchSize = 100, sequelize = false } = options;
  return {
    key: sequelize ? 'ceiling-sequelize' : savepoints ? 'ceiling-savepoint' : 'ceiling',
    label: sequelize ? 'ceiling loop through sequelize.query' : savepoints ? 'ceiling loop, savepoint/message' : 'ceiling loop (plain pg)',
    prepare: migrateApp,
    async start(url: string, processes: number, startOptions: StartOptions = {}) {
      const workers = await startChildren(WORKER, processes, {
        DATABASE_URL: startOptions.workerUrl ?? url, BATCH_SIZE: String(batchSize), SAVEPOINTS: savepoints ? '1' : '0', VIA: sequelize ? 'sequelize' : 'pg',
      }, { nodeArgs: startOptions.nodeArgs });
      return { ...workers, go: () => { for (const child of workers.children) child.child.stdin!.write('go\n'); } };
    },
    produce: insertAuthors,
  };
}
