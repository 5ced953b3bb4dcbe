import type { Sequelize, Transaction } from 'sequelize';
import { SELECT } from './select';
import type { NotificationContext } from '../channels/context';
import type { LibraryObjects } from './objects';
import { LIBRARY_QUERY } from './sql-text';
import { cleanupSql } from './cleanup';

/**
 * The notification store: the operations on stored notifications (claim, lock one, delete, record a
 * failure, look for due ones), and the rules they share.
 */

/**
 * A stored notification is pending until it fails for good, and due when pending and its next
 * attempt time has come: the rule pgpubsub_claim() applies (in its migrations), for the SQL written
 * here. `alias` qualifies the columns (`n` for `n.failed_at`).
 */
export function pendingSql(alias?: string): string {
  return `${column(alias, 'failed_at')} IS NULL`;
}

/** Due now and claimable: not waiting behind an earlier notification of its ordering key (head false). */
function dueSql(alias?: string): string {
  return `${pendingSql(alias)} AND ${column(alias, 'head')} IS NOT FALSE AND ${column(alias, 'available_at')} <= pg_catalog.now()`;
}

function column(alias: string | undefined, name: string): string {
  return alias ? `${alias}.${name}` : name;
}

/**
 * The SET list that charges attempts to a stored notification: adds `added` attempts, keeps the
 * error, makes it due again after `delayMs`, and fails it for good once its attempts reach
 * `maxAttempts` (or at once when `permanent` holds). Values are SQL expressions (parameters);
 * `alias` qualifies the columns read.
 */
export function chargeSetSql(values: { alias?: string; added: string; error: string; delayMs: string; maxAttempts: string; permanent?: string }): string {
  const attempts = `${column(values.alias, 'attempts')} + ${values.added}`;
  const failed = `${values.permanent ? `${values.permanent} OR ` : ''}${attempts} >= ${values.maxAttempts}`;
  const key = column(values.alias, 'ordering_key');
  // Failed for good on a key that goes on ('c:'): the key lets go of it, and its next runs (the advance trigger).
  return `attempts = ${attempts},
            last_error = ${values.error},
            available_at = pg_catalog.now() + pg_catalog.make_interval(secs => ${values.delayMs}::double precision / 1000),
            failed_at = CASE WHEN ${failed} THEN pg_catalog.now() END,
            ordering_key = CASE WHEN (${failed}) AND ${key} LIKE 'c:%' THEN NULL ELSE ${key} END`;
}

/** A claim's time limit as the server takes it (statement_timeout; idle_in_transaction_session_timeout is 5 s more), within int4. */
export function serverTimeoutMs(timeoutMs: number): number {
  return Math.min(timeoutMs, 2 ** 31 - 6000);
}

/** A stored notification as claimed: payload as text, so numbers keep their precision. */
export interface ClaimedRow {
  id: string;
  channel: string;
  payload: string;
  attempts: number;
  /** In the in-flight marker of a listener that died: run it alone, its attempt charged first. */
  suspect: boolean;
  /** The claiming transaction's id (xid8, as text), which the in-flight marker names; claim() rows only. */
  xact?: string;
  /** Its available_at in microseconds since the epoch (int8 as text): where the claim's walk of its channel was (claim() rows only; null for a row due at -infinity). */
  due_us?: string | null;
  /** How long ago, in ms, its producing transaction began (created_at), by the server's clock when it was claimed. */
  lag_ms: number;
  /** When it was claimed, by this process's performance.now(). */
  claimedAt: number;
}

/** A message's lag now: from its producing transaction (created_at) to this instant, in ms. */
export function lagNow(row: Pick<ClaimedRow, 'lag_ms' | 'claimedAt'>): number {
  return Math.round((row.lag_ms + performance.now() - row.claimedAt) * 1000) / 1000;
}

/** Claimed rows, each stamped with this process's clock (for its lag later). */
export function stamped(rows: ClaimedRow[]): ClaimedRow[] {
  const claimedAt = performance.now();
  for (const row of rows) row.claimedAt = claimedAt;
  return rows;
}

export interface ClaimFilter {
  channels: readonly string[];
  /** Only notifications whose context contains this (jsonb @>). */
  context?: NotificationContext;
}

/** ` AND <the context filter>` on the row `alias`, or '' without one. */
function contextSql(filter: ClaimFilter, bind: unknown[], alias?: string): string {
  if (!filter.context || Object.keys(filter.context).length === 0) return '';
  bind.push(JSON.stringify(filter.context));
  return ` AND ${column(alias, 'payload')} -> 'context' @> $${bind.length}::jsonb`;
}

/**
 * The filter's channels (`ch.name`), each joined to the first of its stored notifications `n` that
 * match `where` in due order, one probe each on notification_due (channel, available_at,
 * id): rows of other channels are never read, and neither are rows of the channel past the first
 * match. The cost of a query over it does not grow with what the channels' ranges hold beyond.
 */
function firstPerChannel(objects: LibraryObjects, filter: ClaimFilter, bind: unknown[], where: string, select: string): string {
  bind.push(filter.channels);
  const channels = `$${bind.length}::text[]`;
  return `pg_catalog.unnest(${channels}) AS ch(name)
      CROSS JOIN LATERAL (SELECT ${select} FROM ${objects.notificationTable} AS n
                           WHERE n.channel = ch.name AND ${where}${contextSql(filter, bind, 'n')}
                           ORDER BY n.available_at, n.id LIMIT 1) AS f`;
}

/**
 * Claims a batch: up to `limit` due notifications, locked, skipping rows other listeners hold
 * (pgpubsub.claim(), one round trip), returned in id order. It walks each channel in due order on
 * notification_due (channel, available_at, id), oldest channel first, so its cost does not grow with
 * rows it cannot take: other channels', paused ones', rows waiting for a retry or a delay, failed
 * rows and ordered rows waiting behind their key. The claim also sets the transaction's server-side
 * time limits from `timeoutMs` (see library migration 2).
 */
/** Deletes processed notifications, in the transaction that ran their callbacks. */
export async function deleteProcessed(objects: LibraryObjects, sequelize: Sequelize, transaction: Transaction, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await sequelize.query(`DELETE FROM ${objects.notificationTable} WHERE id = ANY($1::bigint[])`, { bind: [ids], transaction, ...LIBRARY_QUERY });
}

export interface FailureRecord {
  id: string;
  error: string;
  delayMs: number;
  maxAttempts: number;
  /** Fails it for good at once: it can never succeed (a payload that is not a message of its channel). */
  permanent?: boolean;
  /** The attempt was charged before it ran (a message run alone): record the error, do not count again. */
  precharged?: boolean;
}

/** Keeps a failed notification with its error; retried after `delayMs`, or marked failed once out of attempts. */
export async function recordFailure(objects: LibraryObjects, sequelize: Sequelize, transaction: Transaction, failure: FailureRecord): Promise<{ failedForGood: boolean }> {
  const [row] = await sequelize.query<{ failed: boolean }>(
    `UPDATE ${objects.notificationTable}
        SET ${chargeSetSql({ added: '$5::integer', error: '$2', delayMs: '$3', maxAttempts: '$4', permanent: '$6::boolean' })}
      WHERE id = $1::bigint
  RETURNING failed_at IS NOT NULL AS failed`,
    {
      bind: [failure.id, failure.error, failure.delayMs, failure.maxAttempts, failure.precharged ? 0 : 1, failure.permanent === true],
      transaction,
      type: SELECT,
      ...LIBRARY_QUERY,
    },
  );
  return { failedForGood: row?.failed ?? false };
}

/**
 * Milliseconds until the next stored notification becomes due (0 if one is due now), or null if none
 * waits: the minimum of each channel's first row in due order (index-served, see firstPerChannel).
 */
export async function nextDueInMs(objects: LibraryObjects, sequelize: Sequelize, filter: ClaimFilter): Promise<number | null> {
  const { text, values } = nextDueSql(objects, filter);
  const [row] = await sequelize.query<{ ms: number | null }>(text, { bind: values, type: SELECT, ...LIBRARY_QUERY });
  return row?.ms ?? null;
}

/** nextDueInMs()'s query and its parameters. */
export function nextDueSql(objects: LibraryObjects, filter: ClaimFilter): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  // What waits behind an earlier notification of its key becomes due when that one is done (its completion wakes the channel).
  // A row due at an infinite time (none send() takes) never comes due: no countdown to it.
  const first = firstPerChannel(objects, filter, values, `${pendingSql('n')} AND n.head IS NOT FALSE AND pg_catalog.isfinite(n.available_at)`, 'n.available_at');
  // greatest() ignores NULL, so an empty queue must be tested for explicitly.
  const text = `SELECT CASE WHEN pg_catalog.min(f.available_at) IS NULL THEN NULL
                 ELSE greatest(0, extract(epoch FROM pg_catalog.min(f.available_at) - pg_catalog.clock_timestamp()) * 1000)::float8 END AS ms
       FROM ${first}`;
  return { text, values };
}

/**
 * A recursive CTE `name(channel)` of the distinct channels of the rows of `table` (aliased `s`)
 * matching `where`, by a skip scan of an index leading with the channel (one probe per channel),
 * ending with a NULL row. Use it after WITH RECURSIVE.
 */
export function storedChannelsSql(table: string, name: string, where: string): string {
  const next = (after: string) => `(SELECT s.channel FROM ${table} AS s WHERE ${where}${after} ORDER BY s.channel LIMIT 1)`;
  return `${name}(channel) AS (
      ${next('')}
      UNION ALL
      SELECT ${next(` AND s.channel > ${name}.channel`)} FROM ${name} WHERE ${name}.channel IS NOT NULL)`;
}

/** The paused channels among the `channels` parameter (`$1`, text[]), sorted. */
export function pausedSql(objects: LibraryObjects): string {
  return `SELECT p.channel FROM ${objects.pausedTable} AS p WHERE p.channel = ANY ($1::text[]) ORDER BY p.channel`;
}

/**
 * The heartbeat's one query (with its parameters): which of the filter's channels are paused, and
 * whether a notification of the others is due now (index-served, see firstPerChannel); with
 * `cleanup`, also the cleanup watch's read (a `cleanup` column, CleanupRow as JSON), so an idle
 * listener sends one statement a minute.
 */
export function dueCheck(objects: LibraryObjects, filter: ClaimFilter, options: { cleanup?: boolean } = {}): { text: string; values: unknown[] } {
  // firstPerChannel binds the channels first: $1, which pausedSql reads too.
  const values: unknown[] = [];
  const first = firstPerChannel(objects, filter, values, dueSql('n'), 'n.id');
  let cleanup = '';
  if (options.cleanup) {
    values.push(objects.schema);
    cleanup = `,\n (SELECT pg_catalog.row_to_json(c) FROM (${cleanupSql(objects, `$${values.length}`).text}) AS c) AS cleanup`;
  }
  return {
    text: `SELECT EXISTS (SELECT FROM ${first} WHERE NOT EXISTS (SELECT FROM ${objects.pausedTable} AS p WHERE p.channel = ch.name)) AS due,
                  ARRAY(${pausedSql(objects)}) AS paused${cleanup}`,
    values,
  };
}

/**
 * Locks one notification for its run alone, with the claim's server-side time limits. Null when it
 * is gone (done), 'held' while another transaction holds it: a claim that met it as a suspect too
 * holds it until that claim's batch ends (its own charge then fails, so it leaves it to us).
 */
export async function lockOne(objects: LibraryObjects, sequelize: Sequelize, transaction: Transaction, id: string, timeoutMs: number): Promise<ClaimedRow | 'held' | null> {
  const [row] = await sequelize.query<ClaimedRow>(
    `SELECT n.id::text AS id, n.channel, n.payload::text AS payload, n.attempts, false AS suspect,
            (extract(epoch FROM pg_catalog.clock_timestamp() - n.created_at) * 1000)::float8 AS lag_ms,
            pg_catalog.set_config('statement_timeout', $2::text, true) AS t1,
            pg_catalog.set_config('idle_in_transaction_session_timeout', ($2::integer + 5000)::text, true) AS t2
       FROM ${objects.notificationTable} AS n WHERE n.id = $1::bigint FOR UPDATE SKIP LOCKED`,
    { bind: [id, serverTimeoutMs(timeoutMs)], transaction, type: SELECT, ...LIBRARY_QUERY },
  );
  if (row) return stamped([row])[0];
  const [stored] = await sequelize.query<{ stored: boolean }>(
    `SELECT EXISTS (SELECT FROM ${objects.notificationTable} WHERE id = $1::bigint) AS stored`,
    { bind: [id], transaction, type: SELECT, ...LIBRARY_QUERY },
  );
  return stored.stored ? 'held' : null;
}

/**
 * Deletes notifications that failed for good more than `olderThanMs` ago: up to `batches`
 * statements of at most `batch` rows each (the index on failed_at serves them), so a purge costs
 * the same whatever the backlog, and rows another purge holds are skipped. Resolves to the count.
 */
export async function purgeFailed(objects: LibraryObjects, sequelize: Sequelize, olderThanMs: number, limits: { batch: number; batches: number }): Promise<number> {
  let purged = 0;
  for (let round = 0; round < limits.batches; round++) {
    const rows = await sequelize.query<{ id: string }>(
      `DELETE FROM ${objects.notificationTable} WHERE id IN (
         SELECT id FROM ${objects.notificationTable}
          WHERE failed_at IS NOT NULL AND failed_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1::double precision / 1000)
          ORDER BY failed_at LIMIT $2::integer FOR UPDATE SKIP LOCKED)
       RETURNING id::text AS id`,
      { bind: [olderThanMs, limits.batch], type: SELECT, ...LIBRARY_QUERY },
    );
    purged += rows.length;
    if (rows.length < limits.batch) break;
  }
  return purged;
}

/**
 * Coalescing (an ordered channel's `coalesce: true`): folds into each claimed head that is an
 * update the updates of its row that follow it, due and unbroken by another op, into one message
 * (the head's `old`, the last one's `new`, `folded` how many it stands for). The folded rows are
 * locked here, skipping any another transaction holds (the fold stops before it), and deleted
 * with the head when it succeeds. Mutates the heads' payloads; resolves the folded ids by head.
 */
export async function foldUpdates(objects: LibraryObjects, sequelize: Sequelize, transaction: Transaction, heads: ClaimedRow[]): Promise<Map<string, string[]>> {
  const folded = new Map<string, string[]>();
  if (heads.length === 0) return folded;
  const n = objects.notificationTable;
  const candidates = await sequelize.query<{ head: string; id: string }>(
    `SELECT h.id::text AS head, s.id::text AS id
       FROM pg_catalog.unnest($1::bigint[]) AS x(id)
       JOIN ${n} AS h ON h.id = x.id AND h.payload ->> 'op' = 'UPDATE' AND h.ordering_key IS NOT NULL
      CROSS JOIN LATERAL (
        SELECT r.id, r.run FROM (
          SELECT f.id, pg_catalog.bool_and(f.payload ->> 'op' = 'UPDATE') OVER (ORDER BY f.id) AS run
            FROM ${n} AS f
           WHERE f.channel = h.channel AND f.ordering_key = h.ordering_key AND f.id > h.id
             AND f.failed_at IS NULL AND f.available_at <= pg_catalog.now()
           ORDER BY f.id LIMIT 1000) AS r
         WHERE r.run) AS s
      ORDER BY h.id, s.id`,
    { bind: [heads.map((row) => row.id)], transaction, type: SELECT, ...LIBRARY_QUERY },
  );
  if (candidates.length === 0) return folded;
  const locked = new Set((await sequelize.query<{ id: string }>(
    `SELECT id::text AS id FROM ${n} WHERE id = ANY ($1::bigint[]) FOR UPDATE SKIP LOCKED`,
    { bind: [candidates.map((c) => c.id)], transaction, type: SELECT, ...LIBRARY_QUERY },
  )).map((row) => row.id));
  const stopped = new Set<string>();
  for (const { head, id } of candidates) {
    // An unbroken run only: the fold stops at the first row another transaction holds.
    if (stopped.has(head) || !locked.has(id)) {
      stopped.add(head);
      continue;
    }
    folded.set(head, [...(folded.get(head) ?? []), id]);
  }
  if (folded.size === 0) return folded;
  const entries = [...folded];
  const merged = await sequelize.query<{ id: string; payload: string }>(
    `SELECT x.head::text AS id,
            (pg_catalog.jsonb_set(h.payload, '{new}', l.payload -> 'new') || pg_catalog.jsonb_build_object('folded', x.n))::text AS payload
       FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::integer[])) AS x(head, last, n)
       JOIN ${n} AS h ON h.id = x.head JOIN ${n} AS l ON l.id = x.last`,
    { bind: [entries.map(([head]) => head), entries.map(([, ids]) => ids.at(-1)), entries.map(([, ids]) => ids.length + 1)], transaction, type: SELECT, ...LIBRARY_QUERY },
  );
  const byId = new Map(merged.map((row) => [row.id, row.payload]));
  for (const row of heads) {
    const payload = byId.get(row.id);
    if (payload !== undefined) row.payload = payload;
  }
  return folded;
}

/**
 * Marks the ordered rows of `channels` that wait behind an earlier one (settle_heads()), in a
 * statement of its own outside any batch, so that claims skip them by index and no batch holds
 * their locks. Resolves to how many it marked.
 */
export async function settleHeads(objects: LibraryObjects, sequelize: Sequelize, channels: readonly string[]): Promise<number> {
  const [row] = await sequelize.query<{ marked: number }>(`SELECT ${objects.settleHeadsFunction}($1::text[]) AS marked`, {
    bind: [channels], type: SELECT, ...LIBRARY_QUERY,
  });
  return row?.marked ?? 0;
}
