import type { Client } from 'pg';
import { ListenOptionsError } from '../errors';

/**
 * Refuses a database the listener cannot write to (it deletes what it processed and records
 * failures): a role or database with `default_transaction_read_only = on`, or a standby. Such a
 * listener would say it listens and then fail every drain. Asked on the LISTEN connection, as the
 * listener starts: it runs as the same role on the same database as the pool's.
 */
export async function refuseReadOnly(client: Client): Promise<void> {
  const { rows: [state] } = await client.query<{ read_only: string; standby: boolean }>(
    "SELECT pg_catalog.current_setting('default_transaction_read_only') AS read_only, pg_catalog.pg_is_in_recovery() AS standby",
  );
  if (state.standby) {
    throw new ListenOptionsError('PGPUBSUB_READ_ONLY', 'listen: the database is a standby (read-only): a listener deletes what it processes and records failures; connect it to the primary');
  }
  if (state.read_only === 'on') {
    throw new ListenOptionsError('PGPUBSUB_READ_ONLY', "listen: the listener's connections are read-only (default_transaction_read_only is on for this role or database): "
      + 'a listener deletes what it processes and records failures; connect as a role that can write, or ALTER ROLE … SET default_transaction_read_only = off');
  }
}
