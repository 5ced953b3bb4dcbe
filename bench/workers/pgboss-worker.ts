/**
 * A pg-boss 10 process: one work() on queue `post` fetching batches of 200 jobs, inserting one
 * post per job, then completing the batch (pg-boss completes after the handler resolves, in its
 * own query: at-least-once). Polls every 0.5 s, pg-boss 10's minimum: it has no LISTEN wake-up,
 * and after a fetch it sleeps the rest of the polling interval, so the interval bounds throughput.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import PgBoss from 'pg-boss';
import { Pool } from 'pg';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL!;
  // The parent installed the schema and created the queue; workers only work.
  const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false, migrate: false });
  boss.on('error', (error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
  await boss.start();
  // A pool, so that W6's jobs at once do not queue on one connection (W1 uses one connection of it).
  const client = new Pool({ connectionString: url, application_name: 'bench-pgboss', max: 10 });
  // W6 (PB_IO_MS): each job first awaits that long, the batch's jobs at once (pg-boss 10's way to
  // run a batch concurrently: it has no per-worker concurrency setting), on PB_WORKERS subscriptions.
  const ioMs = Number(process.env.PB_IO_MS || 0);
  const subscriptions = Number(process.env.PB_WORKERS || 1);
  const one = async (job: { data: { authorId: number } }) => {
    if (ioMs) await sleep(ioMs);
    const started = String(process.hrtime.bigint() / 1000n);
    await client.query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', [started, job.data.authorId]);
  };
  for (let i = 0; i < subscriptions; i++) {
    await boss.work<{ authorId: number }>('post', { batchSize: 200, pollingIntervalSeconds: 0.5 }, async (jobs) => {
      if (ioMs) await Promise.all(jobs.map(one));
      else for (const job of jobs) await one(job);
    });
  }
  process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
  const stop = async () => {
    await boss.stop({ graceful: true, wait: true, timeout: 5000 });
    await client.end();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop()).once('SIGINT', () => void stop());
}

main().catch((error) => {
  process.stderr.write(`pg-boss worker: ${(error as Error).stack}\n`);
  process.exit(1);
});
