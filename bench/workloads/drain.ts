import { Client } from 'pg';
import { backendCpu, backendCpuDelta, verifyPosts } from '../support/db';
import { setTimeout as sleep } from 'node:timers/promises';
import { memoryMb, treeCpuSeconds } from '../support/proc';
import { percentile } from '../support/stats';
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
  /** Passed to the system's start (bench/profile.ts: the workers' Node.js options). */
  startOptions?: StartOptions;
  /**
   * Untimed: the workers first drain this many messages (and the clock starts only after), so that
   * the timed drain runs on warmed-up processes (their JavaScript compiled, as in a long-running
   * listener) instead of measuring start-up.
   */
  warmup?: number;
  /** Called as the clock starts; what its stop function resolves to goes into the run's detail (bench/profile.ts: wait-event samples). */
  during?: (url: string) => () => Promise<unknown>;
  /** The run's database is a copy of this one, not an empty one (the system's prepare still runs on it). */
  template?: string;
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
    const countPosts = async () => Number((await poller.query<{ n: string }>('SELECT count(*) AS n FROM posts')).rows[0].n);
    const warmup = options.warmup ?? 0;
    try {
      if (warmup > 0) {
        await system.produce(url, warmup);
        workers.go?.();
        for (const start = performance.now(); (await countPosts()) < warmup;) {
          if (performance.now() - start > STALL_MS * 4) throw new Error(`the warm-up drain of ${warmup} did not finish`);
          await sleep(POLL_MS);
        }
      }
      // CPU readings start before the commit so that nothing runs between the commit and the clock.
      const pids = workers.pids();
      const workerPids = workers.workerPids();
      const cpu0 = treeCpuSeconds(pids);
      const backends0 = await backendCpu(poller);
      const vacuums0 = await autovacuums(poller);
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
        const count = await countPosts() - warmup;
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
      const vacuums = await autovacuums(poller) - vacuums0;
      const during = await stopDuring?.();
      await workers.stop();
      const check = abandoned ? { ok: false, detail: abandoned } : await verifyPosts(url, warmup + n);
      const claims = workers.claimMs?.();
      const values = {
        ...(claims?.length ? { claimP99Ms: percentile(claims, 99) } : {}),
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
        detail: { ...(options.series ? { series } : {}), peakRssMbPerProcess: peakRssMb, autovacuumsDuringDrain: vacuums, ...(during === undefined ? {} : { during }) },
      };
    } finally {
      await poller.end().catch(() => undefined);
      await workers.stop();
    }
  }, options.template);
}

/** How many times autovacuum and autoanalyze have run on the database's tables so far (a drain's difference: did one fall inside it). */
async function autovacuums(client: Client): Promise<number> {
  const { rows: [row] } = await client.query<{ n: number }>(
    'SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)::int AS n FROM pg_catalog.pg_stat_all_tables');
  return row.n;
}

/** The systems W1 compares, ours first. */
export function drainSystems(): QueueSystem[] {
  return [
    ours(),
    // The same INSERT through the callback's raw query path (context.query): node-postgres on the
    // message's transaction, as pg-boss's executeSql and the plain ceiling run it.
    ours({ key: 'ours-query', label: 'ours, context.query callback (raw query path)', callback: 'query' }),
    // Diagnostic: the same listener writing the post with the docs' Post.create (docs/callbacks-and-listeners.md) instead of the
    // peers' INSERT, to show what Sequelize's model layer costs per message.
    ours({ key: 'ours-model', label: 'ours, Post.create callback (model layer)', callback: 'model' }),
    // Diagnostic: two claim transactions at once per process (the default is 1: see docs/callbacks-and-listeners.md, "Concurrency").
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

/**
 * W1's warm rows (diagnostic): ours and the two ceiling loops again, timed only after their
 * workers drained half as many messages untimed. At 4 processes each worker of a 20,000-message
 * drain handles 5,000, and a fifth of its CPU goes to V8 compiling its JavaScript (bench:profile
 * --perf); these rows show each at its steady state, as a long-running listener is.
 */
export function warmDrainSystems(): QueueSystem[] {
  const warm = (system: QueueSystem): QueueSystem => ({ ...system, key: `${system.key}-warm`, label: `${system.label}, warmed up` });
  return [warm(ours()), warm(ceiling({ savepoints: false })), warm(ceiling({ savepoints: false, sequelize: true }))];
}

const DRAIN_FIGURES = [
  { name: 'rate', unit: 'msg/s' },
  { name: 'workerCpuMsPerK', unit: 'worker CPU ms/1k' },
  { name: 'postgresCpuMsPerK', unit: 'PG CPU ms/1k' },
];

/** W1: n stored messages drained by 1, 2 and 4 processes (quick: 2), every system, interleaved per run. */
export async function w1(ctx: BenchContext, options: { n: number; processes: number[] }): Promise<void> {
  const warmSystems = warmDrainSystems();
  const warm = new Set(warmSystems.map((system) => system.key));
  const systems = [...drainSystems(), ...warmSystems];
  for (const processes of options.processes) {
    for (let run = 1; run <= ctx.runs; run++) {
      for (const system of systems) {
        const row = ctx.results.row({
          workload: 'W1', case: `${options.n} msgs, ${processes} proc`, system: system.label, key: system.key,
          metric: 'rate', figures: DRAIN_FIGURES, better: 'higher',
          note: (system.key.startsWith('ours-') && system.key !== 'ours-batch' && system.key !== 'ours-query') || warm.has(system.key) ? 'diagnostic' : undefined,
        });
        const result = await drainOnce(ctx, system, options.n, processes, warm.has(system.key) ? { warmup: options.n / 2 } : {});
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

/**
 * The systems W6 compares: ours at its best and at graphile-worker's concurrencies (10 and 50
 * messages in hand per process: callbackConcurrency N over claims of N), graphile-worker at
 * concurrency 10 and 50, without and with its localQueue (0.17; 0.18 at 50), pg-boss 10 and pg-boss
 * 12 (transactional, a batch's jobs at once).
 */
export function ioSystems(): QueueSystem[] {
  const graphileAt = (concurrency: number, localQueue: boolean, version?: '0.18') => graphile({
    localQueue, concurrency, ioMs: W6_IO_MS, version,
    key: `graphile${localQueue ? '-lq' : ''}${version ? '-018' : ''}-c${concurrency}`,
    label: `graphile-worker${version ? ' 0.18 (Node 22)' : ''}${localQueue ? ' localQueue 500,' : ''} concurrency ${concurrency}`,
  });
  const oursAt = (concurrency: number) => ours({ key: `ours-cc${concurrency}`, label: `ours, callbackConcurrency ${concurrency}, batchSize ${concurrency}`, ioMs: W6_IO_MS, batchSize: concurrency, callbackConcurrency: concurrency });
  return [
    ours({ label: 'sequelize-pgpubsub, callbackConcurrency 100', ioMs: W6_IO_MS, batchSize: 100, callbackConcurrency: 100, concurrency: 2 }),
    oursAt(10),
    oursAt(50),
    ours({ key: 'ours-claims', label: 'ours, concurrency 10 (claim transactions), batchSize 5', ioMs: W6_IO_MS, batchSize: 5, concurrency: 10 }),
    graphileAt(10, false),
    graphileAt(50, false),
    graphileAt(10, true),
    graphileAt(50, true),
    graphileAt(50, true, '0.18'),
    pgboss12({ ioMs: W6_IO_MS, key: 'pgboss12-io', label: "pg-boss 12 (Node 22) transactional, batchSize 200, a batch's jobs at once" }),
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
