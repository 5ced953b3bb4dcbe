import { QueryTypes, type Sequelize } from 'sequelize';
import { ListenOptionsError } from '../errors';
import { LIBRARY_QUERY } from './sql-text';

/**
 * Refuses connections that cannot write (a listener deletes what it processed and records
 * failures): a role or database with `default_transaction_read_only = on`, or a standby. Such a
 * listener would say it listens and then fail every drain.
 */
export async function refuseReadOnly(sequelize: Sequelize): Promise<void> {
  const [state] = await sequelize.query<{ read_only: string; standby: boolean }>(
    "SELECT pg_catalog.current_setting('transaction_read_only') AS read_only, pg_catalog.pg_is_in_recovery() AS standby",
    { type: QueryTypes.SELECT, ...LIBRARY_QUERY },
  );
  if (state.standby) {
    throw new ListenOptionsError('PGPUBSUB_READ_ONLY', 'listen: the database is a standby (read-only): a listener deletes what it processes and records failures; connect it to the primary');
  }
  if (state.read_only === 'on') {
    throw new ListenOptionsError('PGPUBSUB_READ_ONLY', "listen: the pool's connections are read-only (default_transaction_read_only is on for this role or database): "
      + 'a listener deletes what it processes and records failures; connect as a role that can write, or ALTER ROLE … SET default_transaction_read_only = off');
  }
}
