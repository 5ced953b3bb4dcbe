import os from 'node:os';
import { Client } from 'pg';
import { openApp } from '../../dev/example-app';
import {
  dropChannelTriggers, dropQueueIndexes, migrateApp, disableWakeUps, rewriteChannelTriggers, withClient,
} from '../support/db';
import type { RunResult } from '../results';
import { installAddJobTrigger, prepareGraphile } from '../systems/graphile';
import { holdListening } from '../../lib/db/wake-locks';
import { ours } from '../systems/ours';
import type { Workers } from '../systems/types';
import { machineBusySeconds, treeCpuSeconds } from '../support/proc';
import { type BenchContext, onFreshDatabase } from './context';

/** What the library's trigger stored: one notification per inserted row. */
const STORED = 'SELECT count(*)::int AS n FROM pgpubsub.notification';

/** A producer-side setup: the authors table with or without something enqueueing on insert. */
interface ProducerVariant {
  key: string;
  label: string;
  note?: string;
  prepare(url: string): Promise<void>;
  /**
   * SQL counting what the inserts left behind, which must equal the rows inserted (stored
   * notifications, jobs; plus posts when listeners consume meanwhile), or null for nothing.
   */
  enqueued: string | null;
  /** `pgpubsub listen --processes N` running during the inserts (W3b). */
  listeners?: number;
  /** A connection that LISTENs and says it listens, but never claims: every commit NOTIFYs (W3b). */
  idleListener?: boolean;
}

const VARIANTS: Record<string, ProducerVariant> = {
  plain: {
    key: 'plain', label: 'no channel (plain insert)',
    async prepare(url) { await migrateApp(url); await dropChannelTriggers(url); },
    enqueued: null,
  },
  ours: {
    key: 'ours', label: 'sequelize-pgpubsub channel, no listener running',
    prepare: migrateApp,
    enqueued: STORED,
  },
  oursNoNotify: {
    key: 'ours-store-only', label: 'our trigger, stores without waking', note: 'diagnostic',
    async prepare(url) { await migrateApp(url); await disableWakeUps(url); },
    enqueued: STORED,
  },
  oursWaking: {
    key: 'ours-waking', label: 'ours, a listener that never drains (every commit NOTIFYs)', note: 'diagnostic',
    prepare: migrateApp,
    enqueued: STORED,
    idleListener: true,
  },
  oursListening: {
    key: 'ours-listening', label: 'sequelize-pgpubsub channel, 2 listeners draining',
    prepare: migrateApp,
    // Each author is either processed (one post) or still stored, never both and never neither.
    enqueued: 'SELECT (SELECT count(*) FROM pgpubsub.notification) + (SELECT count(DISTINCT author_id) FROM posts)::int AS n',
    listeners: 2,
  },
  // Designs of the stored row (diagnostic): what a cheaper row would buy producers, measured
  // before building it. None of them runs a listener: they only store.
  designPkOnly: {
    key: 'design-pk-only', label: 'design: the queue table with its primary key only', note: 'diagnostic',
    async prepare(url) { await migrateApp(url); await dropQueueIndexes(url); },
    enqueued: STORED,
  },
  designSlim: {
    key: 'design-slim', label: 'design: a payload of op, old and new only', note: 'diagnostic',
    async prepare(url) { await migrateApp(url); await rewriteChannelTriggers(url, slimPayload); },
    enqueued: STORED,
  },
  designLean: {
    key: 'design-lean', label: 'design: both (primary key only, payload of op, old and new)', note: 'diagnostic',
    async prepare(url) { await migrateApp(url); await dropQueueIndexes(url); await rewriteChannelTriggers(url, slimPayload); },
    enqueued: STORED,
  },
  triggerFloor: {
    key: 'trigger-floor', label: 'a statement trigger that stores nothing (the floor of any trigger design)', note: 'diagnostic',
    async prepare(url) { await migrateApp(url); await rewriteChannelTriggers(url, emptyBody); },
    enqueued: null,
  },
  addJob: {
    key: 'graphile-add-job', label: 'graphile-worker add_job row trigger',
    async prepare(url) { await prepareGraphile(url); await installAddJobTrigger(url); },
    enqueued: 'SELECT count(*)::int AS n FROM graphile_worker._private_jobs',
  },
};

/**
 * A trigger storing the smaller payload a redesign could store: the op and the rows, without what
 * the listener knows from the channel (schema, table, model) and without an empty context.
 */
function slimPayload(definition: string): string {
  return definition
    .replace(/'schema', '[^']*', 'table', '[^']*', 'model', '[^']*', /g, '')
    .replace(/, 'context', context\)/g, ')');
}

/** The same statement trigger (with its transition table) doing nothing. */
function emptyBody(definition: string): string {
  return definition.replace(/^AS \$function\$$[\s\S]*^\$function\$$/m, 'AS $function$ BEGIN RETURN NULL; END $function$');
}

/** Every inserted author was enqueued exactly once (the run is void otherwise). */
async function checkEnqueued(url: string, variant: ProducerVariant, inserted: number): Promise<string | undefined> {
  return withClient(url, async (c) => {
    const authors = (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM authors')).rows[0].n;
    if (authors !== inserted) return `expected ${inserted} authors, found ${authors}`;
    if (!variant.enqueued) return undefined;
    const enqueued = Number((await c.query<{ n: number }>(variant.enqueued)).rows[0].n);
    if (variant.listeners) {
      const { rows: [posts] } = await c.query<{ total: number; distinct: number }>('SELECT count(*)::int AS total, count(DISTINCT author_id)::int AS distinct FROM posts');
      if (posts.total !== posts.distinct) return `${posts.total - posts.distinct} duplicate post(s)`;
    }
    return enqueued === inserted ? undefined : `expected ${inserted} enqueued, found ${enqueued}`;
  });
}

/** W3a, one run: Author.bulkCreate of n rows in one statement, timed around the call. */
async function bulkInsertOnce(ctx: BenchContext, variant: ProducerVariant, n: number): Promise<RunResult> {
  return onFreshDatabase(ctx, `${variant.key}_bulk`, async (url) => {
    await variant.prepare(url);
    const { sequelize, Author } = openApp(url);
    try {
      await sequelize.authenticate(); // connect first: the timing is the statement, not the connection
      const rows = Array.from({ length: n }, (_, i) => ({ name: `Author ${i + 1}` }));
      const t0 = performance.now();
      await Author.bulkCreate(rows);
      const ms = performance.now() - t0;
      const error = await checkEnqueued(url, variant, n);
      return { ok: !error, error, values: { ms, rowsPerSec: n / (ms / 1000) } };
    } finally {
      await sequelize.close();
    }
  });
}

/** W3b, one run: `clients` connections each committing single-row inserts back to back for `durationMs`. */
async function concurrentInsertsOnce(ctx: BenchContext, variant: ProducerVariant, clients: number, durationMs: number): Promise<RunResult> {
  return onFreshDatabase(ctx, `${variant.key}_commits`, async (url) => {
    await variant.prepare(url);
    const listeners: Workers | undefined = variant.listeners ? await ours().start(url, variant.listeners) : undefined;
    const idle = variant.idleListener ? new Client({ connectionString: url, application_name: 'bench-idle-listener' }) : undefined;
    if (idle) {
      await idle.connect();
      await idle.query('LISTEN author_created');
      await holdListening(idle, ['author_created']);
    }
    const connections = await Promise.all(Array.from({ length: clients }, async () => {
      const client = new Client({ connectionString: url, application_name: 'bench-producer' });
      await client.connect();
      return client;
    }));
    try {
      let commits = 0;
      const listenerPids = listeners?.pids() ?? [];
      const busy0 = machineBusySeconds();
      const listenerCpu0 = treeCpuSeconds(listenerPids);
      const deadline = performance.now() + durationMs;
      const t0 = performance.now();
      await Promise.all(connections.map(async (client) => {
        while (performance.now() < deadline) {
          await client.query('INSERT INTO authors (name) VALUES ($1)', ['Author']);
          commits++;
        }
      }));
      const seconds = (performance.now() - t0) / 1000;
      // Where the CPU went: the whole machine's (producers, their backends, listeners, WAL) and the listeners' own.
      const busy = machineBusySeconds() - busy0;
      const listenerCpu = treeCpuSeconds(listenerPids) - listenerCpu0;
      // Listeners stop gracefully (finishing the batch in hand) before the books are checked.
      await listeners?.stop();
      const error = await checkEnqueued(url, variant, commits);
      const values: Record<string, number> = {
        commitsPerSec: commits / seconds,
        machineCpuUsPerCommit: (busy * 1e6) / commits,
        machineBusyPercent: (busy / (seconds * os.cpus().length)) * 100,
      };
      if (listeners) values.listenerCpuUsPerCommit = (listenerCpu * 1e6) / commits;
      return { ok: !error, error, values };
    } finally {
      await Promise.all(connections.map((client) => client.end().catch(() => undefined)));
      await idle?.end().catch(() => undefined);
      await listeners?.stop();
    }
  });
}

/** W3a: bulk insert without a channel, with ours, with graphile-worker's add_job row trigger. */
export async function w3a(ctx: BenchContext, options: { n: number }): Promise<void> {
  const variants = [VARIANTS.plain, VARIANTS.ours, VARIANTS.designPkOnly, VARIANTS.designSlim, VARIANTS.designLean, VARIANTS.triggerFloor, VARIANTS.addJob];
  for (let run = 1; run <= ctx.runs; run++) {
    for (const variant of variants) {
      const row = ctx.results.row({
        workload: 'W3a', case: `bulkCreate ${options.n} rows`, system: variant.label, key: variant.key,
        metric: 'ms', better: 'lower', figures: [{ name: 'ms', unit: 'ms' }, { name: 'rowsPerSec', unit: 'rows/s' }], note: variant.note,
      });
      const result = await bulkInsertOnce(ctx, variant, options.n);
      row.runs.push(result);
      ctx.log(`W3a run ${run}/${ctx.runs} ${variant.label}: ${result.ok ? `${result.values.ms.toFixed(0)} ms` : `FAILED: ${result.error}`}`);
    }
  }
}

/**
 * W3b: 8 clients of single-row insert transactions: no channel; ours with no listener running
 * (producers find nobody listening and skip the NOTIFY); ours while 2 listeners drain (the one
 * draining holds the drain lock, so producers skip the NOTIFY, but on 2 cores the listeners also
 * take CPU from the producers); ours with a listener that listens and never drains, so every
 * commit NOTIFYs (diagnostic: the worst case); our trigger storing the row without any wake-up
 * (diagnostic: the bound); graphile-worker's add_job row trigger.
 */
export async function w3b(ctx: BenchContext, options: { durationMs: number; clients: number }): Promise<void> {
  const variants = [
    VARIANTS.plain, VARIANTS.ours, VARIANTS.oursListening, VARIANTS.oursWaking, VARIANTS.oursNoNotify,
    VARIANTS.designPkOnly, VARIANTS.designSlim, VARIANTS.designLean, VARIANTS.triggerFloor, VARIANTS.addJob,
  ];
  for (let run = 1; run <= ctx.runs; run++) {
    for (const variant of variants) {
      const row = ctx.results.row({
        workload: 'W3b', case: `${options.clients} clients, ${options.durationMs / 1000} s`, system: variant.label, key: variant.key,
        metric: 'commitsPerSec', better: 'higher', note: variant.note,
        figures: [
          { name: 'commitsPerSec', unit: 'commits/s' },
          { name: 'machineCpuUsPerCommit', unit: 'machine CPU µs/commit' },
          { name: 'machineBusyPercent', unit: '% of the cores busy' },
          ...(variant.listeners ? [{ name: 'listenerCpuUsPerCommit', unit: 'listeners µs/commit' }] : []),
        ],
      });
      const result = await concurrentInsertsOnce(ctx, variant, options.clients, options.durationMs);
      row.runs.push(result);
      ctx.log(`W3b run ${run}/${ctx.runs} ${variant.label}: ${result.ok ? `${result.values.commitsPerSec.toFixed(0)} commits/s` : `FAILED: ${result.error}`}`);
    }
  }
}
