/**
 * A batch's transaction opened by its claim: Sequelize's START TRANSACTION travels with the claim
 * statement in one message, so a listener woken for one message waits one round trip, not two,
 * before it knows what it holds. Always at READ COMMITTED (LISTENER_ISOLATION), whatever the app's
 * Sequelize or the database sets.
 */
import type { Sequelize, Transaction } from 'sequelize';
import { type ClaimedRow, stamped } from '../db/store';

/** What Sequelize's Transaction has and its types do not say. */
interface OpenedTransaction {
  begin(): Promise<unknown>;
  prepareEnvironment(useCLS: boolean): Promise<unknown>;
  /** node-postgres's client: a simple-protocol query of several statements resolves one result per statement. */
  connection: { query(text: string): Promise<ClaimResult[]> };
}

interface ClaimResult { rows: ClaimedRow[] }

interface SqlGenerator {
  startTransactionQuery(transaction: Transaction): string;
  setIsolationLevelQuery(value: string, options: { parent?: unknown }): string | undefined;
}

/**
 * The isolation level of every transaction in which a listener claims or locks notifications: its
 * batches, a suspect's run alone, and so its callbacks. The claim skips rows another listener
 * holds (SKIP LOCKED) and looks again at their in-flight markers in later statements: under
 * REPEATABLE READ or SERIALIZABLE each of those is refused ("could not serialize access") once
 * another listener has processed a row since the transaction's snapshot, and side by side
 * listeners fail their drains.
 */
export const LISTENER_ISOLATION = 'READ COMMITTED';

/** `sequelize.transaction()`'s options for a listener's own transactions (LISTENER_ISOLATION). */
export const LISTENER_TRANSACTION = { isolationLevel: LISTENER_ISOLATION as Transaction.ISOLATION_LEVELS };

/** What the batch's runner gives: its bound on a library statement, and its rollback. */
export interface ClaimGuard {
  library<T>(transaction: Transaction, what: string, promise: Promise<T>): Promise<T>;
  rollback(transaction: Transaction): Promise<void>;
}

/**
 * Opens a transaction as `sequelize.transaction({ isolationLevel: 'READ COMMITTED' })` would (a
 * pool connection) and runs `claim` (a statement with no parameters, see claimStatement()) first in it, in
 * the same round trip. On failure the transaction is rolled back and the error thrown.
 */
export async function openWithClaim(sequelize: Sequelize, claim: string, guard: ClaimGuard): Promise<{ transaction: Transaction; rows: ClaimedRow[]; claimMs: number }> {
  // The app's Sequelize class's Transaction, not this package's copy of it: Sequelize's commit and
  // rollback check `instanceof` against their own (a linked or workspace copy of the library loads its own).
  const { Transaction: AppTransaction } = sequelize.constructor as unknown as { Transaction: new (sequelize: Sequelize, options: object) => Transaction };
  const transaction = new AppTransaction(sequelize, { isolationLevel: LISTENER_ISOLATION });
  const opened = transaction as unknown as OpenedTransaction;
  const sql = (sequelize.getQueryInterface() as unknown as { queryGenerator: SqlGenerator }).queryGenerator;
  const opening = `${sql.startTransactionQuery(transaction)} ${sql.setIsolationLevelQuery(LISTENER_ISOLATION, {}) ?? ''}`;
  // Sequelize sends START TRANSACTION once it holds the connection; here the claim carries it instead.
  opened.begin = async () => undefined;
  await opened.prepareEnvironment(false);
  try {
    const started = performance.now();
    const results = await guard.library(transaction, 'claim', opened.connection.query(`${opening}\n${claim}`));
    const claimMs = performance.now() - started;
    // The claim's result is the last (after START TRANSACTION's and SET TRANSACTION's).
    const { rows } = results[results.length - 1];
    return { transaction, rows: stamped(rows), claimMs };
  } catch (error) {
    await guard.rollback(transaction);
    throw error;
  }
}
