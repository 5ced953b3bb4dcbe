import os from 'node:os';
import path from 'node:path';
import { ROOT, run } from '../../dev/processes';
import { openApp } from '../../dev/example-app';
import { migrateApp, withClient } from '../support/db';
import { type BenchContext, onFreshDatabase } from './context';
import { COUNT_CAP } from '../../lib/ops/channel-counts';

const PLAIN_CLI = path.join(ROOT, 'bench', 'support', 'plain-cli.js');
const STATUS_APP = path.join(ROOT, 'bench', 'apps', 'status-app.js');

/** Times the admin API's status() is asked in a run; the median is the run's figure. */
const ASKS = 11;

/**
 * Status: `admin.status()` (what `pgpubsub status --json` prints) on a database holding `stored`
 * pending notifications and `failed` failed ones, with no listener running. The figure judged is
 * the answer's wall time in a warm process (the median of ASKS calls), and the whole
 * `pgpubsub status --json` process, Node's start-up and the app's loading included, as an
 * installed package runs it (compiled, a plain-JavaScript app: bench/apps/status-app.js), and
 * the same with `--url` (the database alone: no app, no Sequelize). The app defines a channel that
 * holds no rows beside the stored one: an empty channel must cost a status no scan of the table.
 */
export async function status(ctx: BenchContext, options: { stored: number; failed: number }): Promise<void> {
  const row = ctx.results.row({
    workload: 'Status', case: `${options.stored} stored, ${options.failed} failed`, system: 'sequelize-pgpubsub', key: 'ours',
    metric: 'statusMs', better: 'lower',
    figures: [
      { name: 'statusMs', unit: 'ms (admin.status())' },
      { name: 'cliMs', unit: 'ms (pgpubsub status --json, whole process)' },
      { name: 'cliUrlMs', unit: 'ms (pgpubsub status --json --url, whole process)' },
    ],
  });
  for (let attempt = 1; attempt <= ctx.runs; attempt++) {
    const result = await onFreshDatabase(ctx, 'ours_status', async (url) => {
      await migrateApp(url);
      await withClient(url, async (c) => {
        await c.query(`INSERT INTO pgpubsub.notification (channel, payload)
          SELECT 'author_created', jsonb_build_object('op', 'INSERT', 'old', NULL, 'new', jsonb_build_object('id', i, 'name', 'Author ' || i), 'context', '{}'::jsonb)
            FROM generate_series(1, $1::int) AS i`, [options.stored]);
        await c.query(`INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at)
          SELECT 'author_created', '{"op":"BOGUS"}', 5, 'Error: failed in the benchmark', now() FROM generate_series(1, $1::int)`, [options.failed]);
        await c.query('VACUUM ANALYZE pgpubsub.notification');
      });
      const app = openApp(url);
      let statusMs: number;
      try {
        const times: number[] = [];
        for (let i = 0; i < ASKS; i++) {
          const t0 = performance.now();
          const answer = await app.sequelize.pgpubsub.admin.status();
          times.push(performance.now() - t0);
          const channel = answer.channels.find((c) => c.channel === 'author_created');
          // Exact up to COUNT_CAP rows a count; past it, a sample's estimate, which must be said and near.
          const near = (counted: number | undefined, stored: number) => (stored > COUNT_CAP
            ? channel?.estimated === true && counted !== undefined && Math.abs(counted - stored) <= stored / 3 : counted === stored);
          if (!near(channel?.due, options.stored) || !near(channel?.failed, options.failed)) throw new Error(`status() counted ${JSON.stringify(channel)}`);
        }
        statusMs = times.sort((a, b) => a - b)[Math.floor(ASKS / 2)];
      } finally {
        await app.sequelize.close();
      }
      // As an installed package runs: the compiled CLI, a plain-JavaScript app, no tsx, from a folder
      // outside this repository (whose .sequelizerc registers tsx for its TypeScript models).
      const wholeProcess = async (args: string[]) => {
        const t0 = performance.now();
        const cli = await run(process.execPath, [PLAIN_CLI, 'status', '--json', ...args], { url, cwd: os.tmpdir(), timeout: 60_000 });
        const ms = performance.now() - t0;
        if (cli.code !== 0) throw new Error(`pgpubsub status --json ${args.join(' ')} exited ${cli.code}: ${cli.stderr.slice(0, 200)}`);
        return ms;
      };
      const cliMs = await wholeProcess(['--app', STATUS_APP]);
      const cliUrlMs = await wholeProcess(['--url', url]);
      return { ok: true, values: { statusMs, cliMs, cliUrlMs } };
    });
    row.runs.push(result);
    ctx.log(`Status run ${attempt}/${ctx.runs}: ${result.ok ? `admin.status() ${result.values.statusMs.toFixed(1)} ms, pgpubsub status --json ${result.values.cliMs.toFixed(0)} ms, with --url ${result.values.cliUrlMs.toFixed(0)} ms` : `FAILED: ${result.error}`}`);
  }
}
