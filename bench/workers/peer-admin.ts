/**
 * One-off steps for the peers that need Node 22 (graphile-worker 0.18, pg-boss 12), run to their
 * end under Node 22 by the parent (which runs on the Node on the PATH):
 *
 *   graphile-migrate     graphile-worker's schema (its runMigrations)
 *   graphile-add-jobs    one `post` job per author, in one addJobs call
 *   pgboss-prepare       pg-boss's schema (start()) and queue `post`, with NOTIFY on job creation
 *   pgboss-insert        one `post` job per author, in one insert() call
 *   pgboss-paced MS N    W2's producer for pg-boss: for MS milliseconds, N times a second, one
 *                        transaction that inserts an author and send()s its `post` job on that
 *                        transaction (send's `db` option); a JSON line per commit: its author id,
 *                        the monotonic time in µs right after COMMIT returned, and ms since the start
 *
 * PEER_PACKAGE names the installed package (an alias in bench/package.json), DATABASE_URL the database.
 */
import type * as GraphileWorker from 'graphile-worker-0.18';
import type * as PgBossModule from 'pg-boss-12';
import { Client } from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';

const url = process.env.DATABASE_URL!;
const pkg = process.env.PEER_PACKAGE!;

async function authorIds(): Promise<number[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ id: number }>('SELECT id FROM authors ORDER BY id')).rows.map((row) => row.id);
  } finally {
    await client.end();
  }
}

async function main(step: string | undefined): Promise<void> {
  if (step === 'graphile-migrate' || step === 'graphile-add-jobs') {
    const { Logger, makeWorkerUtils, runMigrations } = await import(pkg) as typeof GraphileWorker;
    const logger = new Logger(() => (level, message) => {
      if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
    });
    if (step === 'graphile-migrate') return runMigrations({ connectionString: url, logger });
    const ids = await authorIds();
    const utils = await makeWorkerUtils({ connectionString: url, logger });
    try {
      await utils.addJobs(ids.map((authorId) => ({ identifier: 'post', payload: { authorId } })));
    } finally {
      await utils.release();
    }
    return;
  }
  if (step === 'pgboss-paced') return pgbossPaced(Number(process.argv[3]), Number(process.argv[4]));
  if (step === 'pgboss-prepare' || step === 'pgboss-insert') {
    const { PgBoss } = await import(pkg) as typeof PgBossModule;
    const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false });
    boss.on('error', (error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
    await boss.start();
    try {
      // notify: creating a job NOTIFYs, so that workers with useListenNotify wake at once.
      if (step === 'pgboss-prepare') await boss.createQueue('post', { notify: true });
      else await boss.insert('post', (await authorIds()).map((authorId) => ({ data: { authorId } })));
    } finally {
      await boss.stop({ graceful: false });
    }
    return;
  }
  throw new Error(`peer-admin: unknown step '${step}' (graphile-migrate, graphile-add-jobs, pgboss-prepare, pgboss-insert, pgboss-paced)`);
}

/** W2's paced producer for pg-boss 12 (see the steps above): the job sent in the author's transaction. */
async function pgbossPaced(durationMs: number, perSecond: number): Promise<void> {
  const { PgBoss } = await import(pkg) as typeof PgBossModule;
  const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false, migrate: false });
  boss.on('error', (error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
  await boss.start();
  const client = new Client({ connectionString: url, application_name: 'bench-producer' });
  await client.connect();
  try {
    const db = { executeSql: (text: string, values?: unknown[]) => client.query(text, values) };
    const intervalMs = 1000 / perSecond;
    const t0 = performance.now();
    for (let i = 0; i * intervalMs < durationMs; i++) {
      const wait = t0 + i * intervalMs - performance.now();
      if (wait > 0) await sleep(wait);
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: number }>('INSERT INTO authors (name) VALUES ($1) RETURNING id', [`Author ${i}`]);
      await boss.send('post', { authorId: rows[0].id }, { db });
      await client.query('COMMIT');
      const at = String(process.hrtime.bigint() / 1000n);
      process.stdout.write(`${JSON.stringify({ event: 'committed', id: rows[0].id, at, offsetMs: performance.now() - t0 })}\n`);
    }
  } finally {
    await client.end();
    await boss.stop({ graceful: false });
  }
}

main(process.argv[2]).catch((error) => {
  process.stderr.write(`peer-admin ${process.argv[2]}: ${(error as Error).stack}\n`);
  process.exit(1);
});
