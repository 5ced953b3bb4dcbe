-- sequelize-pgpubsub library migration 2, undone: the baseline's claim index and claim function.

CREATE INDEX notification_claim ON {{schema}}.notification (id) WHERE failed_at IS NULL AND head IS NOT FALSE;
DROP INDEX {{schema}}.notification_due, {{schema}}.notification_failed_channel;

CREATE FUNCTION {{schema}}.claim(channels text[], context jsonb, max_rows integer, claimer integer, timeout_ms integer)
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
    WITH claimed AS (
      SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head FROM {{schema}}.notification AS c
       WHERE c.failed_at IS NULL AND c.head IS NOT FALSE AND c.channel = ANY (channels) AND c.available_at <= now()
         AND (context IS NULL OR c.payload -> 'context' @> context)
         AND (waiting IS NULL OR NOT (c.id = ANY (waiting)))
         -- An ordered row not yet known to be next: only when no earlier row of its key is stored.
         AND (c.ordering_key IS NULL OR c.head OR NOT EXISTS (
               SELECT FROM {{schema}}.notification AS e WHERE e.channel = c.channel AND e.ordering_key = c.ordering_key AND e.id < c.id))
       ORDER BY c.id
       LIMIT max_rows
         FOR UPDATE OF c SKIP LOCKED
    ), known AS (
      -- Claimed, it is its key's next until it is done (a retry keeps its place).
      UPDATE {{schema}}.notification AS k SET head = true FROM claimed WHERE k.id = claimed.id AND claimed.ordering_key IS NOT NULL AND claimed.head IS NULL
    )
    -- In the index's id order, as claimed: no sort here (enable_sort is off, and a disabled sort's
    -- cost would cross jit_above_cost: hundreds of ms of JIT compilation per claim).
    SELECT claimed.id::text, claimed.channel, claimed.payload::text, claimed.attempts, coalesce(claimed.id = ANY (orphans), false)
      FROM claimed;
END
$fn$;

-- Whoever could run migration 2's claim can run this one again.
DO $grants$
DECLARE
  grantee text;
BEGIN
  REVOKE ALL ON FUNCTION {{schema}}.claim(text[], jsonb, integer, integer, integer) FROM PUBLIC;
  FOR grantee IN
    SELECT pg_catalog.quote_ident(r.rolname)
      FROM pg_catalog.pg_proc AS p
     CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) AS a
      JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
     WHERE p.oid = '{{schema}}.claim(text[], jsonb, integer, integer, integer, bigint[], bigint[])'::pg_catalog.regprocedure
       -- The old owner too (a listener's role that installed the library keeps its claim), unless it owns this one.
       AND a.privilege_type = 'EXECUTE' AND r.rolname <> current_user
  LOOP
    EXECUTE 'GRANT EXECUTE ON FUNCTION {{schema}}.claim(text[], jsonb, integer, integer, integer) TO ' || grantee;
  END LOOP;
END
$grants$;
DROP FUNCTION {{schema}}.claim(text[], jsonb, integer, integer, integer, bigint[], bigint[]);
