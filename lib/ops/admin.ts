/**
 * The operator's view of the library, read from the database itself: how far behind each channel
 * is, which listeners are alive (their LISTEN connections and the locks they hold, so a dead
 * process never shows as alive), and the failed notifications, to look at, retry or purge.
 * `sequelize.pgpubsub.admin`; the `pgpubsub status` and `pgpubsub failed` commands print it.
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import type { LibraryObjects } from '../db/objects';
import { AdminUsageError } from '../errors';
import { HOLDER_LOCK } from '../db/inflight';
import { LISTENER_APPLICATION_NAME } from '../listener/options';
import { decodeMessage } from '../channels/message';
import { PAUSE_CHANNEL } from '../listener/control-channels';
import { LIBRARY_QUERY, quoteLiteral } from '../db/sql-text';
import { WAKE_LOCKS } from '../db/wake-locks';
import { readCleanup } from '../db/cleanup';
import { countChannels } from './channel-counts';
import type { BlockedKey, FailedNotification, FailedNotificationDetail, FailedSelection, ListenerStatus, Status } from './admin-types';

export type { BlockedKey, ChannelStatus, CleanupHolder, CleanupStatus, FailedNotification, FailedNotificationDetail, FailedSelection, ListenerStatus, Status } from './admin-types';


interface FailedRow { id: string; channel: string; attempts: number; last_error: string | null; created_at: Date; failed_at: Date; payload?: string }

const toFailed = (row: FailedRow): FailedNotification => ({
  id: row.id, channel: row.channel, attempts: row.attempts, lastError: row.last_error, createdAt: row.created_at, failedAt: row.failed_at,
});

export class Admin {
  readonly #sequelize: Sequelize;
  readonly #objects: LibraryObjects;
  readonly #channels: () => AnyChannel[];

  constructor(sequelize: Sequelize, objects: LibraryObjects, channels: () => AnyChannel[]) {
    this.#sequelize = sequelize;
    this.#objects = objects;
    this.#channels = channels;
  }

  #select<R extends object>(sql: string, bind: unknown[] = []): Promise<R[]> {
    return this.#sequelize.query<R>(sql, { bind, type: QueryTypes.SELECT, ...LIBRARY_QUERY });
  }

  /** Every channel defined here or holding rows, and every live listener. */
  async status(): Promise<Status> {
    const defined = this.#channels().map((channel) => channel.name);
    // Due: what a listener could claim now, as claim() decides (lib/ops/channel-counts.ts).
    const counts = await countChannels(this.#sequelize, this.#objects, defined);
    const paused = (await this.#select<{ channel: string }>(`SELECT channel FROM ${this.#objects.pausedTable}`)).map((row) => row.channel);
    const names = [...new Set([...defined, ...counts.keys(), ...paused])].sort();
    // The locks every live LISTEN connection holds (session locks vanish with a dead process's connection).
    const held = await this.#select<{ pid: number; client_addr: string | null; since: Date | null; kind: string | null; key: string | null }>(
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
    const hashes = await this.#select<{ channel: string; key: string }>(
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
      const inHand = await this.#select<{ holder: number; id: string }>(
        `SELECT m.holder, n.id::text AS id FROM ${this.#objects.inflightTable} AS m
           JOIN ${this.#objects.notificationTable} AS n ON n.id = ANY(m.ids)
          -- What the batch left failed, or waiting for a retry, is no longer in hand.
          WHERE m.holder = ANY($1::integer[]) AND n.failed_at IS NULL AND n.available_at <= pg_catalog.now() ORDER BY n.id`,
        [holders],
      );
      for (const listener of listeners.values()) {
        listener.inHand = inHand.filter((row) => listener.holders.includes(row.holder)).map((row) => row.id);
      }
    }
    // What live listeners report of themselves (only the rows of the live connections found above count).
    const reports = await this.#select<{ backend_pid: number; host: string; pid: number; started_at: Date; recent: boolean; channels: Record<string, { lagMs?: number | null }> }>(
      `SELECT backend_pid, host, pid, started_at, reported_at > pg_catalog.now() - interval '60 seconds' AS recent, channels
         FROM ${this.#objects.listenerTable} WHERE backend_pid = ANY($1::integer[])`,
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
    const [{ at }] = await this.#select<{ at: Date }>('SELECT pg_catalog.now() AS at');
    const cleanup = await readCleanup(this.#objects, this.#sequelize);
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
        };
      }),
      listeners: all,
      cleanup,
      at,
    };
  }

  /**
   * Pauses a channel: every listener stops claiming it (the batch in hand finishes), its
   * notifications stay stored, and producers go on storing them. Survives restarts. Resolves to
   * false when it was paused already.
   */
  async pause(channel: string): Promise<boolean> {
    return this.#order(channel, 'pause', `INSERT INTO ${this.#objects.pausedTable} (channel) VALUES ($1) ON CONFLICT (channel) DO NOTHING RETURNING channel`);
  }

  /** Resumes a paused channel: the listeners drain what it stored meanwhile. Resolves to false when it was not paused. */
  async resume(channel: string): Promise<boolean> {
    return this.#order(channel, 'resume', `DELETE FROM ${this.#objects.pausedTable} WHERE channel = $1 RETURNING channel`);
  }

  async #order(channel: string, verb: string, sql: string): Promise<boolean> {
    if (typeof channel !== 'string' || channel === '' || Buffer.byteLength(channel) > 63) {
      throw new AdminUsageError('PGPUBSUB_BAD_SELECTION', `${verb}: expected a channel name (1 to 63 bytes), got ${JSON.stringify(channel)}`);
    }
    return this.#sequelize.transaction(async (transaction) => {
      const changed = await this.#sequelize.query(sql, { bind: [channel], transaction, type: QueryTypes.SELECT, ...LIBRARY_QUERY });
      // Every listener reads the paused channels again at commit.
      if (changed.length) await this.#sequelize.query(`SELECT pg_catalog.pg_notify(${quoteLiteral(PAUSE_CHANNEL)}, $1)`, { bind: [channel], transaction, ...LIBRARY_QUERY });
      return changed.length > 0;
    });
  }

  /** Failed notifications, newest failure first (at most `limit`, default 100). */
  async failed(options: { channel?: string; since?: Date; limit?: number } = {}): Promise<FailedNotification[]> {
    const bind: unknown[] = [];
    let where = 'failed_at IS NOT NULL';
    if (options.channel !== undefined) where += ` AND channel = $${bind.push(options.channel)}`;
    if (options.since !== undefined) where += ` AND failed_at >= $${bind.push(options.since)}::timestamptz`;
    const rows = await this.#select<FailedRow>(
      `SELECT id::text AS id, channel, attempts, last_error, created_at, failed_at FROM ${this.#objects.notificationTable}
        WHERE ${where} ORDER BY failed_at DESC, id DESC LIMIT $${bind.push(options.limit ?? 100)}::integer`,
      bind,
    );
    return rows.map(toFailed);
  }

  /**
   * The keys of ordered channels held by a notification that failed for good (`afterFailure:
   * 'block'`), newest failure first (at most `limit`, default 100), with how many wait behind each.
   */
  async blocked(options: { channel?: string; limit?: number } = {}): Promise<BlockedKey[]> {
    const n = this.#objects.notificationTable;
    const bind: unknown[] = [];
    const channel = options.channel === undefined ? '' : ` AND h.channel = $${bind.push(options.channel)}`;
    const rows = await this.#select<{ channel: string; key: string; head_id: string; failed_at: Date; last_error: string | null; waiting: number }>(
      `SELECT h.channel, pg_catalog.substr(h.ordering_key, 3) AS key, h.id::text AS head_id, h.failed_at, h.last_error,
              (SELECT pg_catalog.count(*) FROM ${n} AS w WHERE w.channel = h.channel AND w.ordering_key = h.ordering_key AND w.failed_at IS NULL)::int AS waiting
         FROM ${n} AS h WHERE h.failed_at IS NOT NULL AND h.ordering_key LIKE 'b:%'${channel}
        ORDER BY h.failed_at DESC, h.id DESC LIMIT $${bind.push(options.limit ?? 100)}::integer`,
      bind,
    );
    return rows.map((row) => ({ channel: row.channel, key: row.key, headId: row.head_id, failedAt: row.failed_at, lastError: row.last_error, waiting: row.waiting }));
  }

  /** One failed notification with its payload; null when no failed notification has this id. */
  async failedOne(id: string | number): Promise<FailedNotificationDetail | null> {
    const [row] = await this.#select<FailedRow>(
      `SELECT id::text AS id, channel, attempts, last_error, created_at, failed_at, payload::text AS payload
         FROM ${this.#objects.notificationTable} WHERE id = $1::bigint AND failed_at IS NOT NULL`,
      [String(id)],
    );
    if (!row) return null;
    const detail: FailedNotificationDetail = { ...toFailed(row), op: null, old: null, new: null, payload: null, context: null, decodeError: null };
    const raw = JSON.parse(row.payload!) as Record<string, unknown>;
    const channel = this.#channels().find((c) => c.name === row.channel);
    if (!channel) {
      // No code here defines it: the stored JSON as it is.
      return { ...detail, op: typeof raw.op === 'string' ? raw.op : null, old: record(raw.old), new: record(raw.new), payload: raw.payload ?? null, context: raw.context ?? null };
    }
    try {
      const message = decodeMessage(channel, row.payload!, row.id);
      if ('payload' in message) return { ...detail, op: message.op, payload: message.payload, context: message.context };
      return {
        ...detail, op: message.op, context: message.context,
        old: message.old ? message.old.get({ plain: true }) : null,
        new: message.new ? message.new.get({ plain: true }) : null,
      };
    } catch (error) {
      return { ...detail, op: typeof raw.op === 'string' ? raw.op : null, old: record(raw.old), new: record(raw.new), context: raw.context ?? null, decodeError: (error as Error).message };
    }
  }

  /**
   * Makes failed notifications due again with fresh attempts (the error stays until one
   * succeeds), and wakes the listeners of their channels. Resolves to the ids retried.
   */
  async retry(selection: FailedSelection): Promise<string[]> {
    const { where, bind } = selectionSql(selection);
    return this.#sequelize.transaction(async (transaction) => {
      const rows = await this.#sequelize.query<{ id: string; channel: string }>(
        `UPDATE ${this.#objects.notificationTable} SET failed_at = NULL, attempts = 0, available_at = pg_catalog.now()
          WHERE failed_at IS NOT NULL AND ${where} RETURNING id::text AS id, channel`,
        { bind, transaction, type: QueryTypes.SELECT, ...LIBRARY_QUERY },
      );
      const channels = [...new Set(rows.map((row) => row.channel))];
      // Delivered at commit, as a producer's wake-up is.
      if (channels.length) {
        await this.#sequelize.query("SELECT pg_catalog.pg_notify(c, '') FROM pg_catalog.unnest($1::text[]) AS c", { bind: [channels], transaction, ...LIBRARY_QUERY });
      }
      return rows.map((row) => row.id).sort(byId);
    });
  }

  /** Deletes failed notifications. Resolves to the ids deleted. */
  async purge(selection: FailedSelection): Promise<string[]> {
    const { where, bind } = selectionSql(selection);
    const rows = await this.#sequelize.query<{ id: string }>(
      `DELETE FROM ${this.#objects.notificationTable} WHERE failed_at IS NOT NULL AND ${where} RETURNING id::text AS id`,
      { bind, type: QueryTypes.SELECT, ...LIBRARY_QUERY },
    );
    return rows.map((row) => row.id).sort(byId);
  }
}

const byId = (a: string, b: string) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0);

function record(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : null;
}

function selectionSql(selection: FailedSelection): { where: string; bind: unknown[] } {
  if ('ids' in selection) {
    const ids = selection.ids.map(String);
    const bad = ids.filter((id) => !/^\d+$/.test(id));
    if (bad.length || ids.length === 0) {
      throw new AdminUsageError('PGPUBSUB_BAD_SELECTION', `failed notifications: ids must be notification ids (positive integers)${bad.length ? `, got ${bad.join(', ')}` : ', got none'}`);
    }
    return { where: 'id = ANY($1::bigint[])', bind: [ids] };
  }
  if ('channel' in selection) return { where: 'channel = $1', bind: [selection.channel] };
  if ('failedBefore' in selection) return { where: 'failed_at < $1::timestamptz', bind: [selection.failedBefore] };
  if ('all' in selection && selection.all === true) return { where: 'true', bind: [] };
  throw new AdminUsageError('PGPUBSUB_BAD_SELECTION', 'failed notifications: say which: { ids }, { channel }, { failedBefore } or { all: true }');
}
