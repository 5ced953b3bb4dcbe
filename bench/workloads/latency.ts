import { Client } from 'pg';
import { verifyPosts } from '../support/db';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../../dev/eventually';
import { monotonicMicros, percentile } from '../support/stats';
import type { RunResult } from '../results';
import { graphile, installAddJobTrigger } from '../systems/graphile';
import { ours } from '../systems/ours';
import type { PacedCommit, QueueSystem } from '../systems/types';
import { pgboss12 } from '../systems/pgboss';
import { type BenchContext, onFreshDatabase } from './context';

/** Samples from the first half second are dropped: connection and JIT warm-up, not steady state. */
const WARMUP_MS = 500;

/**
 * One latency run: a producer commits single-row author inserts paced at `perSecond`, noting the
 * monotonic time right after each COMMIT returns; the worker's callback writes its own start time
 * (same clock) into the post it creates. Latency = callback start − producer commit, per author.
 * One worker process, so the figure is the wake-up path, not load sharing.
 */
export async function latencyOnce(ctx: BenchContext, system: QueueSystem, durationMs: number, perSecond = 100): Promise<RunResult> {
  return onFreshDatabase(ctx, `${system.key}_latency`, async (url) => {
    await system.prepare(url);
    const workers = await system.start(url, 1);
    const producer = new Client({ connectionString: url, application_name: 'bench-checker' });
    await producer.connect();
    try {
      const commits = await (system.producePaced ?? pacedInserts)(url, durationMs, perSecond);
      const committedAt = new Map(commits.map((c) => [c.id, c.committedAt]));
      const startedAt = new Map(commits.map((c) => [c.id, c.offsetMs]));
      const n = committedAt.size;
      try {
        await eventually(async () => Number((await producer.query('SELECT count(*) AS n FROM posts')).rows[0].n) >= n, 'every insert to get its post', 30_000, 50);
      } finally {
        await workers.stop();
      }
      const check = await verifyPosts(url, n);
      const { rows: posts } = await producer.query<{ author_id: number; content: string }>('SELECT author_id, content FROM posts');
      const latencies = posts
        .filter((post) => startedAt.get(post.author_id)! >= WARMUP_MS)
        .map((post) => Number(BigInt(post.content) - committedAt.get(post.author_id)!) / 1000);
      return {
        ok: check.ok,
        error: check.ok ? undefined : check.detail,
        values: {
          p50: percentile(latencies, 50),
          p95: percentile(latencies, 95),
          p99: percentile(latencies, 99),
          max: percentile(latencies, 100),
          samples: latencies.length,
        },
      };
    } finally {
      await producer.end().catch(() => undefined);
      await workers.stop();
    }
  });
}

/**
 * W2's producer: author inserts paced at `perSecond`, each its own transaction (autocommit), whose
 * row trigger enqueues (ours: stores + NOTIFY; graphile-worker: add_job), noting the monotonic time
 * right after each COMMIT returns.
 */
async function pacedInserts(url: string, durationMs: number, perSecond: number): Promise<PacedCommit[]> {
  const producer = new Client({ connectionString: url, application_name: 'bench-producer' });
  await producer.connect();
  try {
    const commits: PacedCommit[] = [];
    const intervalMs = 1000 / perSecond;
    const t0 = performance.now();
    for (let i = 0; i * intervalMs < durationMs; i++) {
      const wait = t0 + i * intervalMs - performance.now();
      if (wait > 0) await sleep(wait);
      const { rows } = await producer.query<{ id: number }>('INSERT INTO authors (name) VALUES ($1) RETURNING id', [`Author ${i}`]);
      commits.push({ id: rows[0].id, committedAt: monotonicMicros(), offsetMs: performance.now() - t0 });
    }
    return commits;
  } finally {
    await producer.end();
  }
}

/** graphile-worker enqueueing from its documented row trigger (add_job per inserted author); 0.17, or 0.18 on Node 22. */
function graphileFromTrigger(localQueue: boolean, version?: '0.18'): QueueSystem {
  const system = graphile({ localQueue, version });
  return {
    ...system,
    async prepare(url: string) {
      await system.prepare(url);
      await installAddJobTrigger(url);
    },
  };
}

/**
 * W2: ours, graphile-worker 0.17 and 0.18 (localQueue; default too in a full run) and pg-boss 12
 * (LISTEN/NOTIFY, transactional; its producer send()s each job on the author's transaction, on
 * Node 22), one process each.
 */
export async function w2(ctx: BenchContext, options: { durationMs: number }): Promise<void> {
  const systems = [ours(), graphileFromTrigger(true), graphileFromTrigger(true, '0.18'), pgboss12(),
    ...(ctx.quick ? [] : [graphileFromTrigger(false), graphileFromTrigger(false, '0.18')])];
  for (let run = 1; run <= ctx.runs; run++) {
    for (const system of systems) {
      const row = ctx.results.row({
        workload: 'W2', case: `100 inserts/s, ${options.durationMs / 1000} s, 1 proc`, system: system.label, key: system.key,
        metric: 'p50', better: 'lower',
        figures: [{ name: 'p50', unit: 'ms p50' }, { name: 'p95', unit: 'ms p95' }, { name: 'p99', unit: 'ms p99' }],
      });
      const result = await latencyOnce(ctx, system, options.durationMs);
      row.runs.push(result);
      const v = result.values;
      ctx.log(`W2 run ${run}/${ctx.runs} ${system.label}: ${result.ok
        ? `p50 ${v.p50.toFixed(2)} ms, p95 ${v.p95.toFixed(2)} ms, p99 ${v.p99.toFixed(2)} ms, max ${v.max.toFixed(1)} ms (${v.samples} samples)`
        : `FAILED: ${result.error}`}`);
    }
  }
}
