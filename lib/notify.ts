import type { Sequelize, Transaction } from 'sequelize';
import type { CustomChannel } from './channel';
import { NotifyPayloadError } from './errors';
import { CONTEXT_FUNCTION, NOTIFICATION_TABLE, WAKE_FUNCTION } from './db-objects';
import { NOTIFY_PAYLOAD_LIMIT } from './trigger-render';

export interface NotifyOptions {
  /** Send as part of this transaction: the notification exists if and only if it commits. */
  transaction?: Transaction;
}

/** JSON text of a payload; bigints become strings (JSON has no 64-bit integers). */
function encodePayload(channel: CustomChannel<unknown>, payload: unknown): string {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new NotifyPayloadError('PGPUBSUB_PAYLOAD_TYPE', `notify('${channel.name}'): the payload must be an object, got ${JSON.stringify(payload)}`);
  }
  return JSON.stringify({ ...channel.defaults, ...payload }, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
}

// Durable: store the row and ask for a wake-up at commit, in one round trip. Payloads travel as bind parameters, never as SQL text.
const STORE_SQL = `WITH stored AS (
  INSERT INTO ${NOTIFICATION_TABLE} (channel, payload)
  VALUES ($1, jsonb_build_object('op', 'NOTIFY', 'payload', $2::jsonb, 'context', ${CONTEXT_FUNCTION}()))
  RETURNING id
) SELECT ${WAKE_FUNCTION}($1) FROM stored`;

const BROADCAST_SQL = `SELECT pg_notify($1, jsonb_build_object('op', 'NOTIFY', 'payload', $2::jsonb, 'context', ${CONTEXT_FUNCTION}())::text)`;

/** Sends a payload on a custom channel. */
export async function notify<T>(sequelize: Sequelize, channel: CustomChannel<T>, payload: T, options: NotifyOptions = {}): Promise<void> {
  const json = encodePayload(channel as CustomChannel<unknown>, payload);
  if (!channel.durable && Buffer.byteLength(json) > NOTIFY_PAYLOAD_LIMIT) {
    throw new NotifyPayloadError(
      'PGPUBSUB_PAYLOAD_TOO_LARGE',
      `notify('${channel.name}'): the payload is ${Buffer.byteLength(json)} bytes; a broadcast channel sends it in a NOTIFY, `
        + `which holds at most ${NOTIFY_PAYLOAD_LIMIT}. Send less, or make the channel durable (payloads are then stored, any size)`,
    );
  }
  try {
    await sequelize.query(channel.durable ? STORE_SQL : BROADCAST_SQL, {
      bind: [channel.name, json],
      transaction: options.transaction,
      raw: true,
    });
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
