import { inspect } from 'node:util';
import type { Sequelize, Transaction } from 'sequelize';
import { type CustomChannel, MAX_DELAY_MS } from './channel';
import { LATEST_RUN_AT } from '../db/protocol';
import { NotifyPayloadError } from '../errors';
import type { LibraryObjects } from '../db/objects';
import { NOTIFY_PAYLOAD_LIMIT } from '../triggers/render';
import { LIBRARY_QUERY } from '../db/sql-text';
import { SENDS } from '../ops/tracing';

export interface NotifyOptions {
  /** Send as part of this transaction: the notification exists if and only if it commits. */
  transaction?: Transaction;
  /** Durable channels: due this many ms from now (by the server's clock), not at once. Wins over the channel's delayMs. */
  delayMs?: number;
  /** Durable channels: due at this time, not at once (a past time: at once). At the latest 9999-12-31T23:59:59.999Z. */
  runAt?: Date;
}

/** When a notification is due: null (at once), or what send()'s available_at gets. */
function dueAt(channel: CustomChannel<unknown>, options: NotifyOptions): { sql: string; value: unknown } | null {
  const where = `notify('${channel.name}')`;
  const { delayMs, runAt } = options;
  if (delayMs !== undefined && runAt !== undefined) throw new NotifyPayloadError('PGPUBSUB_DELAY', `${where}: give delayMs or runAt, not both`);
  if (delayMs !== undefined && !(Number.isInteger(delayMs) && delayMs >= 0 && delayMs <= MAX_DELAY_MS)) {
    throw new NotifyPayloadError('PGPUBSUB_DELAY', `${where}: delayMs must be an integer from 0 to ${MAX_DELAY_MS} (milliseconds), got ${inspect(delayMs)}`);
  }
  if (runAt !== undefined && !(runAt instanceof Date && runAt.getTime() <= LATEST_RUN_AT.getTime())) {
    throw new NotifyPayloadError('PGPUBSUB_DELAY', `${where}: runAt must be a valid Date no later than ${LATEST_RUN_AT.toISOString()}, got ${inspect(runAt)}`);
  }
  const delay = delayMs ?? (runAt === undefined ? channel.delayMs : undefined);
  if (!delay && runAt === undefined) return null;
  if (!channel.durable) {
    throw new NotifyPayloadError('PGPUBSUB_DELAY', `${where}: a broadcast channel cannot be delayed (it sends a NOTIFY at commit and stores nothing); make the channel durable`);
  }
  // A delay counts on the server's clock; a time is a time.
  // In epoch ms: an ISO text of a year past 9999 or before 1 is not one PostgreSQL reads.
  return runAt !== undefined ? { sql: 'pg_catalog.to_timestamp($4::double precision / 1000)', value: Math.max(0, runAt.getTime()) } : { sql: `pg_catalog.now() + pg_catalog.make_interval(secs => $4::double precision / 1000)`, value: delay };
}

/** JSON text of a payload; bigints become strings (JSON has no 64-bit integers). */
function encodePayload(channel: CustomChannel<unknown>, payload: unknown): string {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new NotifyPayloadError('PGPUBSUB_PAYLOAD_TYPE', `notify('${channel.name}'): the payload must be an object, got ${JSON.stringify(payload)}`);
  }
  return JSON.stringify({ ...channel.defaults, ...payload }, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
}

// notify() runs `SELECT send($1, $2::jsonb, $3)`. One round trip: send() stores (and wakes at commit) or broadcasts, as the library's owner, so an
// app's role needs only EXECUTE on it. Payloads travel as bind parameters, never as SQL text.

/** Sends a payload on a custom channel. */
export async function notify<T>(objects: LibraryObjects, sequelize: Sequelize, channel: CustomChannel<T>, payload: T, options: NotifyOptions = {}): Promise<void> {
  const json = encodePayload(channel as CustomChannel<unknown>, payload);
  const due = dueAt(channel as CustomChannel<unknown>, options);
  if (!channel.durable && Buffer.byteLength(json) > NOTIFY_PAYLOAD_LIMIT) {
    throw new NotifyPayloadError(
      'PGPUBSUB_PAYLOAD_TOO_LARGE',
      `notify('${channel.name}'): the payload is ${Buffer.byteLength(json)} bytes; a broadcast channel sends it in a NOTIFY, `
        + `which holds at most ${NOTIFY_PAYLOAD_LIMIT}. Send less, or make the channel durable (payloads are then stored, any size)`,
    );
  }
  try {
    await sequelize.query(due ? `SELECT ${objects.sendFunction}($1, $2::jsonb, $3, ${due.sql})` : `SELECT ${objects.sendFunction}($1, $2::jsonb, $3)`, {
      bind: due ? [channel.name, json, channel.durable, due.value] : [channel.name, json, channel.durable],
      transaction: options.transaction,
      raw: true,
      ...LIBRARY_QUERY,
      // Tells the tracing hook that this query stores a notification (tracing.ts).
      [SENDS]: true,
    } as object);
  } catch (error) {
    if ((error as { parent?: { code?: string } }).parent?.code === '22023' && !channel.durable) {
      throw new NotifyPayloadError(
        'PGPUBSUB_PAYLOAD_TOO_LARGE',
        `notify('${channel.name}'): the payload with its context is over the NOTIFY limit of ${NOTIFY_PAYLOAD_LIMIT} bytes. `
          + 'Send less, or make the channel durable',
        { cause: error },
      );
    }
    throw error;
  }
}
