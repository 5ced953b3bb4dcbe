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
import { decodeMessage } from '../channels/message';
import { PAUSE_CHANNEL } from '../listener/control-channels';
import { LIBRARY_QUERY, quoteLiteral } from '../db/sql-text';
import { readStatus } from './status';
import type { BlockedKey, FailedNotification, FailedNotificationDetail, FailedSelection, Status } from './admin-types';

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
    return readStatus(this.#sequelize, this.#objects, this.#channels().map((channel) => channel.name));
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
