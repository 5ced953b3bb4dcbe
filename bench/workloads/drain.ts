import { Client } from 'pg';
import { backendCpu, backendCpuDelta, verifyPosts } from '../support/db';
import { setTimeout as sleep } from 'node:timers/promises';
import { memoryMb, treeCpuSeconds } from '../support/proc';
import type { RunResult } from '../results';
import type { QueueSystem, StartOptions } from '../systems/types';
import { ceiling } from '../systems/ceiling';
import { graphile } from '../systems/graphile';
import { ours } from '../systems/ours';
import { pgboss, pgboss12 } from '../systems/pgboss';
import { type BenchContext, onFreshDatabase } from './context';

/** How often the parent counts posts to see the drain finish (the count itself costs ~1 ms). */
const POLL_MS = 25;
/** A drain that makes no progress for this long has failed. */
const STALL_MS = 30_000;

export interface DrainOptions {
  /** Sample throughput and each worker's RSS every second (W5). */
  series?: boolean;
  /** Give up (the run fails) after this long, so that a drain whose cost grows with the backlog cannot hold up the benchmark. */
  timeLimitMs?: number;
  /** Passed to the system's start (bench/profile.ts: the workers' NODE_OPTIONS). */
  startOptions?: StartOptions;
  /** Called as the clock starts; what its stop function resolves to goes into the run's detail (bench/profile.ts: wait-event samples). */
  during?: (url: string) => () => Promise<unknown>;
}

/**
 * One drain on a fresh database: prepare it for the system, start N worker processes and wait
 * until they are ready, then make n messages visible in one commit (untimed), start the clock,
 * and stop it when the nth post is counted. Then verify: n posts for n distinct authors.
 *
 * Why the clock starts at the producer's commit: all systems start from the same state (workers
 * idle and ready, n messages committed at once), no process start-up is timed, and enqueueing is
 * left out as the brief says. Ours is woken by its trigger's NOTIFY, graphile-worker by add_jobs'
 * NOTIFY, pg-boss by its next poll (≤ 0.5 s), the ceiling by a "go" line written at that instant.
 */
export async function drainOnce(ctx: BenchContext, system: QueueSystem, n: number, processes: number, options: DrainOptions = {}): Promise<RunResult> {
  return onFreshDatabase(ctx, `${system.key}_drain_${processes}`, async (url) => {
    await system.prepare(url);
    const workers = await system.start(url, processes, options.startOptions);
    const poller = new Client({ connectionString: url, application_name: 'bench-poller' });
    await poller.connect();
    try {
      // CPU readings start before the commit so that nothing runs between the commit and the clock.
      const pids = workers.pids();
      const workerPids = workers.workerPids();
      const cpu0 = treeCpuSeconds(pids);
      const backends0 = await backendCpu(poller);
      await system.produce(url, n);
      const t0 = performance.now();
      workers.go?.();
      const stopDuring = options.during?.(url);

      const series: Array<{ s: number; posts: number; rssMb: number[] }> = [];
      let nextSample = 0;
      let posts = 0;
      let progressAt = t0;
      let abandoned: string | undefined;
      while (posts < n && !abandoned) {
        await sleep(POLL_MS);
        const count = Number((await poller.query<{ n: string }>('SELECT count(*) AS n FROM posts')).rows[0].n);
        const now = performance.now();
        if (count > posts) progressAt = now;
        posts = count;
        if (options.series && now - t0 >= nextSample) {
          series.push({ s: Math.round(now - t0) / 1000, posts, rssMb: workerPids.map((pid) => Math.round(memoryMb(pid, 'VmRSS'))) });
          nextSample += 1000;
        }
        if (now - progressAt > STALL_MS) throw new Error(`stalled at ${posts} of ${n} posts for ${STALL_MS / 1000} s`);
        // Give up early once the drain so far projects past the limit (judged after a tenth of it);
        // the run fails, but its figures so far are kept in the JSON.
        const elapsed = now - t0;
        if (options.timeLimitMs && elapsed > options.timeLimitMs / 10 && (elapsed * n) / Math.max(posts, 1) > options.timeLimitMs) {
          abandoned = `would not finish within ${options.timeLimitMs / 1000} s: ${posts} of ${n} posts after ${Math.round(elapsed / 1000)} s (${Math.round(posts / (elapsed / 1000))} msg/s)`;
        }
      }
      const done = posts;
      const seconds = (performance.now() - t0) / 1000;
      const workerCpu = treeCpuSeconds(pids) - cpu0;
      const postgresCpu = backendCpuDelta(backends0, await backendCpu(poller));
      const peakRssMb = workerPids.map((pid) => memoryMb(pid, 'VmHWM'));
      const during = await stopDuring?.();
      await workers.stop();
      const check = abandoned ? { ok: false, detail: abandoned } : await verifyPosts(url, n);
      const values = {
        rate: done / seconds,
        seconds,
        // Where the CPU went: the system's own processes, and the PostgreSQL backends serving them.
        workerCpuMsPerK: (workerCpu * 1e6) / done,
        postgresCpuMsPerK: (postgresCpu * 1e6) / done,
        peakRssMb: Math.max(...peakRssMb),
      };
      return {
        ok: check.ok,
        values,
        error: check.ok ? undefined : check.detail,
        detail: { ...(options.series ? { series } : {}), peakRssMbPerProcess: peakRssMb, ...(during === undefined ? {} : { during }) },
      };
    } finally {
      await poller.end().catch(() => undefined);
      await workers.stop();
    }
  });
}

/** The systems W1 compares, ours first. */
export function drainSystems(): QueueSystem[] {
  return [
    ours(),
    // Diagnostic: the same listener writing the post with the README's Post.create instead of the
    // peers' INSERT, to show what Sequelize's model layer costs per message.
    ours({ key: 'ours-model', label: 'ours, Post.create callback (model layer)', callback: 'model' }),
    // Diagnostic: two claim transactions at once per process (the default is 1: see the README's "Concurrency").
    ours({ key: 'ours-c2', label: 'ours, concurrency 2', concurrency: 2 }),
    // onBatch: the claim's posts in one Post.bulkCreate (BENCHMARKS.md's W1 batch row).
    ours({ key: 'ours-batch', label: 'ours, onBatch callback (one bulkCreate per claim of 500)', callback: 'batch', batchSize: 500 }),
    ceiling({ savepoints: false }),
    ceiling({ savepoints: true }),
    // The same loop with the side effect (and the claim) through sequelize.query, as ours runs it.
    ceiling({ savepoints: false, sequelize: true }),
    graphile({ localQueue: false }),
    graphile({ localQueue: true }),
    pgboss(),
    // The current peers, on Node 22 (which they need).
    graphile({ localQueue: false, version: '0.18' }),
    graphile({ localQueue: true, version: '0.18' }),
    pgboss12(),
  ];
}

const DRAIN_FIGURES = [
  { name: 'rate', unit: 'msg/s' },
  { name: 'workerCpuMsPerK', unit: 'worker CPU ms/1k' },
  { name: 'postgresCpuMsPerK', unit: 'PG CPU ms/1k' },
];

/** W1: n stored messages drained by 1, 2 and 4 processes (quick: 2), every system, interleaved per run. */
export async function w1(ctx: BenchContext, options: { n: number; processes: number[] }): Promise<void> {
  const systems = drainSystems();
  for (const processes of options.processes) {
    for (let run = 1; run <= ctx.runs; run++) {
      for (const system of systems) {
        const row = ctx.results.row({
          workload: 'W1', case: `${options.n} msgs, ${processes} proc`, system: system.label, key: system.key,
          metric: 'rate', figures: DRAIN_FIGURES, better: 'higher',
          note: system.key.startsWith('ours-') && system.key !== 'ours-batch' ? 'diagnostic' : undefined,
        });
        const result = await drainOnce(ctx, system, options.n, processes);
        row.runs.push(result);
        ctx.log(`W1 ${processes}p run ${run}/${ctx.runs} ${system.label}: ${result.ok
          ? `${Math.round(result.values.rate)} msg/s (${result.values.seconds.toFixed(2)} s; CPU per 1k msgs: workers ${result.values.workerCpuMsPerK.toFixed(0)} ms, PostgreSQL ${result.values.postgresCpuMsPerK.toFixed(0)} ms)`
          : `FAILED: ${result.error}`}`);
      }
    }
  }
}

/** W5: a large backlog drained by 4 processes; throughput over time and peak RSS per process. */
export async function w5(ctx: BenchContext, options: { n: number; timeLimitMs: number }): Promise<void> {
  const system = ours();
  for (let run = 1; run <= ctx.runs; run++) {
    const row = ctx.results.row({
      workload: 'W5', case: `${options.n} msgs, 4 proc`, system: system.label, key: system.key, metric: 'rate',
      figures: [{ name: 'rate', unit: 'msg/s' }, { name: 'peakRssMb', unit: 'MB peak RSS/proc' }], better: 'higher',
    });
    const result = await drainOnce(ctx, system, options.n, 4, { series: true, timeLimitMs: options.timeLimitMs });
    row.runs.push(result);
    ctx.log(`W5 run ${run}/${ctx.runs}: ${result.ok ? `${Math.round(result.values.rate)} msg/s, peak RSS ${result.values.peakRssMb.toFixed(0)} MB` : `FAILED: ${result.error}`}`);
  }
}

/** W6's callback: each message awaits this long (a stand-in for an HTTP call), then inserts its post. */
const W6_IO_MS = 20;

/** The systems W6 compares: ours with its concurrency options, graphile-worker at concurrency 10 and 50, pg-boss. */
export function ioSystems(): QueueSystem[] {
  return [
    ours({ label: 'sequelize-pgpubsub, callbackConcurrency 100', ioMs: W6_IO_MS, batchSize: 100, callbackConcurrency: 100, concurrency: 2 }),
    ours({ key: 'ours-claims', label: 'ours, concurrency 10 (claim transactions), batchSize 5', ioMs: W6_IO_MS, batchSize: 5, concurrency: 10 }),
    graphile({ localQueue: false, concurrency: 10, ioMs: W6_IO_MS, key: 'graphile-c10', label: 'graphile-worker concurrency 10' }),
    graphile({ localQueue: false, concurrency: 50, ioMs: W6_IO_MS, key: 'graphile-c50', label: 'graphile-worker concurrency 50' }),
    pgboss({ ioMs: W6_IO_MS, key: 'pgboss-io', label: 'pg-boss 10, batchSize 200, a batch\'s jobs at once' }),
    pgboss({ ioMs: W6_IO_MS, workers: 4, key: 'pgboss-io-4', label: 'pg-boss 10, 4 workers/proc, batchSize 200, jobs at once' }),
  ];
}

/** W6: n messages whose callbacks each wait 20 ms, then insert the post, drained by 2 processes. */
export async function w6(ctx: BenchContext, options: { n: number; processes: number }): Promise<void> {
  const systems = ioSystems();
  for (let run = 1; run <= ctx.runs; run++) {
    for (const system of systems) {
      const row = ctx.results.row({
        workload: 'W6', case: `${options.n} msgs, ${W6_IO_MS} ms each, ${options.processes} proc`, system: system.label, key: system.key,
        metric: 'rate', figures: DRAIN_FIGURES, better: 'higher', note: system.key === 'ours-claims' ? 'diagnostic' : undefined,
      });
      const result = await drainOnce(ctx, system, options.n, options.processes);
      row.runs.push(result);
      ctx.log(`W6 run ${run}/${ctx.runs} ${system.label}: ${result.ok ? `${Math.round(result.values.rate)} msg/s (${result.values.seconds.toFixed(2)} s)` : `FAILED: ${result.error}`}`);
    }
  }
}
