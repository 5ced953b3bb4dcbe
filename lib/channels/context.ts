import type { Sequelize, Transaction } from 'sequelize';
import { ContextError } from '../errors';
import { LIBRARY_QUERY } from '../db/sql-text';
import { CONTEXT_SETTING, TRACE_SETTING } from '../db/protocol';

/** The settings context() reads (lib/db/protocol.ts). */
export { CONTEXT_SETTING, TRACE_SETTING };

/** JSON-serialisable values a notification context may hold (a trace id, a tenant id…). */
export type NotificationContext = Record<string, unknown>;

/** Anything with a pg-style `query(text, values)`: a `pg.Client`, a checked-out `pg.PoolClient`. */
export interface QueryableConnection {
  query(text: string, values?: unknown[]): Promise<unknown>;
}

export interface SetContextOptions {
  /**
   * `transaction` (default): the context holds until the transaction ends.
   * `session`: it stays on the connection after the transaction, for every later write on that connection.
   */
  scope?: 'transaction' | 'session';
  /** The transaction whose connection gets the context. Defaults to Sequelize's CLS transaction, if any. */
  transaction?: Transaction;
  /** Instead of a transaction: a raw pg connection (session scope, or inside a transaction you opened). */
  connection?: QueryableConnection;
}

const SET_SQL = 'SELECT pg_catalog.set_config($1, $2, $3)';
const IN_FAILED_TRANSACTION = '25P02';

function clsTransaction(sequelize: Sequelize): Transaction | undefined {
  const namespace = (sequelize.constructor as unknown as { _cls?: { get(key: string): unknown } })._cls;
  return namespace?.get('transaction') as Transaction | undefined;
}

/** Sets the context that triggers and `notify()` copy into every notification's payload. */
export async function setContext(sequelize: Sequelize, context: NotificationContext, options: SetContextOptions = {}): Promise<void> {
  const scope = options.scope ?? 'transaction';
  if (scope !== 'transaction' && scope !== 'session') {
    throw new ContextError('PGPUBSUB_CONTEXT_SCOPE', `setContext: scope must be 'transaction' or 'session', got ${JSON.stringify(scope)}`);
  }
  if (typeof context !== 'object' || context === null || Array.isArray(context)) {
    throw new ContextError('PGPUBSUB_CONTEXT_TYPE', `setContext: the context must be a plain object like { traceId: 'abc' }, got ${JSON.stringify(context)}`);
  }
  const values = [CONTEXT_SETTING, JSON.stringify(context), scope === 'transaction'];
  try {
    if (options.connection) {
      await options.connection.query(SET_SQL, values);
      return;
    }
    const transaction = options.transaction ?? clsTransaction(sequelize);
    if (!transaction) {
      throw new ContextError(
        'PGPUBSUB_CONTEXT_NO_TRANSACTION',
        `setContext: a ${scope}-scoped context needs a connection to live on, and no transaction was given. `
          + 'Pass { transaction }, or run your writes inside withContext(context, async (transaction) => …)',
      );
    }
    await sequelize.query(SET_SQL, { bind: values, transaction, raw: true, ...LIBRARY_QUERY });
  } catch (error) {
    // The transaction already failed and will roll back with everything in it; a context for it is moot.
    if ((error as { parent?: { code?: string }; code?: string }).parent?.code === IN_FAILED_TRANSACTION
      || (error as { code?: string }).code === IN_FAILED_TRANSACTION) return;
    throw error;
  }
}

/**
 * Runs `work` in a transaction whose notifications carry `context`. Inside an existing
 * transaction (`options.transaction`), sets the context on it and runs `work` there.
 *
 * @example
 * await sequelize.pgpubsub.withContext({ traceId }, (transaction) => Author.create({ name }, { transaction }));
 */
export async function withContext<R>(
  sequelize: Sequelize,
  context: NotificationContext,
  work: (transaction: Transaction) => Promise<R>,
  options: { transaction?: Transaction } = {},
): Promise<R> {
  if (options.transaction) {
    await setContext(sequelize, context, { transaction: options.transaction });
    return work(options.transaction);
  }
  return sequelize.transaction(async (transaction) => {
    await setContext(sequelize, context, { transaction });
    return work(transaction);
  });
}
