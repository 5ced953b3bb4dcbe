import type { Client } from 'pg';
import { WAKE_LOCKS } from './notification-table';

/**
 * The listener's side of the wake-up protocol (see the notification table migration): advisory
 * locks held on the LISTEN connection, keyed by (namespace, hashtext(channel)). Session locks end
 * with the connection, so a listener that dies or loses its connection holds nothing.
 */

/** Marks this connection as listening on `channels` (shared: every listener holds it). Call after LISTEN. */
export async function holdListening(client: Client, channels: readonly string[]): Promise<void> {
  await client.query(
    `SELECT pg_advisory_lock_shared(${WAKE_LOCKS.listening}, hashtext(c)) FROM unnest($1::text[]) AS c`,
    [channels],
  );
}

/** Takes the drain lock of each channel no other listener holds; returns the channels taken. */
export async function takeDrainLocks(client: Client, channels: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<{ c: string }>(
    `SELECT c FROM unnest($1::text[]) AS c WHERE pg_try_advisory_lock(${WAKE_LOCKS.draining}, hashtext(c))`,
    [channels],
  );
  return rows.map((row) => row.c);
}

export async function releaseDrainLocks(client: Client, channels: readonly string[]): Promise<void> {
  await client.query(`SELECT pg_advisory_unlock(${WAKE_LOCKS.draining}, hashtext(c)) FROM unnest($1::text[]) AS c`, [channels]);
}

/** NOTIFYs the channels, as producers would have: wakes the other listeners. */
export async function wakeListeners(client: Client, channels: readonly string[]): Promise<void> {
  await client.query("SELECT pg_notify(c, '') FROM unnest($1::text[]) AS c", [channels]);
}

/**
 * True once no producer that skipped its NOTIFY on these channels is still open: each holds the
 * channel's "skipped" lock shared until it commits, so taking it exclusively (and letting go at
 * once) proves every such row committed or rolled back, and a claim now sees them all.
 */
export async function skippedProducersDone(client: Client, channels: readonly string[]): Promise<boolean> {
  const { rows } = await client.query<{ done: boolean }>(
    `SELECT coalesce(bool_and(CASE WHEN pg_try_advisory_lock(${WAKE_LOCKS.skipped}, hashtext(c))
                                   THEN pg_advisory_unlock(${WAKE_LOCKS.skipped}, hashtext(c)) ELSE false END), true) AS done
       FROM unnest($1::text[]) AS c`,
    [channels],
  );
  return rows[0].done;
}
