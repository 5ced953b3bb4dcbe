/**
 * W9, beyond one database: the relay's rate into JetStream (one replica, and three on a
 * three-server cluster) at 1 and 2 relay processes, and the whole path with the inbox (database →
 * relay → JetStream → inbox → database): its throughput, and its latency from the producer's
 * commit to the callback's start, beside our own listener on the same rows in the same run.
 * Targets: the relay ≥ 80% of our onBatch drain; the path's throughput ≥ our per-message
 * listener's; its p99 ≤ 3× the listener's.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { type NatsServer, natsCluster, natsServer, natsServerProblem } from '../../dev/nats';
import { insertAuthors } from '../support/db';
import { treeCpuSeconds } from '../support/proc';
import type { RunResult } from '../results';
import { ours } from '../systems/ours';
import { throughNats } from '../systems/nats';
import type { QueueSystem } from '../systems/types';
import { drainOnce } from './drain';
import { latencyOnce } from './latency';
import { type BenchContext, onFreshDatabase } from './context';

/** The relay alone: n stored notifications, the clock from their commit to the outbox emptied into the stream. */
async function relayOnce(ctx: BenchContext, system: QueueSystem, n: number, processes: number): Promise<RunResult> {
  return onFreshDatabase(ctx, `${system.key}_${processes}`, async (url) => {
    await system.prepare(url);
    const workers = await system.start(url, processes);
    const poller = new Client({ connectionString: url, application_name: 'bench-poller' });
    await poller.connect();
    try {
      const pids = workers.pids();
      const cpu0 = treeCpuSeconds(pids);
      const left = async () => Number((await poller.query<{ n: string }>('SELECT count(*) AS n FROM pgpubsub.notification')).rows[0].n);
      await insertAuthors(url, n);
      const t0 = performance.now();
      let progressAt = t0;
      for (let remaining = n; remaining > 0;) {
        await sleep(25);
        const now = await left();
        if (now < remaining) progressAt = performance.now();
        remaining = now;
        if (performance.now() - progressAt > 30_000) throw new Error(`stalled with ${remaining} of ${n} stored`);
      }
      const seconds = (performance.now() - t0) / 1000;
      return { ok: true, values: { rate: n / seconds, seconds, workerCpuMsPerK: ((treeCpuSeconds(pids) - cpu0) * 1e6) / n } };
    } finally {
      await poller.end().catch(() => undefined);
      await workers.stop();
    }
  });
}

export async function w9(ctx: BenchContext, options: { n: number; processes: number[]; latencyMs: number }): Promise<void> {
  const problem = natsServerProblem();
  if (problem) throw new Error(`W9 needs nats-server: ${problem}`);
  const single: NatsServer[] = [await (await natsServer()).start()];
  const cluster = ctx.quick ? [] : await natsCluster('w9');
  const figures = [{ name: 'rate', unit: 'msg/s' }, { name: 'workerCpuMsPerK', unit: 'worker CPU ms/1k' }];
  try {
    for (const processes of options.processes) {
      const kase = `${options.n} msgs, ${processes} proc`;
      const rows: Array<[QueueSystem, 'relay' | 'drain']> = [
        [ours({ key: 'ours', label: 'sequelize-pgpubsub (listener, per message)' }), 'drain'],
        [ours({ key: 'ours-batch', label: 'ours, onBatch callback (one bulkCreate per claim of 500)', callback: 'batch', batchSize: 500 }), 'drain'],
        [throughNats({ key: 'relay-r1', label: 'relay into JetStream, 1 replica', servers: () => single, replicas: 1, inbox: false }), 'relay'],
        ...(cluster.length ? [[throughNats({ key: 'relay-r3', label: 'relay into JetStream, 3 replicas (3 servers)', servers: () => cluster, replicas: 3, inbox: false }), 'relay'] as [QueueSystem, 'relay']] : []),
        [throughNats({ key: 'inbox-r1', label: 'relay + inbox, end to end (1 replica)', servers: () => single, replicas: 1, inbox: true }), 'drain'],
        ...(cluster.length ? [[throughNats({ key: 'inbox-r3', label: 'relay + inbox, end to end (3 replicas)', servers: () => cluster, replicas: 3, inbox: true }), 'drain'] as [QueueSystem, 'drain']] : []),
      ];
      for (const [system, how] of rows) {
        const row = ctx.results.row({ workload: 'W9', case: kase, system: system.label, key: system.key, metric: 'rate', better: 'higher', figures });
        for (let attempt = 1; attempt <= ctx.runs; attempt++) {
          const result = how === 'relay' ? await relayOnce(ctx, system, options.n, processes) : await drainOnce(ctx, system, options.n, processes);
          row.runs.push(result);
          ctx.log(`W9 ${kase} run ${attempt}/${ctx.runs} ${system.label}: ${result.ok ? `${result.values.rate.toFixed(0)} msg/s` : `FAILED: ${result.error}`}`);
        }
      }
    }
    // Latency, commit to callback start, at 100 inserts/s: our listener, then the path through JetStream.
    const kase = `100 inserts/s, ${options.latencyMs / 1000} s, 1 proc`;
    for (const system of [ours({ key: 'ours', label: 'sequelize-pgpubsub (listener)' }), throughNats({ key: 'inbox-r1', label: 'relay + inbox, end to end (1 replica)', servers: () => single, replicas: 1, inbox: true })]) {
      const row = ctx.results.row({
        workload: 'W9', case: kase, system: system.label, key: system.key, metric: 'p50', better: 'lower',
        figures: [{ name: 'p50', unit: 'ms p50' }, { name: 'p95', unit: 'ms p95' }, { name: 'p99', unit: 'ms p99' }],
      });
      for (let attempt = 1; attempt <= ctx.runs; attempt++) {
        const result = await latencyOnce(ctx, system, options.latencyMs);
        row.runs.push(result);
        ctx.log(`W9 latency run ${attempt}/${ctx.runs} ${system.label}: ${result.ok ? `p50 ${result.values.p50.toFixed(2)} ms, p99 ${result.values.p99.toFixed(2)} ms` : `FAILED: ${result.error}`}`);
      }
    }
  } finally {
    await Promise.all([...single, ...cluster].map((server) => server.destroy()));
  }
}
