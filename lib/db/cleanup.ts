/**
 * Cleanup of the notification table: how many dead row versions it holds, and what keeps vacuum from
 * removing them. Every processed notification is a deleted row; vacuum can remove it only once no
 * snapshot older than its deletion remains anywhere it counts (a transaction of this database, a
 * prepared transaction, a replication slot's xmin). A transaction left open for an hour keeps an
 * hour of deleted rows in the table and its indexes, and every claim steps over them: the one cost
 * of a queue's backlog the library cannot remove, so it shows it (status, metrics, dashboard) and
 * the listener warns (lib/listener/upkeep.ts).
 */
import type { LibraryObjects } from './objects';
import { type Reader, selectRows } from './select';

/** What holds back cleanup the most: the snapshot with the oldest xmin in this database's horizon. */
export interface CleanupHolder {
  kind: 'transaction' | 'prepared transaction' | 'replication slot';
  /** Its xmin (a transaction id, as text): a new transaction of the same session has a new one. */
  xmin: string;
  /** How many transactions old its xmin is (`age(xmin)`): what it keeps vacuum from removing grows with it. */
  xminAge: number;
  /**
   * How long it has been open, in ms: since its transaction began (for another role's session only
   * with pg_read_all_stats), or since it was prepared; null when the server does not say.
   */
  openMs: number | null;
  /** A session's (or an active slot's) server process id: `SELECT pg_terminate_backend(pid)` ends it. */
  pid: number | null;
  applicationName: string | null;
  /** The role that runs it (a session) or prepared it. */
  user: string | null;
  /** A session's state ('idle in transaction', …) where the role may see it; a slot's 'active' or 'inactive'. */
  state: string | null;
  /** A prepared transaction's gid, or a slot's name. */
  name: string | null;
}

export interface CleanupStatus {
  /** Dead row versions in the notification table, and live rows (the server's statistics, an estimate). */
  deadRows: number;
  liveRows: number;
  /** The last vacuum of the notification table, by autovacuum or by hand; null when never. */
  lastVacuumAt: Date | null;
  /** What holds back cleanup the most now, or null when nothing does. */
  heldBackBy: CleanupHolder | null;
}

/** The query's row (also as JSON, from the heartbeat: lib/db/store.ts dueCheck). */
export interface CleanupRow {
  dead_rows: number | null;
  live_rows: number | null;
  last_vacuum_at: Date | null;
  held_back_by: {
    kind: CleanupHolder['kind']; xmin: string; xmin_age: number; open_ms: number | null; pid: number | null; application_name: string | null;
    user_name: string | null; state: string | null; name: string | null;
  } | null;
}

/**
 * The query: readable by any role (pg_class, pg_stat_all_tables, pg_stat_activity, pg_prepared_xacts
 * and pg_replication_slots are); another role's session shows its pid, role, application name and
 * xmin, its state and transaction start only with pg_read_all_stats. A logical slot's catalog_xmin
 * holds back only the system catalogs, so it is left out.
 */
export function cleanupSql(objects: LibraryObjects, schemaParam = '$1'): { text: string; values: unknown[] } {
  return {
    text: `SELECT s.n_dead_tup::float8 AS dead_rows, s.n_live_tup::float8 AS live_rows,
                  greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum_at,
                  (SELECT pg_catalog.row_to_json(h) FROM (
                     SELECT 'transaction' AS kind, coalesce(a.backend_xmin, a.backend_xid)::text AS xmin,
                            pg_catalog.age(coalesce(a.backend_xmin, a.backend_xid))::float8 AS xmin_age,
                            (extract(epoch FROM pg_catalog.clock_timestamp() - a.xact_start) * 1000)::float8 AS open_ms,
                            a.pid, a.application_name, a.usename::text AS user_name, a.state, NULL::text AS name
                       FROM pg_catalog.pg_stat_activity AS a
                      WHERE coalesce(a.backend_xmin, a.backend_xid) IS NOT NULL AND a.pid <> pg_catalog.pg_backend_pid()
                        AND a.datname = pg_catalog.current_database() AND a.backend_type IS DISTINCT FROM 'autovacuum worker'
                     UNION ALL
                     SELECT 'prepared transaction', p.transaction::text, pg_catalog.age(p.transaction)::float8,
                            (extract(epoch FROM pg_catalog.clock_timestamp() - p.prepared) * 1000)::float8,
                            NULL, NULL, p.owner::text, NULL, p.gid
                       FROM pg_catalog.pg_prepared_xacts AS p WHERE p.database = pg_catalog.current_database()
                     UNION ALL
                     SELECT 'replication slot', r.xmin::text, pg_catalog.age(r.xmin)::float8, NULL, r.active_pid, NULL, NULL,
                            CASE WHEN r.active THEN 'active' ELSE 'inactive' END, r.slot_name::text
                       FROM pg_catalog.pg_replication_slots AS r WHERE r.xmin IS NOT NULL
                     -- Sessions that share the oldest xmin (nothing was written since the first took its
                     -- snapshot): the one whose transaction has been open longest holds it back.
                     ORDER BY xmin_age DESC, open_ms DESC NULLS LAST LIMIT 1) AS h) AS held_back_by
             FROM pg_catalog.pg_stat_all_tables AS s
            WHERE s.relid = (SELECT c.oid FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS ns ON ns.oid = c.relnamespace
                              WHERE ns.nspname = ${schemaParam} AND c.relname = 'notification')`,
    values: [objects.schema],
  };
}

export function toCleanupStatus(row: CleanupRow | null | undefined): CleanupStatus {
  const held = row?.held_back_by ?? null;
  return {
    deadRows: row?.dead_rows ?? 0,
    liveRows: row?.live_rows ?? 0,
    lastVacuumAt: row?.last_vacuum_at ? new Date(row.last_vacuum_at) : null,
    heldBackBy: held && {
      kind: held.kind,
      xmin: held.xmin,
      xminAge: held.xmin_age,
      openMs: held.open_ms,
      pid: held.pid,
      applicationName: held.application_name,
      user: held.user_name,
      state: held.state,
      name: held.name,
    },
  };
}

/** The notification table's dead rows and what holds back their cleanup, now. */
export async function readCleanup(objects: LibraryObjects, via: Reader): Promise<CleanupStatus> {
  const { text, values } = cleanupSql(objects);
  const [row] = await selectRows<CleanupRow>(via, text, values);
  return toCleanupStatus(row);
}

/** "transaction of pid 4242 (psql, role app, idle in transaction)": who to look at, as far as the server says. */
export function describeHolder(holder: CleanupHolder): string {
  const about = [holder.applicationName || null, holder.user ? `role ${holder.user}` : null, holder.state].filter(Boolean).join(', ');
  const who = holder.kind === 'transaction' ? `a transaction of pid ${holder.pid}`
    : holder.kind === 'prepared transaction' ? `prepared transaction '${holder.name}'`
      : `replication slot '${holder.name}'`;
  return about ? `${who} (${about})` : who;
}
