/**
 * A callback's raw query path (`context.query(text, values)`): SQL on the message's own transaction
 * (inside its savepoint when it has one), sent straight to the node-postgres client under it,
 * without Sequelize's query pipeline (its hooks, logging, CLS lookup, bind rewriting and result
 * shaping), which costs a fast callback more than its INSERT does (BENCHMARKS.md, W1).
 */
import type { Transaction } from 'sequelize';
import type { QueryResult, RawQuery } from '../channels/message';
import { ChannelUsageError } from '../errors';

interface PgClient {
  query(text: string, values?: readonly unknown[]): Promise<QueryResult<Record<string, unknown>>>;
}

interface OpenTransaction {
  connection?: PgClient;
  finished?: string;
  parent?: OpenTransaction | null;
}

/**
 * Queries on one connection, one after another (node-postgres deprecates a query issued while
 * another runs): the last raw query of each connection, while it runs.
 */
const running = new WeakMap<PgClient, Promise<unknown>>();

/**
 * A refused query's promise (after the time limit, or the transaction's end): it rejects for
 * whoever awaits it, and one nobody awaits (a query a callback fired and forgot) is dropped instead
 * of ending the process as an unhandled rejection.
 */
function refused(error: unknown): Promise<never> {
  const promise = Promise.reject(error);
  promise.catch(() => undefined);
  return promise;
}

/**
 * The `query` of a callback's context for `transaction`. `expired()` is the run's time-limit error
 * once time is up (the transaction is rolled back then): a query after it, or after the
 * transaction ended, is refused rather than sent on a connection that is no longer the message's.
 */
export function rawQuery(transaction: Transaction, expired: () => Error | null): RawQuery {
  const open = transaction as unknown as OpenTransaction;
  const send = (text: string, values: readonly unknown[] | undefined) => {
    const late = expired();
    if (late) throw late;
    const connection = open.connection;
    if (!connection || open.finished || open.parent?.finished) {
      throw new ChannelUsageError('PGPUBSUB_QUERY_AFTER_END', `context.query(): the message's transaction has ended (${open.finished ?? open.parent?.finished ?? 'no connection'}); await every query before the callback returns`);
    }
    return connection.query(text, values);
  };
  return <R extends object = Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>> => {
    if (typeof text !== 'string') return Promise.reject(new TypeError(`context.query(text, values): text must be a SQL string, got ${typeof text}`));
    const connection = open.connection;
    const before = connection && running.get(connection);
    let result: Promise<QueryResult<Record<string, unknown>>>;
    try {
      result = before ? before.then(() => send(text, values)) : send(text, values);
    } catch (error) {
      return refused(error);
    }
    if (connection) {
      // Also what makes a failure of a query nobody awaits no unhandled rejection: its transaction
      // is then aborted, and the batch rolls back and runs again.
      const settled = result.catch(() => undefined);
      running.set(connection, settled);
      void settled.then(() => { if (running.get(connection) === settled) running.delete(connection); });
    }
    return result as Promise<QueryResult<R>>;
  };
}
