import { Client } from 'pg';
import { type BenchDatabase, createBenchTemplate, dropBenchDatabase, migrateApp, withClient } from '../support/db';
import type { QueueSystem } from '../systems/types';
import { ours } from '../systems/ours';
import { type BenchContext, formatError } from './context';
import { drainOnce } from './drain';

/** The channel W8's listener handles beside author_created, paused in the "paused" shape. */
const SIDE = 'bench_side';
/** The context W8's due rows carry in the "contextFilter" shape, which its listener's filter matches. */
const WANTED = { tenant: 'a' };

/** A stored notification's payload as author_created's trigger writes it, for `i` (a SQL expression). */
const payload = (i: string, context = "'{}'::jsonb") =>
  `jsonb_build_object('op', 'INSERT', 'old', NULL, 'new', jsonb_build_object('id', -${i}, 'name', 'Backlog ' || ${i}), 'context', ${context})`;

/**
 * W8's backlog shapes: SQL storing `size` rows (`$1`) that the drain's claims cannot take, written
 * with generate_series, as the shapes users' tables reach: a downstream outage's retries, rows
 * delayed with runAt, a paused channel, a channel no listener here handles, rows another
 * listener's contextFilter wants, failures kept for a look, and ordered keys blocked behind a
 * failed head (10,000 keys, as settle_heads() leaves them).
 */
export const BACKLOG_SHAPES: Record<string, string> = {
  'in retry backoff': `INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, available_at)
    SELECT 'author_created', ${payload('i')}, 2, 'Error: the mail server was down', now() + interval '1 day' FROM generate_series(1, $1::int) AS i`,
  'delayed an hour (runAt)': `INSERT INTO pgpubsub.notification (channel, payload, available_at)
    SELECT 'author_created', ${payload('i')}, now() + interval '1 hour' FROM generate_series(1, $1::int) AS i`,
  'on a paused channel': `INSERT INTO pgpubsub.notification (channel, payload)
      SELECT '${SIDE}', jsonb_build_object('op', 'NOTIFY', 'payload', i, 'context', '{}'::jsonb) FROM generate_series(1, $1::int) AS i;
    INSERT INTO pgpubsub.paused (channel) VALUES ('${SIDE}')`,
  'on a channel no listener handles': `INSERT INTO pgpubsub.notification (channel, payload)
    SELECT 'elsewhere', jsonb_build_object('op', 'NOTIFY', 'payload', i, 'context', '{}'::jsonb) FROM generate_series(1, $1::int) AS i`,
  'excluded by a contextFilter': `INSERT INTO pgpubsub.notification (channel, payload)
    SELECT 'author_created', ${payload('i', `'{"tenant": "b"}'::jsonb`)} FROM generate_series(1, $1::int) AS i`,
  'failed for good': `INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at)
    SELECT 'author_created', ${payload('i')}, 5, 'Error: no such mailbox', now() FROM generate_series(1, $1::int) AS i`,
  '10,000 ordered keys blocked behind a failed head': `
    INSERT INTO pgpubsub.notification (channel, payload, ordering_key, head, attempts, last_error, failed_at)
      SELECT '${SIDE}', jsonb_build_object('op', 'NOTIFY', 'payload', k, 'context', '{}'::jsonb), 'b:' || k, true, 5, 'Error: poison', now()
        FROM generate_series(1, 10000) AS k;
    INSERT INTO pgpubsub.notification (channel, payload, ordering_key, head)
      SELECT '${SIDE}', jsonb_build_object('op', 'NOTIFY', 'payload', i, 'context', '{}'::jsonb), 'b:' || (i % 10000 + 1), false
        FROM generate_series(1, $1::int - 10000) AS i`,
};

/** Migrates the example app and stores `backlog` rows of `shape`, then vacuums and analyzes the table. */
async function fill(url: string, shape: string, backlog: number): Promise<void> {
  await migrateApp(url);
  await withClient(url, async (c) => {
    for (const statement of BACKLOG_SHAPES[shape].split(/;\s*\n/)) await c.query(statement, statement.includes('$1') ? [backlog] : []);
    await c.query('VACUUM ANALYZE pgpubsub.notification');
  });
}

/**
 * Ours, with the side channel, on a database that holds `backlog` rows of `shape` before it starts:
 * a copy of `template` when given (filled by fill()), else migrated and filled by its prepare.
 */
export function shaped(shape: string | null, backlog: number, template?: string): QueueSystem {
  const filtered = shape === 'excluded by a contextFilter';
  const system = ours({ sideChannel: SIDE, claimTimes: true, ...(filtered ? { contextFilter: WANTED } : {}) });
  return {
    ...system,
    key: 'ours',
    label: shape ? `sequelize-pgpubsub, ${backlog} rows ${shape}` : 'sequelize-pgpubsub, nothing else stored',
    async prepare(url) {
      if (template) return;
      if (shape) await fill(url, shape, backlog);
      else await migrateApp(url);
    },
    // The due rows carry the context the filtered listener wants.
    produce: filtered
      ? (url, n) => withClient(url, async (c) => {
        await c.query('BEGIN');
        await c.query("SELECT set_config('pgpubsub.notification_context', $1, true)", [JSON.stringify(WANTED)]);
        await c.query(`INSERT INTO authors (name) SELECT 'Author ' || i FROM generate_series(1, $1::int) AS i`, [n]);
        await c.query('COMMIT');
      })
      : system.produce,
  };
}

const FIGURES = [{ name: 'rate', unit: 'msg/s' }, { name: 'claimP99Ms', unit: 'ms claim p99' }, { name: 'postgresCpuMsPerK', unit: 'PG CPU ms/1k' }];

/**
 * W8 "backlog shapes": n due rows drained by 1 and 2 processes on a table holding nothing else,
 * then after `backlog` rows of each shape; and, separately, `heldN` rows drained while another
 * session holds a transaction open (every processed row stays as a dead row). Each case's first
 * row (nothing else stored, or no transaction held) is the rate the others are judged against.
 */
export async function w8(ctx: BenchContext, options: { n: number; backlog: number; processes: number[]; heldN: number; shapes?: readonly string[] | null }): Promise<void> {
  const picked = (shape: string) => !options.shapes || options.shapes.includes(shape);
  // Each shape's backlog is written once, into a template every run of it copies (a file copy):
  // writing 1,000,000 rows for each of the runs took most of W8's time.
  const templates = new Map<string, BenchDatabase>();
  try {
    for (const processes of options.processes) {
      const name = `${options.n} due msgs, ${processes} proc, beside ${options.backlog} rows`;
      for (let run = 1; run <= ctx.runs; run++) {
        for (const shape of [null, ...Object.keys(BACKLOG_SHAPES).filter(picked)]) {
          let template = shape ? templates.get(shape) : undefined;
          let failed: string | undefined;
          if (shape && !template) {
            try {
              template = await createBenchTemplate(ctx.serverUrl, 'w8_template', (url) => fill(url, shape, options.backlog));
              templates.set(shape, template);
            } catch (error) {
              failed = `could not write the backlog: ${formatError(error)}`;
            }
          }
          const system = shaped(shape, options.backlog, template?.name);
          const row = ctx.results.row({
            workload: 'W8', case: name, system: system.label, key: shape ? `ours-${shape}` : 'ours', metric: 'rate', figures: FIGURES, better: 'higher',
          });
          const result = failed ? { ok: false, values: {}, error: failed } : await drainOnce(ctx, system, options.n, processes, { template: template?.name });
          row.runs.push(result);
          ctx.log(`W8 ${processes}p run ${run}/${ctx.runs} ${shape ?? 'empty'}: ${result.ok ? `${Math.round(result.values.rate)} msg/s` : `FAILED: ${result.error}`}`);
        }
      }
    }
  } finally {
    for (const template of templates.values()) await dropBenchDatabase(ctx.serverUrl, template).catch(() => undefined);
  }
  // Dead rows that cleanup may not remove: a snapshot held from the clock's start to its stop.
  if (!picked('held')) return;
  const name = `${options.heldN} msgs, 2 proc, a transaction held open`;
  for (let run = 1; run <= ctx.runs; run++) {
    for (const held of [false, true]) {
      const system = shaped(null, 0);
      const row = ctx.results.row({
        workload: 'W8', case: name, system: held ? 'sequelize-pgpubsub, another session holding a transaction open' : 'sequelize-pgpubsub, no transaction held',
        key: held ? 'ours-held' : 'ours', metric: 'rate', figures: FIGURES, better: 'higher',
      });
      const result = await drainOnce(ctx, system, options.heldN, 2, held ? { during: holdTransaction } : {});
      row.runs.push(result);
      ctx.log(`W8 held run ${run}/${ctx.runs} ${held ? 'held' : 'not held'}: ${result.ok ? `${Math.round(result.values.rate)} msg/s` : `FAILED: ${result.error}`}`);
    }
  }
}

/** Opens a session that takes a snapshot and keeps its transaction open until the returned stop is called. */
function holdTransaction(url: string): () => Promise<unknown> {
  const client = new Client({ connectionString: url, application_name: 'bench-long-transaction' });
  const opened = client.connect()
    .then(() => client.query('BEGIN ISOLATION LEVEL REPEATABLE READ'))
    .then(() => client.query('SELECT count(*) FROM authors'));
  return async () => {
    await opened.catch(() => undefined);
    const { rows: [dead] } = await client.query<{ n: number }>(
      "SELECT n_dead_tup::int AS n FROM pg_stat_all_tables WHERE relid = 'pgpubsub.notification'::regclass").catch(() => ({ rows: [{ n: -1 }] }));
    await client.end().catch(() => undefined);
    return { deadRowsAtEnd: dead?.n };
  };
}
