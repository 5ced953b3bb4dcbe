import type { Client } from 'pg';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { LibraryObjects } from './objects';
import { type ClaimedRow, chargeSetSql, pendingSql } from './store';
import { LIBRARY_QUERY, quoteLiteral } from './sql-text';
import { HOLDER_LOCK } from './protocol';

/**
 * Advisory lock namespace of the listeners' holder keys (the second key): a listener holds its key
 * on its LISTEN connection for as long as it lives, so a marker whose lock is free belongs to a dead
 * listener. Installed databases' claim() has this number in its body (lib/db/protocol.ts).
 */
export { HOLDER_LOCK };

/**
 * What a listener is running, recorded where a dying process cannot take it back (see the
 * in-flight migration). A listener's holder key is an advisory lock it holds on its LISTEN
 * connection; its marker row names the batch in hand. A claim that meets an id of a marker whose
 * lock is free returns it as a suspect, which is then run alone with its attempt charged first.
 */

/**
 * Takes a holder key for this LISTEN connection: `preferred` if free, else a random free one, never
 * one of `taken` (keys this session holds already, which it could take again: advisory locks are
 * re-entrant within a session).
 */
export async function takeHolderKey(client: Client, preferred: number | null, taken: readonly number[] = []): Promise<number> {
  for (let tries = 0; tries < 20; tries++) {
    // Our own key first, a few times: another listener's check may hold it shared for an instant.
    const key = tries < 3 && preferred !== null && !taken.includes(preferred) ? preferred : randomKey();
    if (taken.includes(key)) continue;
    const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_catalog.pg_try_advisory_lock(${HOLDER_LOCK}, $1::integer) AS ok`, [key]);
    if (rows[0].ok) return key;
  }
  throw new Error('could not find a free listener holder key in 20 tries');
}

/**
 * This connection's backend as in-flight markers name it (listener_gone() checks it). Its start as
 * the server's text: a JavaScript Date keeps milliseconds, the server microseconds, and a start
 * that does not match to the microsecond would make every live listener look gone.
 */
export async function listenBackend(client: Client): Promise<ListenBackend> {
  const { rows: [backend] } = await client.query<ListenBackend>(
    'SELECT a.pid, a.usesysid::text AS role, a.backend_start::text AS start FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a',
  );
  return backend;
}

function randomKey(): number {
  return (Math.random() * 2 ** 32 - 2 ** 31) | 0;
}

/**
 * How long a marker write waits for its row's lock, in ms. Another listener's claim that found this
 * listener's last claim aborted (a failed pass, a server restart) locks its marker, to note since
 * when, until that claim's batch commits; if this listener's claim has meanwhile locked that
 * listener's marker, each process waits for the other, a wait the server cannot see as a deadlock.
 * The write gives up (SQL state 55P03, lock_not_available), its claim pass rolls back, and the
 * drain tries again after a jittered delay.
 */
export const MARKER_LOCK_TIMEOUT_MS = 1000;

/**
 * Records, committed, that `holder` is about to run `ids`, which claiming transaction `xact` holds.
 * On the LISTEN client when connected, else a pool connection. One round trip, in a transaction
 * of its own whose lock wait is bounded (MARKER_LOCK_TIMEOUT_MS): the values are written into the
 * text (integers, and the server's own text for the rest), so that the bound is set by the same
 * statement string.
 */
export async function markInflight(objects: LibraryObjects, via: Client | Sequelize, holder: number, ids: readonly string[], xact: string | null, backend: MarkerBackend): Promise<void> {
  for (const id of ids) if (!/^[0-9]+$/.test(id)) throw new TypeError(`in-flight marker: a notification id must be digits, got ${JSON.stringify(id)}`);
  const literal = (value: string | number | null, type: string) => `${value === null ? 'NULL' : quoteLiteral(String(value))}::${type}`;
  const [pid, role, start] = backendValues(backend);
  const text = `SELECT pg_catalog.set_config('lock_timeout', '${MARKER_LOCK_TIMEOUT_MS}', true);
    INSERT INTO ${objects.inflightTable} (holder, ids, xact, backend_pid, backend_role, backend_start)
    VALUES (${literal(Math.trunc(holder), 'integer')}, ${literal(`{${ids.join(',')}}`, 'bigint[]')}, ${literal(xact, 'xid8')},
            ${literal(pid, 'integer')}, ${literal(role, 'oid')}, ${literal(start, 'timestamptz')})
        ON CONFLICT (holder) DO UPDATE SET ids = excluded.ids, xact = excluded.xact, updated_at = pg_catalog.now(), suspected_at = NULL,
          backend_pid = excluded.backend_pid, backend_role = excluded.backend_role, backend_start = excluded.backend_start`;
  if ('getQueryInterface' in via) await via.query(text, LIBRARY_QUERY);
  else await via.query(text);
}

/** A LISTEN connection as the server knows it: a role that takes a dead listener's key cannot be it. */
export interface ListenBackend {
  readonly pid: number;
  /** Its role's oid, as text. */
  readonly role: string;
  /** backend_start, as the server's text (to the microsecond). */
  readonly start: string;
}

/** The LISTEN connection a marker names (null: none yet, the holder lock alone says whether it lives). */
export type MarkerBackend = ListenBackend | null;

/** A marker's backend_pid, backend_role and backend_start, as bind values. */
function backendValues(backend: MarkerBackend): [number | null, string | null, string | null] {
  return [backend?.pid ?? null, backend?.role ?? null, backend?.start ?? null];
}

/** Forgets this listener's markers (a clean stop). */
export async function clearInflight(objects: LibraryObjects, client: Client, holders: readonly number[]): Promise<void> {
  await client.query(`DELETE FROM ${objects.inflightTable} WHERE holder = ANY ($1::integer[])`, [holders]);
}

/**
 * Charges a suspect's attempt before it runs, committed, with `error` saying a process died while
 * running it (what stays if this one dies too), takes it out of the dead listeners' markers and
 * makes it this holder's marker. Returns false when another listener got there first.
 */
export async function chargeBeforeRunningAlone(
  objects: LibraryObjects,
  sequelize: Sequelize,
  row: ClaimedRow,
  charge: { holder: number; backend: MarkerBackend; error: string; delayMs: number; maxAttempts: number },
): Promise<boolean> {
  const [result] = await sequelize.query<{ charged: number }>(
    `WITH target AS (
       SELECT n.id FROM ${objects.notificationTable} AS n
        WHERE n.id = $1::bigint AND n.attempts = $2::integer AND ${pendingSql('n')}
          FOR UPDATE SKIP LOCKED
     ), charged AS (
       UPDATE ${objects.notificationTable} AS n
          SET ${chargeSetSql({ alias: 'n', added: '1', error: '$3', delayMs: '$4', maxAttempts: '$5::integer' })}
         FROM target WHERE n.id = target.id
       RETURNING n.id
     ), released AS (
       -- SKIP LOCKED: a marker another claim is noticing keeps the id, which then stays a suspect.
       UPDATE ${objects.inflightTable} AS m SET ids = pg_catalog.array_remove(m.ids, charged.id)
         FROM charged WHERE m.holder IN (SELECT i.holder FROM ${objects.inflightTable} AS i
                                          WHERE i.holder <> $6::integer AND charged.id = ANY (i.ids) FOR UPDATE SKIP LOCKED)
       RETURNING m.holder
     ), mine AS (
       INSERT INTO ${objects.inflightTable} (holder, ids, backend_pid, backend_role, backend_start)
       SELECT $6::integer, ARRAY[charged.id], $7::integer, $8::oid, $9::timestamptz FROM charged
       ON CONFLICT (holder) DO UPDATE SET ids = excluded.ids, xact = NULL, updated_at = pg_catalog.now(), suspected_at = NULL,
         backend_pid = excluded.backend_pid, backend_role = excluded.backend_role, backend_start = excluded.backend_start
       RETURNING holder
     )
     -- Data-modifying CTEs run whether or not the query reads them.
     SELECT (SELECT pg_catalog.count(*) FROM charged)::int AS charged`,
    {
      bind: [row.id, row.attempts, charge.error, charge.delayMs, charge.maxAttempts, charge.holder, ...backendValues(charge.backend)],
      type: QueryTypes.SELECT, ...LIBRARY_QUERY,
    },
  );
  return result.charged === 1;
}

/**
 * Says these holders (one listener's) are back (after a reconnect), on this connection, and drops
 * the markers of dead listeners that name nothing left to run.
 */
export async function pruneDeadMarkers(objects: LibraryObjects, via: Client, holders: readonly number[], backend: MarkerBackend): Promise<void> {
  await via.query(
    `UPDATE ${objects.inflightTable} SET suspected_at = NULL, backend_pid = $2::integer, backend_role = $3::oid, backend_start = $4::timestamptz
      WHERE holder = ANY ($1::integer[]) AND (suspected_at IS NOT NULL OR backend_pid IS DISTINCT FROM $2::integer OR backend_start IS DISTINCT FROM $4::timestamptz)`,
    [holders, ...backendValues(backend)],
  );
  await via.query(
    `DELETE FROM ${objects.inflightTable} AS m
      WHERE m.holder IN (SELECT i.holder FROM ${objects.inflightTable} AS i WHERE i.holder <> ALL ($1::integer[]) FOR UPDATE SKIP LOCKED)
        AND ${objects.listenerGoneFunction}(m.holder, m.backend_pid, m.backend_role, m.backend_start)
        AND NOT EXISTS (SELECT FROM ${objects.notificationTable} AS n WHERE n.id = ANY (m.ids) AND ${pendingSql('n')})`,
    [holders],
  );
}
