/**
 * A pg-boss 12 process in its exactly-once mode: one work() on queue `post` with
 * `transactional: true` (each fetched batch's handler and its completion commit in one
 * transaction, the posts written through that transaction), batches of 200, woken by LISTEN/NOTIFY
 * (`useListenNotify`; the queue NOTIFYs on job creation) and fetching without a pause while
 * batches come back full (`burstWhenBatchFull`). Polls every 0.5 s otherwise, its minimum.
 * PB_IO_MS (W6): each job first awaits that long, the batch's jobs at once on its transaction.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type * as PgBossModule from 'pg-boss-12';

/** W6: each job first awaits this long (a stand-in for an HTTP call), the batch's jobs at once. */
const ioMs = Number(process.env.PB_IO_MS || 0);

async function main(): Promise<void> {
  const { PgBoss } = await import(process.env.PEER_PACKAGE ?? 'pg-boss-12') as typeof PgBossModule;
  const boss = new PgBoss({ connectionString: process.env.DATABASE_URL!, supervise: false, schedule: false, migrate: false, useListenNotify: true });
  boss.on('error', (error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
  await boss.start();
  await boss.work('post', { batchSize: 200, transactional: true, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 }, async (jobs: PgBossModule.Job<{ authorId: number }>[], tx) => {
    const one = async (job: PgBossModule.Job<{ authorId: number }>) => {
      if (ioMs) await sleep(ioMs);
      const started = String(process.hrtime.bigint() / 1000n);
      await tx.executeSql('INSERT INTO posts (content, author_id) VALUES ($1, $2)', [started, job.data.authorId]);
    };
    if (ioMs) await Promise.all(jobs.map(one));
    else for (const job of jobs) await one(job);
  });
  process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
  const stop = async () => {
    await boss.stop({ graceful: true, timeout: 5000 });
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop()).once('SIGINT', () => void stop());
}

main().catch((error) => {
  process.stderr.write(`pg-boss 12 worker: ${(error as Error).stack}\n`);
  process.exit(1);
});
