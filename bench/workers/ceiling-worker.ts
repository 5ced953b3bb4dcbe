/**
 * The ceiling: the least code that does the same exactly-once job as a listener, with plain pg
 * and nothing else. Per transaction: claim up to BATCH_SIZE stored notifications with SKIP LOCKED,
 * insert one post per notification (optionally each in its own savepoint, as a listener isolates
 * callbacks), delete the batch, commit. It waits for "go" on stdin so that it starts exactly when
 * the clock does (it has no wake-up of its own), and stops claiming when nothing is left, until the
 * next "go"; the process and its connection stay up (stdin open) so that its CPU time and its backend's can
 * still be read, until the parent stops it. VIA=sequelize runs the same statements through
 * `sequelize.query` in a Sequelize transaction, the side effect with the very call ours makes
 * (bench/apps/ours-app.ts): the library's own cost apart from Sequelize's.
 */
import readline from 'node:readline';
import { Client } from 'pg';
import type { Transaction } from 'sequelize';

const batchSize = Number(process.env.BATCH_SIZE ?? 100);
const savepoints = process.env.SAVEPOINTS === '1';
const viaSequelize = process.env.VIA === 'sequelize';

/**
 * The claim on the index ours claims through (notification_due: channel, available_at, id, for
 * rows not failed and not waiting behind an ordered key), in its order: no sort, as cheap as ours.
 * (Its first form, `WHERE failed_at IS NULL ORDER BY id`, walked the primary key in order: no sort
 * either, and the same 0.26–0.28 ms per claim of 100 on 20,000 rows, EXPLAIN ANALYZE on PostgreSQL 15.)
 */
const CLAIM = `SELECT id, (payload -> 'new' ->> 'id')::int AS author_id
                 FROM pgpubsub.notification
                WHERE channel = 'author_created' AND failed_at IS NULL AND head IS NOT FALSE AND available_at <= pg_catalog.now()
                ORDER BY available_at, id
                LIMIT $1
                  FOR UPDATE SKIP LOCKED`;

/** Drains until nothing is left, through Sequelize: one managed transaction per batch on a pool of one, as a listener's. */
async function sequelizeDrainer(): Promise<() => Promise<void>> {
  // Loaded here only: the plain-pg rows' memory figures stay without Sequelize.
  const { QueryTypes, Sequelize } = await import('sequelize');
  // One connection, kept open the whole run: its backend's CPU is read at the end.
  const sequelize = new Sequelize(process.env.DATABASE_URL!, { dialect: 'postgres', logging: false, pool: { max: 1, min: 1, idle: 3_600_000 }, dialectOptions: { application_name: 'bench-ceiling' } });
  await sequelize.authenticate();
  return async () => {
    for (let claimed = 1; claimed > 0;) {
      claimed = await sequelize.transaction(async (transaction: Transaction) => {
        const rows = await sequelize.query<{ id: string; author_id: number }>(CLAIM, { bind: [batchSize], transaction, type: QueryTypes.SELECT });
        for (const row of rows) {
          const started = String(process.hrtime.bigint() / 1000n);
          await sequelize.query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', { bind: [started, row.author_id], transaction, type: QueryTypes.INSERT });
        }
        if (rows.length > 0) await sequelize.query('DELETE FROM pgpubsub.notification WHERE id = ANY($1::bigint[])', { bind: [rows.map((row) => row.id)], transaction, type: QueryTypes.DELETE });
        return rows.length;
      });
    }
  };
}

/** Drains until nothing is left, with plain pg. */
async function pgDrainer(): Promise<() => Promise<void>> {
  const client = new Client({ connectionString: process.env.DATABASE_URL, application_name: 'bench-ceiling' });
  await client.connect();
  return async () => {
    for (;;) {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: string; author_id: number }>(CLAIM, [batchSize]);
      if (rows.length === 0) {
        await client.query('COMMIT');
        return;
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
  };
}

async function main(): Promise<void> {
  // Each "go" line starts a drain, one after another (W1's warm rows send two: the warm-up, then the timed one).
  let gos = 0;
  let wake: (() => void) | null = null;
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() !== 'go') return;
    gos++;
    wake?.();
  });
  const drain = viaSequelize ? await sequelizeDrainer() : await pgDrainer();
  process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
  for (;;) {
    while (gos === 0) await new Promise<void>((resolve) => { wake = resolve; });
    gos--;
    await drain();
    process.stdout.write(`${JSON.stringify({ event: 'drained' })}\n`);
  }
}

// A stop is a normal exit (so that bench/profile.ts's --cpu-prof gets written).
process.on('SIGTERM', () => process.exit(0));

main().catch((error) => {
  process.stderr.write(`ceiling worker: ${(error as Error).stack}\n`);
  process.exit(1);
});
