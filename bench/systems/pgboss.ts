import path from 'node:path';
import PgBoss from 'pg-boss';
import { dropChannelTriggers, insertAuthors, migrateApp, withClient } from '../support/db';
import { startChildren } from './children';
import type { QueueSystem, StartOptions } from './types';

const WORKER = path.join(__dirname, '..', 'workers', 'pgboss-worker.ts');
export const PGBOSS_QUEUE = 'post';

/** A pg-boss instance that neither maintains nor schedules: the parent only installs and enqueues. */
async function withBoss<T>(url: string, work: (boss: PgBoss) => Promise<T>): Promise<T> {
  const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false });
  boss.on('error', (error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
  await boss.start();
  try {
    return await work(boss);
  } finally {
    await boss.stop({ graceful: false, wait: true });
  }
}

/** pg-boss 10: N processes, one worker each (or `workers` subscriptions), batchSize 200; `ioMs` for W6. */
export function pgboss(options: { workers?: number; ioMs?: number; key?: string; label?: string } = {}): QueueSystem {
  return {
    key: options.key ?? 'pgboss',
    label: options.label ?? 'pg-boss 10, batchSize 200',
    async prepare(url: string) {
      await migrateApp(url);
      await dropChannelTriggers(url);
      // start() installs pg-boss's schema; version 10 needs each queue created before use.
      await withBoss(url, (boss) => boss.createQueue(PGBOSS_QUEUE));
    },
    start(url: string, processes: number, startOptions: StartOptions = {}) {
      return startChildren(WORKER, processes, {
        DATABASE_URL: startOptions.workerUrl ?? url, PB_IO_MS: String(options.ioMs ?? 0), PB_WORKERS: String(options.workers ?? 1),
      });
    },
    /** The authors (no trigger), then one job per author in one insert(): one statement, one commit. */
    async produce(url: string, n: number) {
      await insertAuthors(url, n);
      const ids = await withClient(url, async (c) => (await c.query<{ id: number }>('SELECT id FROM authors ORDER BY id')).rows.map((r) => r.id));
      await withBoss(url, (boss) => boss.insert(ids.map((authorId) => ({ name: PGBOSS_QUEUE, data: { authorId } }))));
    },
  };
}
