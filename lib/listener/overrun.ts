/**
 * A callback that blocks the event loop past its time limit: no timer fires while it runs, so the
 * claim pass cannot roll it back in time, and the server ends its claim transaction (idle past
 * the limit + 5 s). The pass then fails as a lost connection would, which charges nothing; left
 * at that, the message would circulate uncharged for ever, blocking process after process. So
 * the pass notes each message whose callbacks ran past the limit, and when its transaction is
 * lost, charges them a CallbackTimeoutError attempt on a fresh transaction: such a message fails
 * after maxAttempts, like any timeout.
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import type { LibraryObjects } from '../db/objects';
import { LIBRARY_QUERY } from '../db/sql-text';
import { type ClaimedRow, recordFailure } from '../db/store';
import { CallbackTimeoutError } from '../errors';
import type { Logger } from '../ops/logger';
import { failureRecord } from './failures';
import { LISTENER_TRANSACTION } from './open-claim';

/** A message whose callbacks took longer than its channel's time limit. */
export interface Overrun {
  readonly row: ClaimedRow;
  readonly channel: AnyChannel;
  readonly timeoutMs: number;
  readonly tookMs: number;
}

/**
 * Charges each overrun message an attempt, in one transaction of its own, unless it is gone,
 * failed for good, held by another listener, or charged already since this pass claimed it (a
 * listener that took it for a dead process's ran it alone, charged).
 */
export async function chargeOverruns(parts: { sequelize: Sequelize; objects: LibraryObjects; log: Logger }, overruns: readonly Overrun[]): Promise<void> {
  const { sequelize, objects, log } = parts;
  await sequelize.transaction(LISTENER_TRANSACTION, async (transaction) => {
    const current = new Map((await sequelize.query<{ id: string; attempts: number }>(
      `SELECT id::text AS id, attempts FROM ${objects.notificationTable} WHERE id = ANY ($1::bigint[]) AND failed_at IS NULL FOR UPDATE SKIP LOCKED`,
      { bind: [overruns.map((o) => o.row.id)], transaction, type: QueryTypes.SELECT, ...LIBRARY_QUERY },
    )).map((row) => [row.id, row.attempts]));
    for (const { row, channel, timeoutMs, tookMs } of overruns) {
      if (current.get(row.id) !== row.attempts) continue;
      const error = new CallbackTimeoutError(channel.name, row.id, timeoutMs);
      const { failedForGood } = await recordFailure(objects, sequelize, transaction, failureRecord(row, channel, error));
      log.error(`callback on '${channel.name}' for notification ${row.id} ran ${Math.round(tookMs)} ms, past its ${timeoutMs} ms limit, blocking this process's event loop; `
        + `the server ended its transaction: an attempt is charged${failedForGood ? ', its last: it failed for good' : ''}`, {
        event: 'callback-overrun', channel: channel.name, id: row.id, tookMs: Math.round(tookMs), timeoutMs, failedForGood,
      });
    }
  });
}
