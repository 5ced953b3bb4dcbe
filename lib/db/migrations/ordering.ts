import { PINNED_SEARCH_PATH } from '../objects';
import { qualified, quoteLiteral } from '../sql-text';
import { HOLDER_LOCK } from '../inflight';
import { DEAD_AFTER_SECONDS } from './inflight';
import { type MigrationTarget, libraryStep } from './runner';
import { copyGrants } from './listeners';
import { claimFunctionV3 } from './schema';

/**
 * Version 6: per-row ordering (a channel's `ordering: 'row'`).
 *
 * - `ordering_key` on a notification of an ordered channel: its key (the row's primary key, or
 *   the channel's orderingKey columns) as text, prefixed `c:` when the key goes on after a
 *   notification fails for good, `b:` when it stays blocked until that one is retried or purged.
 *   NULL on every other notification.
 * - `head`: whether the notification is its key's next to run. NULL when not yet known (every new
 *   row), true once it is (claimed, or promoted), false while an earlier one of its key waits.
 *   The claim index leaves the false ones out, so a claim never reads the rows of blocked keys:
 *   its cost grows neither with the backlog nor with the number of blocked keys.
 * - claim() takes an unknown row only when no earlier row of its key is stored. settle_heads()
 *   marks it false when an earlier one is stored and in no listener's hands (never one an
 *   in-flight row precedes: that row's completion promotes what follows it).
 * - advance(): statement triggers on the notification table promote the next row of every key a
 *   statement let go of (a processed row deleted, a purge, a failure for good that releases its
 *   key), so every path that ends a notification moves its key on, in the same transaction.
 */
export const ORDERING_NAME = '00000000000006-pgpubsub-ordering.js';

/** The claim of version 6: version 3's, with ordered rows taken one per key, in id order. */
export function claimFunctionV6({ objects }: MigrationTarget, deadAfterSeconds: number, holderLock: number): string {
  const n = objects.notificationTable;
  return `CREATE OR REPLACE FUNCTION ${objects.claimFunction}(channels text[], context jsonb, max_rows integer, claimer integer, timeout_ms integer)
  RETURNS TABLE (id text, channel text, payload text, attempts integer, suspect boolean)
  LANGUAGE plpgsql SET enable_sort = off SET jit = off ${PINNED_SEARCH_PATH} AS $fn$
DECLARE
  orphans bigint[];
  waiting bigint[];
BEGIN
  IF timeout_ms IS NOT NULL THEN
    -- set_config(…, true) lasts until the end of the claiming transaction (unlike enable_sort above).
    PERFORM pg_catalog.set_config('statement_timeout', timeout_ms::text, true),
            pg_catalog.set_config('idle_in_transaction_session_timeout', (timeout_ms + 5000)::text, true);
  END IF;
  -- Markers whose holder lock is free: few rows (one per listener), one lock call each. A listener
  -- that lost its connection takes its key back when it reconnects, so a marker counts as a dead
  -- listener's only after ${deadAfterSeconds} s without its lock; until then its rows are left alone.
  WITH free AS MATERIALIZED (
    SELECT m.holder, m.ids, m.suspected_at FROM ${objects.inflightTable} AS m
     WHERE m.holder IS DISTINCT FROM claimer
       -- Taken and let go at once: a listener reconnecting must be able to take its key back.
       AND CASE WHEN pg_catalog.pg_try_advisory_lock_shared(${holderLock}, m.holder)
                THEN pg_catalog.pg_advisory_unlock_shared(${holderLock}, m.holder) ELSE false END
  ), noticed AS (
    -- SKIP LOCKED: a claim never waits for another claim's transaction.
    UPDATE ${objects.inflightTable} AS m SET suspected_at = now()
     WHERE m.holder IN (SELECT i.holder FROM ${objects.inflightTable} AS i JOIN free ON i.holder = free.holder
                         WHERE free.suspected_at IS NULL FOR UPDATE OF i SKIP LOCKED)
  )
  SELECT pg_catalog.array_agg(u.id) FILTER (WHERE free.suspected_at < now() - interval '${deadAfterSeconds} seconds'),
         pg_catalog.array_agg(u.id) FILTER (WHERE free.suspected_at IS NULL OR free.suspected_at >= now() - interval '${deadAfterSeconds} seconds')
    INTO orphans, waiting
    FROM free, pg_catalog.unnest(free.ids) AS u(id);
  RETURN QUERY
    WITH claimed AS (
      SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head FROM ${n} AS c
       WHERE c.failed_at IS NULL AND c.head IS NOT FALSE AND c.channel = ANY (channels) AND c.available_at <= now()
         AND (context IS NULL OR c.payload -> 'context' @> context)
         AND (waiting IS NULL OR NOT (c.id = ANY (waiting)))
         -- An ordered row not yet known to be next: only when no earlier row of its key is stored.
         AND (c.ordering_key IS NULL OR c.head OR NOT EXISTS (
               SELECT FROM ${n} AS e WHERE e.channel = c.channel AND e.ordering_key = c.ordering_key AND e.id < c.id))
       ORDER BY c.id
       LIMIT max_rows
         FOR UPDATE OF c SKIP LOCKED
    ), known AS (
      -- Claimed, it is its key's next until it is done (a retry keeps its place).
      UPDATE ${n} AS k SET head = true FROM claimed WHERE k.id = claimed.id AND claimed.ordering_key IS NOT NULL AND claimed.head IS NULL
    )
    -- In the index's id order, as claimed: no sort here (enable_sort is off, and a disabled sort's
    -- cost would cross jit_above_cost: hundreds of ms of JIT compilation per claim).
    SELECT claimed.id::text, claimed.channel, claimed.payload::text, claimed.attempts, coalesce(claimed.id = ANY (orphans), false)
      FROM claimed;
END
$fn$`;
}

/**
 * `settle_heads(channels)`: marks the ordered rows known to wait behind an earlier stored one that
 * no listener has in hand (head false), so that claims skip them by index. Run by a listener in a
 * transaction of its own before it claims, never inside the claim: its row locks would otherwise
 * last the whole batch, and two listeners' batches, each promoting a row the other had locked,
 * would deadlock.
 */
export function settleHeadsFunction({ objects }: MigrationTarget): string {
  const n = objects.notificationTable;
  return `CREATE FUNCTION ${objects.settleHeadsFunction}(channels text[]) RETURNS integer LANGUAGE plpgsql SET jit = off ${PINNED_SEARCH_PATH} AS $fn$
DECLARE
  flying bigint[];
  marked integer := 0;
BEGIN
  IF EXISTS (SELECT FROM ${n} AS q WHERE q.head IS NULL AND q.ordering_key IS NOT NULL AND q.failed_at IS NULL AND q.channel = ANY (channels)) THEN
    flying := ARRAY(SELECT u.id FROM ${objects.inflightTable} AS m, pg_catalog.unnest(m.ids) AS u(id));
    UPDATE ${n} AS b SET head = false
     WHERE b.id IN (SELECT q.id FROM ${n} AS q
                     WHERE q.head IS NULL AND q.ordering_key IS NOT NULL AND q.failed_at IS NULL AND q.channel = ANY (channels)
                       AND EXISTS (SELECT FROM ${n} AS e WHERE e.channel = q.channel AND e.ordering_key = q.ordering_key AND e.id < q.id
                                      AND NOT (e.id = ANY (flying)))
                     ORDER BY q.id LIMIT 1000 FOR UPDATE OF q SKIP LOCKED)
       AND b.head IS NULL;
    GET DIAGNOSTICS marked = ROW_COUNT;
  END IF;
  RETURN marked;
END
$fn$`;
}

function advanceSql({ objects }: MigrationTarget): { functions: string[]; triggers: string[]; drop: string[] } {
  const n = objects.notificationTable;
  // The next of each key let go of becomes its head, and its channel's listeners are woken for it.
  const promote = (keys: string) => `FOR moved IN WITH promoted AS (
      UPDATE ${n} AS p SET head = true
       WHERE p.id IN (SELECT (SELECT pg_catalog.min(e.id) FROM ${n} AS e WHERE e.channel = k.channel AND e.ordering_key = k.ordering_key)
                        FROM (${keys}) AS k)
         AND p.head IS NOT TRUE
      RETURNING p.channel)
    SELECT DISTINCT promoted.channel FROM promoted LOOP
      woke := ${objects.wakeFunction}(moved);
    END LOOP;`;
  const advanceDeleted = `CREATE FUNCTION ${objects.advanceDeletedFunction}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER ${PINNED_SEARCH_PATH} AS $fn$
DECLARE
  moved text;
  woke boolean;
BEGIN
  -- Most deletes are of unordered rows: nothing to do.
  IF EXISTS (SELECT FROM gone WHERE gone.ordering_key IS NOT NULL) THEN
    ${promote('SELECT DISTINCT gone.channel, gone.ordering_key FROM gone WHERE gone.ordering_key IS NOT NULL')}
  END IF;
  RETURN NULL;
END
$fn$`;
  const advanceReleased = `CREATE FUNCTION ${objects.advanceReleasedFunction}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER ${PINNED_SEARCH_PATH} AS $fn$
DECLARE
  moved text;
  woke boolean;
BEGIN
  IF EXISTS (SELECT FROM gone WHERE gone.ordering_key IS NOT NULL) THEN
    ${promote(`SELECT DISTINCT gone.channel, gone.ordering_key FROM gone JOIN kept ON kept.id = gone.id
                 WHERE gone.ordering_key IS NOT NULL AND kept.ordering_key IS NULL`)}
  END IF;
  RETURN NULL;
END
$fn$`;
  return {
    functions: [advanceDeleted, advanceReleased, ...[objects.advanceDeletedFunction, objects.advanceReleasedFunction].map((fn) => `REVOKE ALL ON FUNCTION ${fn}() FROM PUBLIC`)],
    triggers: [
      `CREATE TRIGGER pgpubsub_advance_deleted AFTER DELETE ON ${n} REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION ${objects.advanceDeletedFunction}()`,
      `CREATE TRIGGER pgpubsub_advance_released AFTER UPDATE ON ${n} REFERENCING OLD TABLE AS gone NEW TABLE AS kept FOR EACH STATEMENT EXECUTE FUNCTION ${objects.advanceReleasedFunction}()`,
    ],
    drop: [
      `DROP TRIGGER pgpubsub_advance_released ON ${n}`,
      `DROP TRIGGER pgpubsub_advance_deleted ON ${n}`,
      `DROP FUNCTION ${objects.advanceReleasedFunction}()`,
      `DROP FUNCTION ${objects.advanceDeletedFunction}()`,
    ],
  };
}

function orderingSql(target: MigrationTarget, claimV5: string, claimV6: string) {
  const { objects } = target;
  const n = objects.notificationTable;
  const index = (name: string) => qualified(objects.schema, name);
  const advance = advanceSql(target);
  const up = [
    `ALTER TABLE ${n} ADD COLUMN ordering_key text, ADD COLUMN head boolean`,
    // The claim's index, without the rows that wait behind an earlier one of their key.
    `CREATE INDEX notification_claim ON ${n} (id) WHERE failed_at IS NULL AND head IS NOT FALSE`,
    `DROP INDEX ${index('pgpubsub_notification_claim')}`,
    `CREATE INDEX notification_ordering_key ON ${n} (channel, ordering_key, id) WHERE ordering_key IS NOT NULL`,
    `CREATE INDEX notification_unknown_head ON ${n} (id) WHERE head IS NULL AND ordering_key IS NOT NULL AND failed_at IS NULL`,
    claimV6,
    settleHeadsFunction(target),
    `REVOKE ALL ON FUNCTION ${objects.settleHeadsFunction}(text[]) FROM PUBLIC`,
    copyGrants(`${objects.claimFunction}(text[], jsonb, integer, integer, integer)`, `${objects.settleHeadsFunction}(text[])`),
    ...advance.functions,
    ...advance.triggers,
    `INSERT INTO ${objects.versionTable} (version, name) VALUES (6, ${quoteLiteral(ORDERING_NAME)})`,
  ];
  const down = [
    `DELETE FROM ${objects.versionTable} WHERE version = 6`,
    ...advance.drop,
    `DROP FUNCTION ${objects.settleHeadsFunction}(text[])`,
    claimV5,
    `CREATE INDEX pgpubsub_notification_claim ON ${n} (id) WHERE failed_at IS NULL`,
    `DROP INDEX ${index('notification_unknown_head')}`,
    `DROP INDEX ${index('notification_ordering_key')}`,
    `DROP INDEX ${index('notification_claim')}`,
    `ALTER TABLE ${n} DROP COLUMN head, DROP COLUMN ordering_key`,
  ];
  return { up, down };
}

export const ordering = libraryStep(6, ORDERING_NAME, (target) => orderingSql(target, claimFunctionV3(target.objects), claimFunctionV6(target, DEAD_AFTER_SECONDS, HOLDER_LOCK)));
export const { name, up, down, withOptions } = ordering;
