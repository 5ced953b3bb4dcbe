import { CLAIM_FUNCTION, DRAIN_BEAT_SEQUENCE, INFLIGHT_TABLE, NOTIFICATION_TABLE, WAKE_FUNCTION } from './v2-objects';
import { HOLDER_LOCK } from '../inflight';
import { WAKE_LOCKS } from '../wake-locks';
import { claimFunctionV1, wakeFunctionV1 } from './notification-table';
import { quoteLiteral } from '../sql-text';
import { libraryStep } from './runner';

/**
 * What a process that dies costs, and a wake-up no other role can silence.
 *
 * pgpubsub_inflight: each listener writes the ids of the batch in hand, committed, before running
 * its callbacks. A claim that finds one of those ids while the listener's holder lock is free (its
 * LISTEN connection, hence the process, is gone) returns it as a suspect: the listener runs it alone,
 * charging the attempt before it runs, so a message that kills its process uses up its attempts
 * and is marked failed like any other failing message, while the others go on.
 *
 * The claim also bounds its transaction on the server: statement_timeout and
 * idle_in_transaction_session_timeout, so a frozen process or a dead network path gives its rows back.
 *
 * pgpubsub_drain_beat: any role can take an advisory lock, so a drain lock alone proves nothing. The
 * listener that drains also writes the time into this sequence (roles without UPDATE on it cannot),
 * and a producer skips its NOTIFY for a drain lock only while that beat is fresh.
 */
/** A listener without its holder lock for this long is dead (not reconnecting): its batch is retried alone. */
export const DEAD_AFTER_SECONDS = 10;

export const claimFunctionV2 = `CREATE FUNCTION ${CLAIM_FUNCTION}(channels text[], context jsonb, max_rows integer, claimer integer, timeout_ms integer)
  RETURNS TABLE (id text, channel text, payload text, attempts integer, suspect boolean)
  LANGUAGE plpgsql SET enable_sort = off AS $fn$
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
  -- listener's only after ${DEAD_AFTER_SECONDS} s without its lock; until then its rows are left alone.
  WITH free AS MATERIALIZED (
    SELECT m.holder, m.ids, m.suspected_at FROM ${INFLIGHT_TABLE} AS m
     WHERE m.holder IS DISTINCT FROM claimer
       -- Taken and let go at once: a listener reconnecting must be able to take its key back.
       AND CASE WHEN pg_catalog.pg_try_advisory_lock_shared(${HOLDER_LOCK}, m.holder)
                THEN pg_catalog.pg_advisory_unlock_shared(${HOLDER_LOCK}, m.holder) ELSE false END
  ), noticed AS (
    -- SKIP LOCKED: a claim never waits for another claim's transaction.
    UPDATE ${INFLIGHT_TABLE} AS m SET suspected_at = now()
     WHERE m.holder IN (SELECT i.holder FROM ${INFLIGHT_TABLE} AS i JOIN free ON i.holder = free.holder
                         WHERE free.suspected_at IS NULL FOR UPDATE OF i SKIP LOCKED)
  )
  SELECT pg_catalog.array_agg(u.id) FILTER (WHERE free.suspected_at < now() - interval '${DEAD_AFTER_SECONDS} seconds'),
         pg_catalog.array_agg(u.id) FILTER (WHERE free.suspected_at IS NULL OR free.suspected_at >= now() - interval '${DEAD_AFTER_SECONDS} seconds')
    INTO orphans, waiting
    FROM free, pg_catalog.unnest(free.ids) AS u(id);
  RETURN QUERY
    SELECT n.id::text, n.channel, n.payload::text, n.attempts, coalesce(n.id = ANY (orphans), false)
      FROM ${NOTIFICATION_TABLE} AS n
     WHERE n.failed_at IS NULL AND n.channel = ANY (channels) AND n.available_at <= now()
       AND (context IS NULL OR n.payload -> 'context' @> context)
       AND (waiting IS NULL OR NOT (n.id = ANY (waiting)))
     ORDER BY n.id
     LIMIT max_rows
       FOR UPDATE OF n SKIP LOCKED;
END
$fn$`;

/** As before, except that a drain lock silences the NOTIFY only while its holder's beat is fresh. */
export const wakeFunctionV2 = `CREATE FUNCTION ${WAKE_FUNCTION}(channel text) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
  key integer := hashtext(channel);
  unlocked boolean;
BEGIN
  FOR pass IN 1..2 LOOP
    -- An exclusive probe fails while any listener listens (or, for an instant, another producer probes).
    IF NOT pg_try_advisory_lock(${WAKE_LOCKS.listening}, key) THEN
      -- A shared probe fails only while someone holds the drain lock; a listener draining also beats.
      IF pg_try_advisory_lock_shared(${WAKE_LOCKS.draining}, key) THEN
        unlocked := pg_advisory_unlock_shared(${WAKE_LOCKS.draining}, key);
        PERFORM pg_notify(channel, '');
        RETURN true;
      ELSIF coalesce(pg_sequence_last_value(${quoteLiteral(DRAIN_BEAT_SEQUENCE)}::regclass), 0)
            < extract(epoch FROM clock_timestamp()) * 1000 - 1000 THEN
        -- A drain lock without a fresh beat: not (or no longer) a listener draining. Wake when in doubt.
        PERFORM pg_notify(channel, '');
        RETURN true;
      END IF;
    ELSE
      -- Nobody listens: the next listener's start-up sweep finds the row.
      unlocked := pg_advisory_unlock(${WAKE_LOCKS.listening}, key);
    END IF;
    -- Skipping: say so until commit. Fails only in the instant a listener checks; then wake after all.
    IF pass = 1 AND NOT pg_try_advisory_xact_lock_shared(${WAKE_LOCKS.skipped}, key) THEN
      PERFORM pg_notify(channel, '');
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END
$fn$`;

const upSql = [
  `CREATE TABLE ${INFLIGHT_TABLE} (
  holder integer PRIMARY KEY,
  ids bigint[] NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  suspected_at timestamptz
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000)`,
  `COMMENT ON TABLE ${INFLIGHT_TABLE} IS 'sequelize-pgpubsub: per listener (its holder lock key), the notifications it is running; outlives the claiming transaction so that a process death is charged to them'`,
  `CREATE SEQUENCE ${DRAIN_BEAT_SEQUENCE} MINVALUE 0 START 0 NO CYCLE`,
  `COMMENT ON SEQUENCE ${DRAIN_BEAT_SEQUENCE} IS 'sequelize-pgpubsub: the time (epoch ms) a listener holding a drain lock last said it is draining'`,
  `DROP FUNCTION ${CLAIM_FUNCTION}(text[], jsonb, integer)`,
  claimFunctionV2,
  `DROP FUNCTION ${WAKE_FUNCTION}(text)`,
  wakeFunctionV2,
];

const downSql = [
  `DROP FUNCTION ${WAKE_FUNCTION}(text)`,
  wakeFunctionV1,
  `DROP FUNCTION ${CLAIM_FUNCTION}(text[], jsonb, integer, integer, integer)`,
  claimFunctionV1,
  `DROP SEQUENCE IF EXISTS ${DRAIN_BEAT_SEQUENCE}`,
  `DROP TABLE IF EXISTS ${INFLIGHT_TABLE}`,
];

// Frozen in `public`, whatever the schema: version 3 moves the objects to it.
export const inflight = libraryStep(2, '00000000000002-pgpubsub-inflight.js', () => ({ up: upSql, down: downSql }));
export const { name, up, down, withOptions } = inflight;
