import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { LISTENER_APPLICATION_NAME } from '../../lib/listener/listener';
import { GiveUp, eventually } from '../../dev/eventually';
import { ROOT, spawnProcess } from '../../dev/processes';
import { COMPILED_CLI } from '../support/compiled';
import { W7_CHANNEL, W7_HISTORY_SQL, w7App } from '../apps/ordering-app';
import { migrateApp, withClient } from '../support/db';
import { treeCpuSeconds, processTree } from '../support/proc';
import { type BenchContext, onFreshDatabase } from './context';

const APP = path.join(ROOT, 'bench', 'apps', 'ordering-app.ts');
/** Producer connections writing the rows' changes (each change its own transaction). */
const WRITERS = 8;

/**
 * W7 ordered rows: `rows` rows each inserted, then updated `updates` times, every change in a
 * transaction of its own (untimed, while the channel is paused), then drained by `processes`
 * listener processes once resumed: the clock runs from the resume to the last change processed.
 * Once with `ordering: 'row'` (every row's history must come out in order), once without, in the
 * same run: the target is the ordered throughput at least 60% of the unordered.
 */
export async function w7(ctx: BenchContext, options: { rows: number; updates: number; processes: number }): Promise<void> {
  const changes = options.rows * (options.updates + 1);
  const kase = `${options.rows} rows × ${options.updates + 1} changes, ${options.processes} proc`;
  for (const ordered of [true, false]) {
    const row = ctx.results.row({
      workload: 'W7', case: kase, system: ordered ? "ours, ordering: 'row'" : 'ours, unordered', key: ordered ? 'ours' : 'ours-unordered',
      metric: 'rate', better: 'higher',
      figures: [{ name: 'rate', unit: 'msg/s' }, { name: 'outOfOrder', unit: 'rows out of order' }, { name: 'workerCpuMsPerK', unit: 'worker CPU ms/1k' }],
    });
    for (let attempt = 1; attempt <= ctx.runs; attempt++) {
      const result = await onFreshDatabase(ctx, `ours_w7_${ordered ? 'ordered' : 'unordered'}`, async (url) => {
        await migrateApp(url);
        const app = w7App(url, ordered);
        try {
          await app.Item.sync();
          await app.sequelize.query(W7_HISTORY_SQL);
          await app.sequelize.pgpubsub.triggers.sync();
          await app.sequelize.pgpubsub.admin.pause(W7_CHANNEL);
          await produce(url, options.rows, options.updates);
        } finally {
          await app.sequelize.close();
        }
        const listen = spawnProcess(COMPILED_CLI, ['listen', '--app', APP, '--processes', String(options.processes), '--log-level', 'warn', '--log-format', 'json'], {
          DATABASE_URL: url, BENCH_W7: '1', BENCH_ORDERED: ordered ? '1' : '0',
        });
        try {
          await eventually(async () => {
            if (listen.exit) throw new GiveUp(`pgpubsub listen exited: ${listen.describe()}`);
            return withClient(url, async (c) => (await c.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = '${LISTENER_APPLICATION_NAME}'`,
            )).rows[0].n >= options.processes);
          }, () => `${options.processes} listeners: ${listen.describe()}`, 60_000, 50);
          const pids = processTree(listen.child.pid!);
          const cpu0 = treeCpuSeconds(pids);
          const poller = new Client({ connectionString: url });
          await poller.connect();
          try {
            await poller.query(`DELETE FROM pgpubsub.paused WHERE channel = $1`, [W7_CHANNEL]);
            const t0 = performance.now();
            await poller.query(`SELECT pg_notify('pgpubsub_pause', $1)`, [W7_CHANNEL]);
            let done = 0;
            for (let last = t0; done < changes;) {
              await sleep(25);
              const count = Number((await poller.query<{ n: string }>('SELECT count(*) AS n FROM w7_history')).rows[0].n);
              if (count > done) last = performance.now();
              done = count;
              if (performance.now() - last > 30_000) throw new Error(`stalled at ${done} of ${changes} changes`);
            }
            const seconds = (performance.now() - t0) / 1000;
            const workerCpu = treeCpuSeconds(pids) - cpu0;
            // A row is out of order when its history is not v0, v1, … in processing order.
            const out = Number((await poller.query<{ n: string }>(`SELECT count(*) AS n FROM (
                SELECT item, array_agg(name ORDER BY seq) AS names, array_agg(name ORDER BY (split_part(name, ' v', 2))::int) AS expected
                  FROM w7_history GROUP BY item) AS h WHERE names <> expected`)).rows[0].n);
            const ok = !ordered || out === 0;
            return {
              ok, values: { rate: changes / seconds, outOfOrder: out, workerCpuMsPerK: (workerCpu * 1e6) / changes },
              error: ok ? undefined : `${out} row(s) processed out of order`,
            };
          } finally {
            await poller.end().catch(() => undefined);
          }
        } finally {
          await listen.stop(15_000);
        }
      });
      row.runs.push(result);
      ctx.log(`W7 ${ordered ? 'ordered' : 'unordered'} run ${attempt}/${ctx.runs}: ${result.ok ? `${result.values.rate.toFixed(0)} msg/s, ${result.values.outOfOrder} row(s) out of order` : `FAILED: ${result.error}`}`);
    }
  }
}

/** Each row inserted, then updated `updates` times, every change its own transaction (autocommit), from WRITERS connections. */
async function produce(url: string, rows: number, updates: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: WRITERS }, async () => {
    const client = new Client({ connectionString: url });
    await client.connect();
    return client;
  }));
  try {
    const ids: number[] = [];
    await Promise.all(clients.map(async (client, w) => {
      for (let i = w; i < rows; i += WRITERS) ids.push((await client.query<{ id: number }>('INSERT INTO w7_items (name) VALUES ($1) RETURNING id', [`item ${i} v0`])).rows[0].id);
    }));
    for (let version = 1; version <= updates; version++) {
      await Promise.all(clients.map(async (client, w) => {
        for (let i = w; i < ids.length; i += WRITERS) {
          await client.query("UPDATE w7_items SET name = split_part(name, ' v', 1) || ' v' || $2 WHERE id = $1", [ids[i], version]);
        }
      }));
    }
  } finally {
    await Promise.all(clients.map((client) => client.end()));
  }
}
