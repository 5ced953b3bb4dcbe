import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import type { NotificationContext } from './context';
import { CLAIM_FUNCTION, NOTIFICATION_TABLE } from './db-objects';

/** A stored notification as claimed: payload as text, so numbers keep their precision. */
export interface ClaimedRow {
  id: string;
  channel: string;
  payload: string;
  attempts: number;
  /** In the in-flight marker of a listener that died: run it alone, its attempt charged first. */
  suspect: boolean;
}

export interface ClaimFilter {
  channels: readonly string[];
  /** Only notifications whose context contains this (jsonb @>). */
  context?: NotificationContext;
}

function filterSql(filter: ClaimFilter, bind: unknown[]): string {
  bind.push(filter.channels);
  let sql = `failed_at IS NULL AND channel = ANY($${bind.length}::text[])`;
  if (filter.context && Object.keys(filter.context).length > 0) {
    bind.push(JSON.stringify(filter.context));
    sql += ` AND payload -> 'context' @> $${bind.length}::jsonb`;
  }
  return sql;
}

/**
 * Claims a batch: up to `limit` due notifications in id order, locked, skipping rows other
 * listeners hold (pgpubsub_claim, one round trip). Served by the partial index on id
 * (failed_at IS NULL), so its cost does not grow with the backlog or with failed rows. The claim
 * also sets the transaction's server-side time limits from `timeoutMs` (see the in-flight migration).
 */
export async function claimBatch(
  sequelize: Sequelize,
  transaction: Transaction,
  filter: ClaimFilter,
  limit: number,
  claim: { holder: number; timeoutMs: number },
): Promise<ClaimedRow[]> {
  const context = filter.context && Object.keys(filter.context).length > 0 ? JSON.stringify(filter.context) : null;
  return sequelize.query<ClaimedRow>(`SELECT * FROM ${CLAIM_FUNCTION}($1::text[], $2::jsonb, $3::integer, $4::integer, $5::integer)`, {
    bind: [filter.channels, context, limit, claim.holder, Math.min(claim.timeoutMs, 2 ** 31 - 6000)], transaction, type: QueryTypes.SELECT,
  });
}

/** Deletes processed notifications, in the transaction that ran their callbacks. */
export async function deleteProcessed(sequelize: Sequelize, transaction: Transaction, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await sequelize.query(`DELETE FROM ${NOTIFICATION_TABLE} WHERE id = ANY($1::bigint[])`, { bind: [ids], transaction });
}

export interface FailureRecord {
  id: string;
  error: string;
  delayMs: number;
  maxAttempts: number;
  /** Fails it for good at once: it can never succeed (a payload that is not a message of its channel). */
  permanent?: boolean;
  /** The attempt was charged before it ran (a message run alone): record the error, do not count again. */
  precharged?: boolean;
}

/** Keeps a failed notification with its error; retried after `delayMs`, or marked failed once out of attempts. */
export async function recordFailure(sequelize: Sequelize, transaction: Transaction, failure: FailureRecord): Promise<{ failedForGood: boolean }> {
  const [row] = await sequelize.query<{ failed: boolean }>(
    `UPDATE ${NOTIFICATION_TABLE}
        SET attempts = attempts + $5::integer,
            last_error = $2,
            available_at = now() + make_interval(secs => $3::double precision / 1000),
            failed_at = CASE WHEN $6::boolean OR attempts + $5::integer >= $4 THEN now() END
      WHERE id = $1::bigint
  RETURNING failed_at IS NOT NULL AS failed`,
    {
      bind: [failure.id, failure.error, failure.delayMs, failure.maxAttempts, failure.precharged ? 0 : 1, failure.permanent === true],
      transaction,
      type: QueryTypes.SELECT,
    },
  );
  return { failedForGood: row?.failed ?? false };
}

/** Milliseconds until the next stored notification becomes due (0 if one is due now), or null if none waits. */
export async function nextDueInMs(sequelize: Sequelize, filter: ClaimFilter): Promise<number | null> {
  const bind: unknown[] = [];
  const where = filterSql(filter, bind);
  const [row] = await sequelize.query<{ ms: number | null }>(
    // greatest() ignores NULL, so an empty queue must be tested for explicitly.
    `SELECT CASE WHEN min(available_at) IS NULL THEN NULL
                 ELSE greatest(0, extract(epoch FROM min(available_at) - clock_timestamp()) * 1000)::float8 END AS ms
       FROM ${NOTIFICATION_TABLE} WHERE ${where}`,
    { bind, type: QueryTypes.SELECT },
  );
  return row?.ms ?? null;
}

/** SQL (with its parameters) telling whether any notification is due now: the heartbeat's one query. */
export function dueCheck(filter: ClaimFilter): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const where = filterSql(filter, values);
  return { text: `SELECT EXISTS (SELECT FROM ${NOTIFICATION_TABLE} WHERE ${where} AND available_at <= now()) AS due`, values };
}
