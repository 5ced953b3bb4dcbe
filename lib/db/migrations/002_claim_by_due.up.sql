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

-- Each channel walked oldest first, the batch returned in id order; what it takes is as before. A
-- claim loop passes where each channel's walk resumes (after_us, after_id: the last row it claimed
-- there, by `due_us`): rows before that point (rows it deleted that vacuum cannot remove yet, while a
-- transaction elsewhere holds back the xmin horizon; rows a context filter excludes) are walked only
-- when the rows after it cannot fill the batch, or when the loop starts a walk over (decision 19).
CREATE FUNCTION {{schema}}.claim(channels text[], context jsonb, max_rows integer, claimer integer, timeout_ms integer,
                                 after_us bigint[], after_id bigint[])
  RETURNS TABLE (id text, channel text, payload text, attempts integer, suspect boolean, due_us bigint, created_at timestamptz)
  LANGUAGE plpgsql SET enable_sort = off SET jit = off SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  orphans bigint[];
  waiting bigint[];
  late bigint[];
  got_ids bigint[];
  got_channels text[];
  got_payloads text[];
  got_attempts integer[];
  got_dues bigint[];
  got_created timestamptz[];
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
  -- The batch, locked (and each ordered row of it known as its key's next).
    WITH points AS MATERIALIZED (
      -- Each channel's resume point (an available_at as microseconds since the epoch, and an id), or none.
      SELECT ch.name, timestamptz '1970-01-01 00:00:00+00' + ch.after_us * interval '1 microsecond' AS after_at, ch.after_id
        FROM ROWS FROM (pg_catalog.unnest(channels), pg_catalog.unnest(after_us), pg_catalog.unnest(after_id)) AS ch(name, after_us, after_id)
    ), firsts AS MATERIALIZED (
      -- Each channel's first due row, from its resume point (else from the start of its range), one
      -- index probe each: the channels are walked oldest first.
      SELECT ch.name, ch.after_at, ch.after_id, f.available_at, f.id
        FROM points AS ch
       CROSS JOIN LATERAL (
         (SELECT n.available_at, n.id FROM {{schema}}.notification AS n
           WHERE n.channel = ch.name AND n.failed_at IS NULL AND n.head IS NOT FALSE AND n.available_at <= now()
             AND (n.available_at, n.id) > (coalesce(ch.after_at, '-infinity'), coalesce(ch.after_id, 0))
           ORDER BY n.available_at, n.id LIMIT 1)
         UNION ALL
         (SELECT n.available_at, n.id FROM {{schema}}.notification AS n
           WHERE n.channel = ch.name AND n.failed_at IS NULL AND n.head IS NOT FALSE AND n.available_at <= now()
             AND ch.after_at IS NOT NULL AND (n.available_at, n.id) <= (ch.after_at, ch.after_id)
           ORDER BY n.available_at, n.id LIMIT 1)
         LIMIT 1) AS f
    ), claimed AS (
      -- Each channel in due order on notification_due: from its resume point to now(), then from the
      -- start of its range to the resume point. Rows of other channels, and rows waiting for a retry
      -- or a delay, are never read; failed rows and ordered rows waiting behind their key are not in
      -- the index. The outer LIMIT stops the walk (and the locking) at max_rows: the second part of a
      -- channel's walk runs only when the first cannot fill the batch.
      SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head, c.available_at, c.created_at
        FROM (SELECT firsts.name, firsts.after_at, firsts.after_id FROM firsts ORDER BY firsts.available_at, firsts.id) AS o
       CROSS JOIN LATERAL (
         -- (FOR UPDATE is refused on a member of a UNION, not in a subquery of one.)
         SELECT * FROM (SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head, c.available_at, c.created_at FROM {{schema}}.notification AS c
           WHERE c.channel = o.name AND c.failed_at IS NULL AND c.head IS NOT FALSE AND c.available_at <= now()
             -- (no point: from the start; an OR here would keep the bound out of the index scan)
             AND (c.available_at, c.id) > (coalesce(o.after_at, '-infinity'), coalesce(o.after_id, 0))
             AND (context IS NULL OR c.payload -> 'context' @> context)
             AND (waiting IS NULL OR NOT (c.id = ANY (waiting)))
             -- An ordered row not yet known to be next: only when no earlier row of its key is stored.
             AND (c.ordering_key IS NULL OR c.head OR NOT EXISTS (
                   SELECT FROM {{schema}}.notification AS e WHERE e.channel = c.channel AND e.ordering_key = c.ordering_key AND e.id < c.id))
           ORDER BY c.available_at, c.id
             FOR UPDATE OF c SKIP LOCKED) AS after_point
         UNION ALL
         SELECT * FROM (SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head, c.available_at, c.created_at FROM {{schema}}.notification AS c
           WHERE c.channel = o.name AND c.failed_at IS NULL AND c.head IS NOT FALSE AND c.available_at <= now()
             AND o.after_at IS NOT NULL AND (c.available_at, c.id) <= (o.after_at, o.after_id)
             AND (context IS NULL OR c.payload -> 'context' @> context)
             AND (waiting IS NULL OR NOT (c.id = ANY (waiting)))
             AND (c.ordering_key IS NULL OR c.head OR NOT EXISTS (
                   SELECT FROM {{schema}}.notification AS e WHERE e.channel = c.channel AND e.ordering_key = c.ordering_key AND e.id < c.id))
           ORDER BY c.available_at, c.id
             FOR UPDATE OF c SKIP LOCKED) AS before_point) AS c
       LIMIT max_rows
    ), known AS (
      -- Claimed, it is its key's next until it is done (a retry keeps its place).
      UPDATE {{schema}}.notification AS k SET head = true FROM claimed WHERE k.id = claimed.id AND claimed.ordering_key IS NOT NULL AND claimed.head IS NULL
    )
    -- due_us: where the walk was, its available_at exactly (microseconds since the epoch, in integers
    -- on every version: PostgreSQL 13's extract() gives a float).
    SELECT pg_catalog.array_agg(claimed.id), pg_catalog.array_agg(claimed.channel), pg_catalog.array_agg(claimed.payload::text),
           pg_catalog.array_agg(claimed.attempts),
           -- (A row stored due at -infinity, by a role other than send()'s callers, has none.)
           pg_catalog.array_agg(CASE WHEN pg_catalog.isfinite(claimed.available_at) THEN
             extract(epoch FROM pg_catalog.date_trunc('second', claimed.available_at))::bigint * 1000000
               + extract(microseconds FROM claimed.available_at)::bigint % 1000000 END),
           -- (Its created_at, for the caller's lag: read here, not looked up again by id.)
           pg_catalog.array_agg(claimed.created_at)
      INTO got_ids, got_channels, got_payloads, got_attempts, got_dues, got_created
      FROM claimed;
  -- The markers judged again, now that the rows are locked (a new statement: a new snapshot). A
  -- marker judged above while its claim was still running is no dead one's; if that claim then
  -- ended with its process (a callback that killed it) before this claim locked the row, the row
  -- is free to lock, and only this look sees that its holder is gone or its claim aborted. Such a
  -- row stays out of this batch (locked until this transaction ends, then judged as a dead
  -- listener's by a later claim: held back, then run alone, charged first).
  -- (The markers first, one look each: only a dead one's ids are read, and there is usually none.)
  IF got_ids IS NOT NULL THEN
    WITH dead AS MATERIALIZED (
      SELECT m.ids FROM {{schema}}.inflight AS m
       WHERE m.holder IS DISTINCT FROM claimer
         AND ({{schema}}.listener_gone(m.holder, m.backend_pid, m.backend_role, m.backend_start)
              OR CASE WHEN m.xact < pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())
                      THEN pg_catalog.pg_xact_status(m.xact) = 'aborted' ELSE false END)
    )
    SELECT pg_catalog.array_agg(u.id) INTO late
      FROM dead CROSS JOIN LATERAL pg_catalog.unnest(dead.ids) AS u(id)
     WHERE u.id = ANY (got_ids) AND (orphans IS NULL OR NOT (u.id = ANY (orphans)));
  END IF;
  -- The batch in id order (a sort of max_rows rows; jit is off, so its disabled cost is harmless).
  RETURN QUERY
    SELECT g.id::text, g.channel, g.payload, g.attempts, coalesce(g.id = ANY (orphans), false), g.due_us, g.created_at
      FROM ROWS FROM (pg_catalog.unnest(got_ids), pg_catalog.unnest(got_channels), pg_catalog.unnest(got_payloads),
                      pg_catalog.unnest(got_attempts), pg_catalog.unnest(got_dues), pg_catalog.unnest(got_created))
           AS g(id, channel, payload, attempts, due_us, created_at)
     WHERE late IS NULL OR NOT (g.id = ANY (late))
     ORDER BY g.id;
END
$fn$;

-- The baseline's claim goes; whoever could run it can run this one (a role docs/security.md's grants name).
DO $grants$
DECLARE
  grantee text;
BEGIN
  REVOKE ALL ON FUNCTION {{schema}}.claim(text[], jsonb, integer, integer, integer, bigint[], bigint[]) FROM PUBLIC;
  FOR grantee IN
    SELECT pg_catalog.quote_ident(r.rolname)
      FROM pg_catalog.pg_proc AS p
     CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) AS a
      JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
     WHERE p.oid = '{{schema}}.claim(text[], jsonb, integer, integer, integer)'::pg_catalog.regprocedure
       -- The old owner too (a listener's role that installed the library keeps its claim), unless it owns this one.
       AND a.privilege_type = 'EXECUTE' AND r.rolname <> current_user
  LOOP
    EXECUTE 'GRANT EXECUTE ON FUNCTION {{schema}}.claim(text[], jsonb, integer, integer, integer, bigint[], bigint[]) TO ' || grantee;
  END LOOP;
END
$grants$;
DROP FUNCTION {{schema}}.claim(text[], jsonb, integer, integer, integer);
