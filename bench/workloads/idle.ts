import { createBenchDatabase, dropBenchDatabase } from '../support/db';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy } from '../../dev/proxy';
import { treeCpuSeconds } from '../support/proc';
import { ours } from '../systems/ours';
import { type BenchContext, formatError } from './context';

/**
 * After the listeners are ready, let start-up finish before measuring: the first drains, and a
 * one-off burst of CPU in the primary some 10 s after it started (seen as ~0.1 s in /proc).
 */
const SETTLE_MS = 15_000;

/**
 * W4: `pgpubsub listen --processes 4` with no traffic for `durationMs`. Statements are counted by
 * a proxy every listener connection goes through (dev/proxy.ts counts its statements); CPU is the
 * utime+stime of the whole process tree (primary and workers) from /proc over the same window.
 */
export async function w4(ctx: BenchContext, options: { durationMs: number; processes: number }): Promise<void> {
  const system = ours();
  for (let run = 1; run <= ctx.runs; run++) {
    const row = ctx.results.row({
      workload: 'W4', case: `${options.processes} proc idle, ${options.durationMs / 1000} s`, system: system.label, key: system.key,
      metric: 'statementsPerMinPerProc', better: 'lower',
      figures: [{ name: 'statementsPerMinPerProc', unit: 'stmts/min/proc' }, { name: 'cpuSeconds', unit: 'CPU s' }],
    });
    let db;
    const counter = await startProxy(ctx.serverUrl);
    try {
      db = await createBenchDatabase(ctx.serverUrl, 'ours_idle');
      await system.prepare(db.url);
      const workers = await system.start(db.url, options.processes, { workerUrl: counter.via(db.url) });
      try {
        await sleep(SETTLE_MS);
        const pids = workers.pids();
        const statements0 = counter.statements();
        const cpu0 = treeCpuSeconds(pids);
        await sleep(options.durationMs);
        const statements = counter.statements() - statements0;
        const cpuSeconds = treeCpuSeconds(pids) - cpu0;
        const minutes = options.durationMs / 60_000;
        row.runs.push({
          ok: true,
          values: { statementsPerMinPerProc: statements / minutes / options.processes, statements, cpuSeconds },
        });
        ctx.log(`W4 run ${run}/${ctx.runs}: ${statements} statements in ${options.durationMs / 1000} s from ${options.processes} processes, ${cpuSeconds.toFixed(2)} CPU s`);
      } finally {
        await workers.stop();
      }
    } catch (error) {
      row.runs.push({ ok: false, values: {}, error: formatError(error) });
      ctx.log(`W4 run ${run}/${ctx.runs}: FAILED: ${formatError(error)}`);
    } finally {
      await counter.close();
      if (db) await dropBenchDatabase(ctx.serverUrl, db).catch(() => undefined);
    }
  }
}
