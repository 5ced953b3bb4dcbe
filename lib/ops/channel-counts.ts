/**
 * The status's counts per channel, at a bounded cost: the stored channels found by skip scans of
 * the indexes (one probe per channel), and each count read from its index (index-only where it
 * can be), up to COUNT_CAP rows. Past it, the channel's counts are estimates from a sample of the
 * table's pages (TABLESAMPLE SYSTEM, about SAMPLE_PAGES of them), and the channel says so
 * (`estimated`). The planner's estimates would not do: its statistics take channel and state as
 * independent, and a queue's channels are anything but (one channel holding most failed rows).
 */
import type { LibraryObjects } from '../db/objects';
import { type Reader, selectRows, selectBounded } from '../db/select';
import { storedChannelsSql } from '../db/store';
import type { ChannelStatus } from './admin-types';

/** How many rows a count reads at most: past it, the channel's counts are a sample's estimates. */
export const COUNT_CAP = 20_000;
/** How many of the table's pages a sample for the estimates reads (about 4 MB). */
const SAMPLE_PAGES = 500;
/** The oldest due notification is looked for among this many, the first in due order. */
const OLDEST_AMONG = 1000;

/** A channel's counts, as the status shows them. */
export type ChannelCounts = Pick<ChannelStatus, 'due' | 'waiting' | 'failed' | 'blocked' | 'oldestDueAgeMs' | 'estimated'>;

interface Row {
  channel: string;
  due: number; behind: number; oldest_due_ms: number | null; seen_due: number;
  later: number; waiting_false: number; failed: number; blocked: number;
}

/** The conditions of each count (on `n`), for the counts and their samples. */
const STATES = {
  due: 'n.failed_at IS NULL AND n.head IS NOT FALSE AND n.available_at <= pg_catalog.now()',
  later: 'n.failed_at IS NULL AND n.head IS NOT FALSE AND n.available_at > pg_catalog.now()',
  waitingFalse: 'n.failed_at IS NULL AND n.head IS FALSE AND n.ordering_key IS NOT NULL',
  failed: 'n.failed_at IS NOT NULL',
  blocked: "n.failed_at IS NOT NULL AND n.ordering_key LIKE 'b:%'",
} as const;

/** The counts of every channel stored in the table or named in `names`. */
export async function countChannels(via: Reader, objects: LibraryObjects, names: readonly string[]): Promise<Map<string, ChannelCounts>> {
  const n = objects.notificationTable;
  const limit = COUNT_CAP + 1;
  // Bounded: each count an index range under its cap, never the table (a channel with no rows
  // would otherwise cost a sequential scan of the whole table; lib/db/select.ts).
  const rows = await selectBounded<Row>(via,
    `WITH RECURSIVE ${storedChannelsSql(n, 'pending', 's.failed_at IS NULL AND s.head IS NOT FALSE')}, ${storedChannelsSql(n, 'failing', 's.failed_at IS NOT NULL')},
     names AS (SELECT channel FROM pending WHERE channel IS NOT NULL UNION SELECT channel FROM failing WHERE channel IS NOT NULL
               UNION SELECT pg_catalog.unnest($1::text[]))
     SELECT names.channel, d.seen - b.behind AS due, b.behind, o.oldest_due_ms, d.seen AS seen_due, l.later, w.waiting_false, f.failed, f.blocked
       FROM names
       -- Due now (index-only), less the ordered rows behind an earlier stored one of their key whose
       -- head is not yet known (few: listeners mark them before each claim); the oldest due among
       -- the first OLDEST_AMONG in due order.
      CROSS JOIN LATERAL (SELECT pg_catalog.count(*)::int AS seen FROM (SELECT FROM ${n} AS n WHERE n.channel = names.channel AND ${STATES.due} LIMIT ${limit}) AS x) AS d
      CROSS JOIN LATERAL (SELECT pg_catalog.count(*)::int AS behind FROM (SELECT FROM ${n} AS n
                            WHERE n.head IS NULL AND n.ordering_key IS NOT NULL AND n.failed_at IS NULL AND n.channel = names.channel AND n.available_at <= pg_catalog.now()
                              AND EXISTS (SELECT FROM ${n} AS e WHERE e.channel = n.channel AND e.ordering_key = n.ordering_key AND e.id < n.id) LIMIT ${limit}) AS x) AS b
      CROSS JOIN LATERAL (SELECT (extract(epoch FROM pg_catalog.now() - pg_catalog.min(r.created_at)) * 1000)::float8 AS oldest_due_ms
                            FROM (SELECT n.created_at FROM ${n} AS n WHERE n.channel = names.channel AND ${STATES.due}
                                     AND (n.ordering_key IS NULL OR n.head IS TRUE OR NOT EXISTS (
                                           SELECT FROM ${n} AS e WHERE e.channel = n.channel AND e.ordering_key = n.ordering_key AND e.id < n.id))
                                   ORDER BY n.available_at, n.id LIMIT ${OLDEST_AMONG}) AS r) AS o
      CROSS JOIN LATERAL (SELECT pg_catalog.count(*)::int AS later FROM (SELECT FROM ${n} AS n WHERE n.channel = names.channel AND ${STATES.later} LIMIT ${limit}) AS x) AS l
      CROSS JOIN LATERAL (SELECT pg_catalog.count(*)::int AS waiting_false FROM (SELECT FROM ${n} AS n WHERE n.channel = names.channel AND ${STATES.waitingFalse} LIMIT ${limit}) AS x) AS w
      CROSS JOIN LATERAL (SELECT pg_catalog.count(*)::int AS failed, pg_catalog.count(*) FILTER (WHERE x.ordering_key LIKE 'b:%')::int AS blocked
                            FROM (SELECT n.ordering_key FROM ${n} AS n WHERE n.channel = names.channel AND ${STATES.failed} LIMIT ${limit}) AS x) AS f`,
    [names],
  );
  const over = rows.filter((row) => [row.seen_due, row.later, row.waiting_false, row.failed].some((count) => count > COUNT_CAP));
  const sampled = over.length ? await sampleCounts(via, n, over.map((row) => row.channel)) : new Map<string, Sampled>();
  const counts = new Map<string, ChannelCounts>();
  for (const row of rows) {
    const sample = sampled.get(row.channel);
    // A count past the cap: the sample's, and never below what the count saw.
    const pick = (count: number, what: keyof Sampled) => (count > COUNT_CAP && sample ? Math.max(COUNT_CAP + 1, sample[what]) : count);
    counts.set(row.channel, {
      due: row.seen_due > COUNT_CAP && sample ? Math.max(COUNT_CAP + 1 - row.behind, sample.due - row.behind) : row.due,
      waiting: row.behind + pick(row.later, 'later') + pick(row.waiting_false, 'waitingFalse'),
      failed: pick(row.failed, 'failed'),
      blocked: row.failed > COUNT_CAP && sample ? sample.blocked : row.blocked,
      oldestDueAgeMs: row.oldest_due_ms,
      estimated: sample !== undefined,
    });
  }
  return counts;
}

interface Sampled { due: number; later: number; waitingFalse: number; failed: number; blocked: number }

/**
 * Estimates of the counts of `channels` from a sample of about SAMPLE_PAGES of the table's pages
 * (TABLESAMPLE SYSTEM): an unbiased estimate at a cost that does not grow with the table.
 */
async function sampleCounts(via: Reader, table: string, channels: string[]): Promise<Map<string, Sampled>> {
  const rows = await selectRows<{ channel: string; fraction: number } & Sampled>(via,
    `WITH size AS (SELECT greatest(c.relpages, 1) AS pages FROM pg_catalog.pg_class AS c WHERE c.oid = '${table}'::regclass),
          share AS (SELECT least(100, 100.0 * ${SAMPLE_PAGES} / size.pages)::float4 AS percent FROM size)
     SELECT n.channel, (SELECT percent FROM share) / 100 AS fraction,
            pg_catalog.count(*) FILTER (WHERE ${STATES.due})::int AS due,
            pg_catalog.count(*) FILTER (WHERE ${STATES.later})::int AS later,
            pg_catalog.count(*) FILTER (WHERE ${STATES.waitingFalse})::int AS "waitingFalse",
            pg_catalog.count(*) FILTER (WHERE ${STATES.failed})::int AS failed,
            pg_catalog.count(*) FILTER (WHERE ${STATES.blocked})::int AS blocked
       FROM ${table} AS n TABLESAMPLE SYSTEM ((SELECT percent FROM share))
      WHERE n.channel = ANY ($1::text[]) GROUP BY n.channel`,
    [channels],
  );
  const scale = (count: number, fraction: number) => Math.round(count / fraction);
  return new Map(rows.map((row) => [row.channel, {
    due: scale(row.due, row.fraction), later: scale(row.later, row.fraction), waitingFalse: scale(row.waitingFalse, row.fraction),
    failed: scale(row.failed, row.fraction), blocked: scale(row.blocked, row.fraction),
  }]));
}
