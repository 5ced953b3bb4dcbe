/**
 * A graphile-worker process (0.17, or the package GW_PACKAGE names: graphile-worker-0.18 under Node 22): run() with concurrency 10 (GW_CONCURRENCY) and one task, `post`, which inserts
 * the post for payload.authorId through the pool graphile-worker hands the task. With
 * GW_LOCAL_QUEUE=1 it uses the documented batching options (localQueue: { size: 500 },
 * completeJobBatchDelay: 0). Ready once its pool LISTENs for new jobs.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as GraphileWorker from 'graphile-worker';
import type { Task } from 'graphile-worker';

const localQueue = process.env.GW_LOCAL_QUEUE === '1';
const concurrency = Number(process.env.GW_CONCURRENCY || 10);
/** W6: each job first awaits this long (a stand-in for an HTTP call). */
const ioMs = Number(process.env.GW_IO_MS || 0);

const post: Task = async (payload, helpers) => {
  if (ioMs) await sleep(ioMs);
  const started = String(process.hrtime.bigint() / 1000n);
  await helpers.query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', [started, (payload as { authorId: number }).authorId]);
};

async function main(): Promise<void> {
  const { Logger, run } = await import(process.env.GW_PACKAGE ?? 'graphile-worker') as typeof GraphileWorker;
  // graphile-worker logs every job at info level; keep warnings and errors only.
  const logger = new Logger(() => (level, message) => {
    if (level === 'error' || level === 'warning') process.stderr.write(`graphile-worker ${level}: ${message}\n`);
  });
  const events = new EventEmitter();
  const listening = new Promise<void>((resolve) => events.once('pool:listen:success', () => resolve()));
  const runner = await run({
    connectionString: process.env.DATABASE_URL,
    concurrency,
    logger,
    events: events as never,
    taskList: { post },
    preset: localQueue ? { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0 } } : undefined,
  });
  await listening;
  process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
  // run() installed SIGTERM/SIGINT handlers that shut the runner down gracefully.
  await runner.promise;
}

main().catch((error) => {
  process.stderr.write(`graphile worker: ${(error as Error).stack}\n`);
  process.exit(1);
});
