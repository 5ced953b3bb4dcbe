import path from 'node:path';
import { Logger, makeWorkerUtils, runMigrations } from 'graphile-worker';
import { dropChannelTriggers, insertAuthors, migrateApp, withClient } from '../support/db';
import { nodeBinary } from '../../dev/versions';
import { runOnNode, startChildren } from './children';
import type { QueueSystem, StartOptions } from './types';

const WORKER = path.join(__dirname, '..', 'workers', 'graphile-worker.ts');
const PEER_ADMIN = path.join(__dirname, '..', 'workers', 'peer-admin.ts');
/** graphile-worker 0.18 (bench/package.json's alias) needs Node 22: its workers and steps run there. */
const GRAPHILE_018 = 'graphile-worker-0.18';
/** graphile-worker's own messages, errors only, so they do not interleave with the table. */
const logger = new Logger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
});

/** The app tables without our triggers, plus graphile-worker's schema (its own migrations). */
export async function prepareGraphile(url: string): Promise<void> {
  await migrateApp(url);
  await dropChannelTriggers(url);
  await runMigrations({ connectionString: url, logger });
}

/**
 * graphile-worker 0.17: default (concurrency 10) or with localQueue 500 and batched completion;
 * `concurrency` and `ioMs` (each job first awaits that long) for W6.
 */
export function graphile(options: { localQueue: boolean; concurrency?: number; ioMs?: number; key?: string; label?: string; version?: '0.17' | '0.18' }): QueueSystem {
  const current = options.version === '0.18';
  const tag = current ? ' 0.18 (Node 22)' : '';
  return {
    key: options.key ?? `${options.localQueue ? 'graphile-localqueue' : 'graphile'}${current ? '-018' : ''}`,
    label: options.label ?? (options.localQueue ? `graphile-worker${tag} localQueue 500` : `graphile-worker${tag} default`),
    async prepare(url: string) {
      if (!current) return prepareGraphile(url);
      await migrateApp(url);
      await dropChannelTriggers(url);
      await runOnNode(nodeBinary(22), PEER_ADMIN, ['graphile-migrate'], { DATABASE_URL: url, PEER_PACKAGE: GRAPHILE_018 });
    },
    start(url: string, processes: number, startOptions: StartOptions = {}) {
      return startChildren(WORKER, processes, {
        DATABASE_URL: startOptions.workerUrl ?? url, GW_LOCAL_QUEUE: options.localQueue ? '1' : '0',
        GW_CONCURRENCY: String(options.concurrency ?? 10), GW_IO_MS: String(options.ioMs ?? 0),
        ...(current ? { GW_PACKAGE: GRAPHILE_018 } : {}),
      }, current ? { node: nodeBinary(22) } : {});
    },
    /** The authors (no trigger), then one job per author in one addJobs call: one statement, one commit. */
    async produce(url: string, n: number) {
      await insertAuthors(url, n);
      if (current) return runOnNode(nodeBinary(22), PEER_ADMIN, ['graphile-add-jobs'], { DATABASE_URL: url, PEER_PACKAGE: GRAPHILE_018 });
      const ids = await withClient(url, async (c) => (await c.query<{ id: number }>('SELECT id FROM authors ORDER BY id')).rows.map((r) => r.id));
      const utils = await makeWorkerUtils({ connectionString: url, logger });
      try {
        await utils.addJobs(ids.map((authorId) => ({ identifier: 'post', payload: { authorId } })));
      } finally {
        await utils.release();
      }
    },
  };
}

/**
 * Enqueueing from a row trigger, as graphile-worker's docs show: FOR EACH ROW, add_job(...) per
 * inserted author. Installed on a graphile-prepared database.
 */
export async function installAddJobTrigger(url: string): Promise<void> {
  await withClient(url, async (c) => {
    await c.query(`CREATE FUNCTION bench_author_add_job() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM graphile_worker.add_job('post', json_build_object('authorId', NEW.id));
        RETURN NEW;
      END $$`);
    await c.query('CREATE TRIGGER bench_author_add_job AFTER INSERT ON authors FOR EACH ROW EXECUTE FUNCTION bench_author_add_job()');
  });
}
