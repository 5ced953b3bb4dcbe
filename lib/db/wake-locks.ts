import type { Client } from 'pg';
import type { LibraryObjects } from './objects';
import { quoteLiteral } from './sql-text';
import { WAKE_LOCKS } from './protocol';

/**
 * The wake-up protocol, explained once here (its producer side is the library's wake() function,
 * installed by the baseline migration, lib/db/migrations/001_baseline.up.sql; its listener side is
 * below, and the drain (lib/listener/drain-machine.ts, performed in listener.ts) follows it).
 *
 * A NOTIFY makes PostgreSQL serialise the commits of every transaction that sent one, which caps
 * concurrent writers at about a third of their rate. So wake() sends one only when a listener
 * needs it: when some listener is listening on the channel and none is draining it. A draining
 * listener claims again before it stops, and nobody listening means the next listener's start-up
 * sweep finds the row. Both are read from advisory locks the listeners hold on their LISTEN
 * connections, which costs a producer a few lock-table probes and no table access. A drain lock is
 * trusted only while the drain beat (a sequence the draining listener sets every few hundred ms)
 * is fresh. A producer that skips holds a shared "skipped" lock until it commits; a listener that
 * lets go of its drain lock, or starts, waits until it can take that lock exclusively (every
 * skipping producer has ended) and then claims once more, so no row is left for the heartbeat.
 * A producer that finds nobody listening takes that lock while its exclusive probe of the
 * listening lock still keeps listeners from taking theirs, so a listener that starts
 * afterwards waits for it; one that skips for a draining listener looks again after taking it, so
 * a listener that let go in between gets the NOTIFY after all.
 *
 * Advisory lock namespaces (the first key of the two-key form; the second is `hashtext(channel)`):
 * - LISTENING: every live listener holds it shared on its LISTEN connection;
 * - DRAINING: the listener draining a channel's backlog holds it exclusively (its "drain lease");
 * - SKIPPED: a producer that skipped its NOTIFY holds it shared until it commits.
 * Session locks vanish with their connection, so a listener that dies gives up both of its locks.
 * The numbers live in lib/db/protocol.ts: installed databases' wake() has them in its body.
 */
export { WAKE_LOCKS };

/**
 * The listener's side of the wake-up protocol (above): advisory
 * locks held on the LISTEN connection, keyed by (namespace, hashtext(channel)). Session locks end
 * with the connection, so a listener that dies or loses its connection holds nothing.
 */

/**
 * Marks this connection as listening on `channels` (shared: every listener holds it). Call after
 * LISTEN. Never waits: returns the channels whose lock someone else holds exclusively (a producer's
 * probe, for an instant, or another role), to be tried again. Meanwhile producers see the lock
 * taken, count it as a listener, and NOTIFY.
 */
export async function holdListening(client: Client, channels: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<{ c: string }>(
    `SELECT c FROM pg_catalog.unnest($1::text[]) AS c WHERE NOT pg_catalog.pg_try_advisory_lock_shared(${WAKE_LOCKS.listening}, pg_catalog.hashtext(c))`,
    [channels],
  );
  return rows.map((row) => row.c);
}

/** Says that a listener holding drain locks is draining: producers trust a drain lock only while this is fresh (1 s). */
export async function drainBeat(objects: LibraryObjects, client: Client): Promise<void> {
  await client.query(`SELECT pg_catalog.setval(${quoteLiteral(objects.drainBeatSequence)}, (extract(epoch FROM pg_catalog.clock_timestamp()) * 1000)::bigint)`);
}

/** Takes the drain lock of each channel no other listener holds; returns the channels taken. */
export async function takeDrainLocks(client: Client, channels: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<{ c: string }>(
    `SELECT c FROM pg_catalog.unnest($1::text[]) AS c WHERE pg_catalog.pg_try_advisory_lock(${WAKE_LOCKS.draining}, pg_catalog.hashtext(c))`,
    [channels],
  );
  return rows.map((row) => row.c);
}

export async function releaseDrainLocks(client: Client, channels: readonly string[]): Promise<void> {
  await client.query(`SELECT pg_catalog.pg_advisory_unlock(${WAKE_LOCKS.draining}, pg_catalog.hashtext(c)) FROM pg_catalog.unnest($1::text[]) AS c`, [channels]);
}

/** NOTIFYs the channels, as producers would have: wakes the other listeners. */
export async function wakeListeners(client: Client, channels: readonly string[]): Promise<void> {
  await client.query("SELECT pg_catalog.pg_notify(c, '') FROM pg_catalog.unnest($1::text[]) AS c", [channels]);
}

/**
 * True once no producer that skipped its NOTIFY on these channels is still open: each holds the
 * channel's "skipped" lock shared until it commits, so taking it exclusively (and letting go at
 * once) proves every such row committed or rolled back, and a claim now sees them all.
 */
export async function skippedProducersDone(client: Client, channels: readonly string[]): Promise<boolean> {
  const { rows } = await client.query<{ done: boolean }>(
    `SELECT coalesce(pg_catalog.bool_and(CASE WHEN pg_catalog.pg_try_advisory_lock(${WAKE_LOCKS.skipped}, pg_catalog.hashtext(c))
                                   THEN pg_catalog.pg_advisory_unlock(${WAKE_LOCKS.skipped}, pg_catalog.hashtext(c)) ELSE false END), true) AS done
       FROM pg_catalog.unnest($1::text[]) AS c`,
    [channels],
  );
  return rows[0].done;
}
