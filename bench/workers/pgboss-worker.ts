/**
 * A pg-boss 10 process: one work() on queue `post` fetching batches of 200 jobs, inserting one
 * post per job, then completing the batch (pg-boss completes after the handler resolves, in its
 * own query: at-least-once). Polls every 0.5 s, pg-boss 10's minimum: it has no LISTEN wake-up,
 * and after a fetch it sleeps the rest of the polling interval, so the interval bounds throughput.
 */
import PgBoss from 'pg-boss';
import { Client } from 'pg';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL!;
  // The parent installed the schema and created the queue; workers only work.
  const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false, migrate: false });
  boss.on('error', (error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
  await boss.start();
  const client = new Client({ connectionString: url, application_name: 'bench-pgboss' });
  await client.connect();
  await boss.work<{ authorId: number }>('post', { batchSize: 200, pollingIntervalSeconds: 0.5 }, async (jobs) => {
    for (const job of jobs) {
      const started = String(process.hrtime.bigint() / 1000n);
      await client.query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', [started, job.data.authorId]);
    }
  });
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
