/**
 * The status (`admin.status()`, `pgpubsub status`): each channel's counts and the live listeners,
 * read from the database alone. It runs on the app's Sequelize, or on a plain node-postgres client
 * (`pgpubsub status --url`, which does not load the app); nothing here loads Sequelize at run time.
 */
import type { LibraryObjects } from '../db/objects';
import { HOLDER_LOCK, WAKE_LOCKS } from '../db/protocol';
import { type Reader, selectRows } from '../db/select';
import { readCleanup } from '../db/cleanup';
import { LISTENER_APPLICATION_NAME } from '../listener/options';
import { countChannels } from './channel-counts';
import type { ListenerStatus, Status } from './admin-types';

/**
 * Every channel named in `defined`, holding rows or paused, and every live listener of the
 * database `via` reads.
 */
export async function readStatus(via: Reader, objects: LibraryObjects, defined: readonly string[]): Promise<Status> {
  // Due: what a listener could claim now, as claim() decides (lib/ops/channel-counts.ts).
  const counts = await countChannels(via, objects, defined);
  const paused = (await selectRows<{ channel: string }>(via, `SELECT channel FROM ${objects.pausedTable}`)).map((row) => row.channel);
  // Messages an inbox (fed from NATS JetStream) failed for good, read from the index on them.
  const inboxFailed = new Map((await selectRows<{ channel: string; n: number }>(via,
    `SELECT channel, count(*)::integer AS n FROM ${objects.inboxTable} WHERE failed_at IS NOT NULL GROUP BY channel`)).map((row) => [row.channel, row.n]));
  const names = [...new Set([...defined, ...counts.keys(), ...paused, ...inboxFailed.keys()])].sort();
  // The locks every live LISTEN connection holds (session locks vanish with a dead process's connection).
  const held = await selectRows<{ pid: number; client_addr: string | null; since: Date | null; kind: string | null; key: string | null }>(via,
    `SELECT a.pid, pg_catalog.host(a.client_addr) AS client_addr, a.backend_start AS since,
            CASE l.classid::bigint WHEN ${WAKE_LOCKS.listening} THEN 'listening' WHEN ${WAKE_LOCKS.draining} THEN 'draining' WHEN ${HOLDER_LOCK} THEN 'holder' END AS kind,
            -- The second key of a two-key advisory lock, back from oid to the integer it was.
            (CASE WHEN l.objid::bigint > 2147483647 THEN l.objid::bigint - 4294967296 ELSE l.objid::bigint END)::text AS key
       FROM pg_catalog.pg_stat_activity AS a
       LEFT JOIN pg_catalog.pg_locks AS l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      WHERE a.application_name = $1 AND a.datname = pg_catalog.current_database()
      ORDER BY a.backend_start, a.pid`,
    [LISTENER_APPLICATION_NAME],
  );
  // A channel's lock key is hashtext(channel).
  const hashes = await selectRows<{ channel: string; key: string }>(via,
    'SELECT c AS channel, pg_catalog.hashtext(c)::text AS key FROM pg_catalog.unnest($1::text[]) AS c',
    [names],
  );
  const channelOf = new Map(hashes.map((row) => [row.key, row.channel]));
  const listeners = new Map<number, ListenerStatus>();
  for (const row of held) {
    let listener = listeners.get(row.pid);
    if (!listener) {
      listeners.set(row.pid, listener = {
        backendPid: row.pid, clientAddress: row.client_addr, host: null, pid: null, startedAt: null, since: row.since, channels: [], draining: [], holders: [], inHand: [],
      });
    }
    if (row.kind === 'holder') listener.holders.push(Number(row.key));
    const channel = row.key === null ? undefined : channelOf.get(row.key);
    if (channel && row.kind === 'listening') listener.channels.push(channel);
    if (channel && row.kind === 'draining') listener.draining.push(channel);
  }
  const holders = [...listeners.values()].flatMap((listener) => listener.holders);
  if (holders.length) {
    const inHand = await selectRows<{ holder: number; id: string }>(via,
      `SELECT m.holder, n.id::text AS id FROM ${objects.inflightTable} AS m
         JOIN ${objects.notificationTable} AS n ON n.id = ANY(m.ids)
        -- What the batch left failed, or waiting for a retry, is no longer in hand.
        WHERE m.holder = ANY($1::integer[]) AND n.failed_at IS NULL AND n.available_at <= pg_catalog.now() ORDER BY n.id`,
      [holders],
    );
    for (const listener of listeners.values()) {
      listener.inHand = inHand.filter((row) => listener.holders.includes(row.holder)).map((row) => row.id);
    }
  }
  // What live listeners report of themselves (only the rows of the live connections found above count).
  const reports = await selectRows<{ backend_pid: number; host: string; pid: number; started_at: Date; recent: boolean; channels: Record<string, { lagMs?: number | null }> }>(via,
    `SELECT backend_pid, host, pid, started_at, reported_at > pg_catalog.now() - interval '60 seconds' AS recent, channels
       FROM ${objects.listenerTable} WHERE backend_pid = ANY($1::integer[])`,
    [[...listeners.keys()]],
  );
  const recentLag = new Map<string, number>();
  for (const report of reports) {
    Object.assign(listeners.get(report.backend_pid)!, { host: report.host, pid: report.pid, startedAt: report.started_at });
    if (!report.recent) continue;
    for (const [channel, figures] of Object.entries(report.channels ?? {})) {
      const lag = figures?.lagMs;
      if (typeof lag === 'number') recentLag.set(channel, Math.max(recentLag.get(channel) ?? 0, lag));
    }
  }
  const [{ at }] = await selectRows<{ at: Date }>(via, 'SELECT pg_catalog.now() AS at');
  const cleanup = await readCleanup(objects, via);
  const all = [...listeners.values()];
  for (const listener of all) {
    listener.channels.sort();
    listener.draining.sort();
    listener.holders.sort((a, b) => a - b);
  }
  return {
    channels: names.map((channel) => {
      const row = counts.get(channel);
      return {
        channel,
        defined: defined.includes(channel),
        due: row?.due ?? 0,
        waiting: row?.waiting ?? 0,
        failed: row?.failed ?? 0,
        blocked: row?.blocked ?? 0,
        oldestDueAgeMs: row?.oldestDueAgeMs ?? null,
        estimated: row?.estimated ?? false,
        recentLagMs: recentLag.get(channel) ?? null,
        listeners: all.filter((listener) => listener.channels.includes(channel)).length,
        draining: all.some((listener) => listener.draining.includes(channel)),
        paused: paused.includes(channel),
        inboxFailed: inboxFailed.get(channel) ?? 0,
      };
    }),
    listeners: all,
    cleanup,
    at,
  };
}
