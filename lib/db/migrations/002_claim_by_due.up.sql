-- sequelize-pgpubsub library migration 2: a claim (and a status) that costs the same whatever the table holds.
--
-- Frozen once released (see 001_baseline.up.sql for the placeholders).
-- The baseline's claim walked one index in id order and tested the channel and the due time on each
-- row: rows of a paused or unhandled channel, or waiting for a retry or a delay, that sat ahead of
-- the due ones were read again by every claim. notification_due leads with the channel and orders
-- by the due time, so a claim reads each of its channels from the start of its range to now() and
-- nothing else (decision 19). Building the indexes holds writes to the notification table for as long
-- as it takes (about a second per million stored rows).

CREATE INDEX notification_due ON {{schema}}.notification (channel, available_at, id) WHERE failed_at IS NULL AND head IS NOT FALSE;
DROP INDEX {{schema}}.notification_claim;
-- The failed rows by channel (with the key, which says whether one blocks it), for the status's
-- counts, read from the index alone. Written only when a notification fails for good.
CREATE INDEX notification_failed_channel ON {{schema}}.notification (channel, failed_at) INCLUDE (ordering_key) WHERE failed_at IS NOT NULL;

-- Each channel walked oldest first, the batch returned in id order; what it takes is as before.
CREATE OR REPLACE FUNCTION {{schema}}.claim(channels text[], context jsonb, max_rows integer, claimer integer, timeout_ms integer)
  RETURNS TABLE (id text, channel text, payload text, attempts integer, suspect boolean)
  LANGUAGE plpgsql SET enable_sort = off SET jit = off SET search_path = pg_catalog, pg_temp AS $fn$
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
  -- listener's only after {{dead_after_seconds}} s without its lock; until then its rows are left alone.
  -- So are, for as long, the rows of a marker whose lock is held but whose claiming transaction
  -- aborted: a dying process's server lets go of its row locks before its holder lock, and its
  -- batch, poison included, must not run again in another process's batch meanwhile. After that
  -- they are suspects, as a dead listener's: the server ended that claim (the timeouts above), so
  -- its process froze or blocked its event loop past every limit, maybe on one of them.
  WITH marker AS MATERIALIZED (
    SELECT m.holder, m.ids, m.suspected_at, gone.free,
           NOT gone.free AND m.xact < pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())
             AND pg_catalog.pg_xact_status(m.xact) = 'aborted' AS dying
      FROM {{schema}}.inflight AS m
     CROSS JOIN LATERAL (SELECT {{schema}}.listener_gone(m.holder, m.backend_pid, m.backend_role, m.backend_start) AS free) AS gone
     WHERE m.holder IS DISTINCT FROM claimer
  ), noticed AS (
    -- SKIP LOCKED: a claim never waits for another claim's transaction.
    UPDATE {{schema}}.inflight AS m SET suspected_at = now()
     WHERE m.holder IN (SELECT i.holder FROM {{schema}}.inflight AS i JOIN marker ON i.holder = marker.holder
                         WHERE (marker.free OR marker.dying) AND marker.suspected_at IS NULL FOR UPDATE OF i SKIP LOCKED)
  )
  SELECT pg_catalog.array_agg(u.id) FILTER (WHERE marker.suspected_at < now() - interval '{{dead_after_seconds}} seconds'),
         pg_catalog.array_agg(u.id) FILTER (WHERE marker.suspected_at IS NULL OR marker.suspected_at >= now() - interval '{{dead_after_seconds}} seconds')
    INTO orphans, waiting
    FROM marker, pg_catalog.unnest(marker.ids) AS u(id)
   WHERE marker.free OR marker.dying;
  RETURN QUERY
    WITH firsts AS MATERIALIZED (
      -- Each channel's first due row, one index probe each: the channels are walked oldest first.
      SELECT ch.name, f.available_at, f.id
        FROM pg_catalog.unnest(channels) AS ch(name)
       CROSS JOIN LATERAL (SELECT n.available_at, n.id FROM {{schema}}.notification AS n
                            WHERE n.channel = ch.name AND n.failed_at IS NULL AND n.head IS NOT FALSE AND n.available_at <= now()
                            ORDER BY n.available_at, n.id LIMIT 1) AS f
    ), claimed AS (
      -- Each channel in due order on notification_due, from its range start to now(): rows of other
      -- channels, and rows waiting for a retry or a delay, are never read; failed rows and ordered
      -- rows waiting behind their key are not in the index. The outer LIMIT stops the walk (and the
      -- locking) at max_rows.
      SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head
        FROM (SELECT firsts.name FROM firsts ORDER BY firsts.available_at, firsts.id) AS o
       CROSS JOIN LATERAL (
         SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head FROM {{schema}}.notification AS c
          WHERE c.channel = o.name AND c.failed_at IS NULL AND c.head IS NOT FALSE AND c.available_at <= now()
            AND (context IS NULL OR c.payload -> 'context' @> context)
            AND (waiting IS NULL OR NOT (c.id = ANY (waiting)))
            -- An ordered row not yet known to be next: only when no earlier row of its key is stored.
            AND (c.ordering_key IS NULL OR c.head OR NOT EXISTS (
                  SELECT FROM {{schema}}.notification AS e WHERE e.channel = c.channel AND e.ordering_key = c.ordering_key AND e.id < c.id))
          ORDER BY c.available_at, c.id
            FOR UPDATE OF c SKIP LOCKED) AS c
       LIMIT max_rows
    ), known AS (
      -- Claimed, it is its key's next until it is done (a retry keeps its place).
      UPDATE {{schema}}.notification AS k SET head = true FROM claimed WHERE k.id = claimed.id AND claimed.ordering_key IS NOT NULL AND claimed.head IS NULL
    )
    -- The batch in id order (a sort of max_rows rows; jit is off, so its disabled cost is harmless).
    SELECT claimed.id::text, claimed.channel, claimed.payload::text, claimed.attempts, coalesce(claimed.id = ANY (orphans), false)
      FROM claimed ORDER BY claimed.id;
END
$fn$;
