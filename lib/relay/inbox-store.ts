/**
 * The inbox table's queries (library migration 3): which messages of a batch are to run (new, or
 * retried after a failure), a failure counted, and the old ones forgotten.
 */
import type { Sequelize, Transaction } from 'sequelize';
import type { LibraryObjects } from '../db/objects';

/** A delivered message as the inbox records it. */
export interface InboxEntry {
  messageId: string;
  channel: string;
  streamSeq: number;
}

/**
 * Records the batch as run, in the transaction of its callbacks' work. Resolves, for the messages
 * to run (new ones, and ones whose callbacks failed before and did not fail for good), how many
 * times they failed so far; a message absent from the map ran already, or failed for good.
 */
export async function claimEntries(sequelize: Sequelize, objects: LibraryObjects, entries: readonly InboxEntry[], transaction: Transaction): Promise<Map<string, number>> {
  const [rows] = await sequelize.query(`INSERT INTO ${objects.inboxTable} AS i (message_id, channel, stream_seq, processed_at)
      SELECT m, c, s, pg_catalog.now() FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::bigint[])) AS x (m, c, s)
      ON CONFLICT (message_id) DO UPDATE SET processed_at = pg_catalog.now(), stream_seq = excluded.stream_seq
        WHERE i.processed_at IS NULL AND i.failed_at IS NULL
      RETURNING i.message_id, i.attempts`, {
    bind: [entries.map((entry) => entry.messageId), entries.map((entry) => entry.channel), entries.map((entry) => entry.streamSeq)], transaction,
  });
  return new Map((rows as Array<{ message_id: string; attempts: number }>).map((row) => [row.message_id, row.attempts]));
}

/**
 * Counts a failure of the message's callbacks (after their rollback); resolves its failures so far
 * and whether it failed for good, or 'done' when it ran or failed for good meanwhile (elsewhere).
 */
export async function countFailure(sequelize: Sequelize, objects: LibraryObjects, entry: InboxEntry, error: string, options: { maxAttempts: number; permanent: boolean }): Promise<{ attempts: number; failedForGood: boolean } | 'done'> {
  const [rows] = await sequelize.query(`INSERT INTO ${objects.inboxTable} AS i (message_id, channel, stream_seq, attempts, last_error, failed_at)
      VALUES ($1, $2, $3, 1, $4, CASE WHEN $5 OR 1 >= $6 THEN pg_catalog.now() END)
      ON CONFLICT (message_id) DO UPDATE SET attempts = i.attempts + 1, last_error = excluded.last_error,
        failed_at = CASE WHEN $5 OR i.attempts + 1 >= $6 THEN pg_catalog.now() END
        WHERE i.processed_at IS NULL AND i.failed_at IS NULL
      RETURNING i.attempts, i.failed_at IS NOT NULL AS failed`, {
    bind: [entry.messageId, entry.channel, entry.streamSeq, error, options.permanent, options.maxAttempts],
  });
  const row = (rows as Array<{ attempts: number; failed: boolean }>)[0];
  // Nothing returned: it ran or failed for good meanwhile (another process): nothing to count.
  return row ? { attempts: row.attempts, failedForGood: row.failed } : 'done';
}

/** Forgets the ids of messages that ran longer ago than `retentionMs`, at most 10,000 a call. */
export async function forgetOld(sequelize: Sequelize, objects: LibraryObjects, retentionMs: number): Promise<void> {
  await sequelize.query(`DELETE FROM ${objects.inboxTable} WHERE message_id IN (SELECT message_id FROM ${objects.inboxTable}
    WHERE processed_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1) LIMIT 10000)`, { bind: [retentionMs / 1000] });
}
