/**
 * The ceiling: the least code that does the same exactly-once job as a listener, with plain pg
 * and nothing else. Per transaction: claim up to BATCH_SIZE stored notifications with SKIP LOCKED,
 * insert one post per notification (optionally each in its own savepoint, as a listener isolates
 * callbacks), delete the batch, commit. It waits for "go" on stdin so that it starts exactly when
 * the clock does (it has no wake-up of its own), and stops claiming when nothing is left; the
 * process and its connection stay up (stdin open) so that its CPU time and its backend's can
 * still be read, until the parent stops it.
 */
import readline from 'node:readline';
import { Client } from 'pg';

const batchSize = Number(process.env.BATCH_SIZE ?? 100);
const savepoints = process.env.SAVEPOINTS === '1';

async function main(): Promise<void> {
  const client = new Client({ connectionString: process.env.DATABASE_URL, application_name: 'bench-ceiling' });
  await client.connect();
  const go = new Promise<void>((resolve) => readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'go') resolve();
  }));
  process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
  await go;
  for (;;) {
    await client.query('BEGIN');
    const { rows } = await client.query<{ id: string; author_id: number }>(
      `SELECT id, (payload -> 'new' ->> 'id')::int AS author_id
         FROM pgpubsub.notification
        WHERE failed_at IS NULL
        ORDER BY id
        LIMIT $1
          FOR UPDATE SKIP LOCKED`,
      [batchSize],
    );
    if (rows.length === 0) {
      await client.query('COMMIT');
      break;
    }
    for (const row of rows) {
      if (savepoints) await client.query('SAVEPOINT message');
      const started = String(process.hrtime.bigint() / 1000n);
      await client.query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', [started, row.author_id]);
      if (savepoints) await client.query('RELEASE SAVEPOINT message');
    }
    await client.query('DELETE FROM pgpubsub.notification WHERE id = ANY($1::bigint[])', [rows.map((row) => row.id)]);
    await client.query('COMMIT');
  }
  process.stdout.write(`${JSON.stringify({ event: 'drained' })}\n`);
}

main().catch((error) => {
  process.stderr.write(`ceiling worker: ${(error as Error).stack}\n`);
  process.exit(1);
});
