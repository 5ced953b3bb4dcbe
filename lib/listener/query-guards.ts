/**
 * Guards for connections the listener shares or cannot trust: queries taken one at a time, waits
 * bounded in time, and a socket closed at once when the network path under it is dead.
 */
import { ChannelUsageError } from '../errors';

export type QueryFn = (...args: unknown[]) => unknown;

/**
 * Makes the client run its queries one after another: several callers share one connection (the
 * claim loops, the beat and the heartbeat on the LISTEN connection; a batch's callbacks at once on
 * its transaction), and node-postgres no longer wants a query issued while another runs. Each
 * waits for the one before (bounded by the client's query_timeout, or the callback's time limit).
 * Promise and callback calls are both queued; a submittable (a cursor) goes straight through.
 * Returns the function that puts the client's own query back; a call still waiting for its turn
 * then is refused, never sent (ChannelUsageError PGPUBSUB_QUERY_AFTER_END).
 */
export function oneQueryAtATime(client: { query: QueryFn }): () => void {
  const own = client.query;
  const query = own.bind(client) as QueryFn;
  let last: Promise<unknown> = Promise.resolve();
  let open = true;
  client.query = (...args: unknown[]) => {
    if (typeof (args[0] as { submit?: unknown } | null)?.submit === 'function') return query(...args);
    const callback = typeof args.at(-1) === 'function' ? args.pop() as (error: unknown, result?: unknown) => void : null;
    const run = last.then(() => new Promise((resolve, reject) => {
      // Put back before its turn came: the shared use is over (a batch's callbacks abandoned when it
      // rolled back): sent now it would run after the batch's ROLLBACK, outside its transaction.
      if (!open) {
        reject(new ChannelUsageError('PGPUBSUB_QUERY_AFTER_END', 'a query on a batch\'s connection came after the batch ended (its callbacks timed out or failed); it was not sent'));
        return;
      }
      query(...args, (error: unknown, result: unknown) => (error ? reject(error) : resolve(result)));
    }));
    last = run.catch(() => undefined);
    if (!callback) return run;
    run.then((result) => callback(null, result), (error: unknown) => callback(error));
    return undefined;
  };
  return () => {
    open = false;
    client.query = own;
  };
}

/** Rejects with `onExpire()`'s error when `promise` takes longer than `ms`. */
export async function bounded<T>(promise: Promise<T>, ms: number, onExpire: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(onExpire()), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/** A library query (claim, delete, commit…) that takes longer than this has a dead connection under it. */
export const LIBRARY_QUERY_DEADLINE_MS = 30_000;

/** The pg client under a Sequelize connection, as far as closing it goes. */
export interface PgConnection { connection?: { stream?: { destroy(): void } } }

/** Closes a connection's socket at once: pg then fails whatever waits on it (end() would wait for a dead peer). */
export function destroySocket(connection: PgConnection | undefined): void {
  connection?.connection?.stream?.destroy();
}
