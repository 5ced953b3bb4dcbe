import path from 'node:path';
import PgBoss from 'pg-boss';
import { dropChannelTriggers, insertAuthors, migrateApp, withClient } from '../support/db';
import { nodeBinary } from '../../dev/versions';
import { ROOT, spawnProcess } from '../../dev/processes';
import { runOnNode, startChildren } from './children';
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

const WORKER_12 = path.join(__dirname, '..', 'workers', 'pgboss12-worker.ts');
const PEER_ADMIN = path.join(__dirname, '..', 'workers', 'peer-admin.ts');
/** pg-boss 12 (bench/package.json's alias) needs Node 22: its workers and steps run there. */
const PGBOSS_12 = 'pg-boss-12';

/**
 * pg-boss 12 in its exactly-once mode (`transactional: true` workers: the handler's writes and
 * the job's completion in one transaction), LISTEN/NOTIFY on, batchSize 200, one work() per process.
 */
export function pgboss12(options: { ioMs?: number; key?: string; label?: string } = {}): QueueSystem {
  const env = (url: string) => ({ DATABASE_URL: url, PEER_PACKAGE: PGBOSS_12, PB_IO_MS: String(options.ioMs ?? 0) });
  return {
    key: options.key ?? 'pgboss12',
    label: options.label ?? 'pg-boss 12 (Node 22) transactional, LISTEN/NOTIFY, batchSize 200',
    async prepare(url: string) {
      await migrateApp(url);
      await dropChannelTriggers(url);
      await runOnNode(nodeBinary(22), PEER_ADMIN, ['pgboss-prepare'], env(url));
    },
    start(url: string, processes: number, startOptions: StartOptions = {}) {
      return startChildren(WORKER_12, processes, env(startOptions.workerUrl ?? url), { node: nodeBinary(22) });
    },
    async produce(url: string, n: number) {
      await insertAuthors(url, n);
      await runOnNode(nodeBinary(22), PEER_ADMIN, ['pgboss-insert'], env(url));
    },
    async producePaced(url: string, durationMs: number, perSecond: number) {
      const producer = spawnProcess(PEER_ADMIN, ['pgboss-paced', String(durationMs), String(perSecond)], env(url), ROOT, { node: nodeBinary(22) });
      const exit = await producer.exited;
      if (exit.code !== 0) throw new Error(`pg-boss's paced producer failed: ${producer.describe()}`);
      return producer.all('committed').map((e) => ({ id: Number(e.id), committedAt: BigInt(String(e.at)), offsetMs: Number(e.offsetMs) }));
    },
  };
}
