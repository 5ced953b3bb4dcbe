/**
 * Read-only queries on either handle the library holds: the app's Sequelize (its pool), or a
 * node-postgres client (a listener's connection, or `pgpubsub status --url`, which runs without
 * loading Sequelize at all: nothing here loads it at run time).
 */
import type { QueryTypes, Sequelize, Transaction } from 'sequelize';
import { LIBRARY_QUERY } from './sql-text';

/** `QueryTypes.SELECT`, without loading Sequelize at run time. */
export const SELECT = 'SELECT' as QueryTypes.SELECT;

/**
 * A connected node-postgres client, as far as a read needs one. Stated here rather than imported
 * from pg, whose types an app need not have: the public declarations reach this file.
 */
export interface PgQueryable {
  query<R extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

/** What a read runs on: the app's Sequelize, or a connected node-postgres client. */
export type Reader = PgQueryable | Sequelize;

const isSequelize = (via: Reader): via is Sequelize => 'getQueryInterface' in via;

/** The rows of one query (`$1`… bound to `values`). */
export async function selectRows<R extends object>(via: Reader, text: string, values: unknown[] = [], transaction?: Transaction): Promise<R[]> {
  return isSequelize(via)
    ? via.query<R>(text, { bind: values, type: SELECT, transaction, ...LIBRARY_QUERY })
    : (await via.query<R>(text, values)).rows;
}

/** The settings of a bounded read (selectBounded). */
const BOUNDED = 'SELECT pg_catalog.set_config(\'jit\', \'off\', true), pg_catalog.set_config(\'enable_seqscan\', \'off\', true)';

/**
 * The rows of a query built to read only bounded index ranges (LIMITs on index scans), run in a
 * transaction of its own with sequential scans and JIT compilation off. The planner takes a
 * correlated channel as matching its share of the table, so under a LIMIT it would scan the table
 * to find a channel that has no rows (a whole-table read per empty channel); and the LIMITs' cost
 * estimates cross jit_above_cost, where compiling would cost more than running.
 */
export async function selectBounded<R extends object>(via: Reader, text: string, values: unknown[] = []): Promise<R[]> {
  if (isSequelize(via)) {
    return via.transaction(async (transaction) => {
      await via.query(BOUNDED, { transaction, ...LIBRARY_QUERY });
      return selectRows<R>(via, text, values, transaction);
    });
  }
  await via.query('BEGIN');
  try {
    await via.query(BOUNDED);
    const { rows } = await via.query<R>(text, values);
    await via.query('COMMIT');
    return rows;
  } catch (error) {
    await via.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
