-- sequelize-pgpubsub library migration 1: the baseline (every object of the library's first release).
--
-- Frozen once released: a later change is a new numbered migration, never an edit of this text.
-- Its placeholders (a name in double braces) are filled by the runner (lib/db/migrations/sql-text-step.ts) from the
-- protocol module (lib/db/protocol.ts) and the target: {{schema}} is the library's schema (a quoted
-- identifier), {{storage}} the app's migration storage table (a string literal, possibly absent).
-- The runner records the version row in {{schema}}.version after this text, in the same transaction.
-- Every function pins search_path (the inlined SQL helpers qualify every call instead), so no
-- function, operator or table another role creates is ever picked; nothing is executable by PUBLIC.

CREATE SCHEMA {{schema}};
COMMENT ON SCHEMA {{schema}} IS 'sequelize-pgpubsub: the library''s tables and functions';
REVOKE ALL ON SCHEMA {{schema}} FROM PUBLIC;

CREATE TABLE {{schema}}.version (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE {{schema}}.version IS 'sequelize-pgpubsub: the library migrations applied to this database';

-- db_version() is read by every write to a channel's table, so it is a constant (a SQL function the
-- planner inlines), rewritten in the transaction that changes the migration storage table: a
-- migration's new version shows exactly when its row there does.
CREATE FUNCTION {{schema}}.db_version() RETURNS text LANGUAGE sql STABLE AS $fn$ SELECT NULL::pg_catalog.text $fn$;

-- Owner only: refreshing rewrites db_version(), which any role could otherwise hold up by calling
-- it in an open transaction; and it reads the table it is given as the owner.
CREATE FUNCTION {{schema}}.refresh_db_version(storage regclass) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  newest text;
BEGIN
  IF storage IS NOT NULL THEN
    EXECUTE format('SELECT name FROM %s WHERE name NOT LIKE %L ORDER BY name DESC LIMIT 1', storage, {{trigger_step_pattern}})
       INTO newest;
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION {{schema}}.db_version() RETURNS text LANGUAGE sql STABLE AS %L',
                 format(' SELECT %L::pg_catalog.text ', newest));
END
$fn$;

-- Security definer, so that whoever may record a migration in the storage table may refresh db_version().
CREATE FUNCTION {{schema}}.db_version_changed() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM {{schema}}.refresh_db_version(TG_RELID::regclass);
  RETURN NULL;
END
$fn$;

CREATE FUNCTION {{schema}}.parse_context(raw text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
  SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  RETURN raw::jsonb;
EXCEPTION WHEN others THEN
  -- A hand-set, malformed context must never cancel the user's write.
  RETURN jsonb_build_object('invalid_context', raw);
END
$fn$;

-- SQL without a SET clause, so that the planner inlines it into each trigger's expression; every
-- call qualified. The producer's W3C traceparent joins the context when its setting is set.
CREATE FUNCTION {{schema}}.context() RETURNS jsonb LANGUAGE sql STABLE AS $fn$
  SELECT CASE WHEN coalesce(pg_catalog.current_setting({{context_setting}}, true), '') = '' THEN '{}'::pg_catalog.jsonb
              ELSE {{schema}}.parse_context(pg_catalog.current_setting({{context_setting}}, true)) END
    OPERATOR(pg_catalog.||) CASE WHEN coalesce(pg_catalog.current_setting({{trace_setting}}, true), '') = '' THEN '{}'::pg_catalog.jsonb
                                 ELSE pg_catalog.jsonb_build_object('traceparent', pg_catalog.current_setting({{trace_setting}}, true)) END
$fn$;

-- The queue. Rows are inserted once and deleted once, so autovacuum runs early.
-- ordering_key: on a notification of an ordered channel, its key as text, prefixed 'c:' when the
-- key goes on after a notification fails for good, 'b:' when it stays blocked until that one is
-- retried or purged; NULL otherwise. head: whether it is its key's next to run (NULL while not yet
-- known, true once it is, false while an earlier one of its key waits).
CREATE TABLE {{schema}}.notification (
  id bigserial PRIMARY KEY,
  channel text NOT NULL CONSTRAINT notification_channel_length CHECK (octet_length(channel) BETWEEN 1 AND 63),
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  db_version text DEFAULT {{schema}}.db_version(),
  attempts integer NOT NULL DEFAULT 0,
  available_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  failed_at timestamptz,
  ordering_key text,
  head boolean
) WITH (
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);
COMMENT ON TABLE {{schema}}.notification IS 'sequelize-pgpubsub: stored notifications of durable channels, deleted when processed; failed_at marks those that used up their attempts';
-- The claim's index, without the rows that wait behind an earlier one of their key.
CREATE INDEX notification_claim ON {{schema}}.notification (id) WHERE failed_at IS NULL AND head IS NOT FALSE;
-- Listing failed notifications, and purging old ones in bounded batches, reads only them.
CREATE INDEX notification_failed_at ON {{schema}}.notification (failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX notification_ordering_key ON {{schema}}.notification (channel, ordering_key, id) WHERE ordering_key IS NOT NULL;
CREATE INDEX notification_unknown_head ON {{schema}}.notification (id) WHERE head IS NULL AND ordering_key IS NOT NULL AND failed_at IS NULL;

-- Per listener (its holder lock key), the ids of the batch it is running, committed before its
-- callbacks run, so that the record outlives a claiming transaction a dying process takes with it.
-- xact: the claiming transaction, whose row locks hold the ids (NULL for a message run alone).
-- backend_*: the listener's LISTEN connection, which holds the holder lock (listener_gone()).
CREATE TABLE {{schema}}.inflight (
  holder integer PRIMARY KEY,
  ids bigint[] NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  suspected_at timestamptz,
  xact xid8,
  backend_pid integer,
  backend_role oid,
  backend_start timestamptz
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
COMMENT ON TABLE {{schema}}.inflight IS 'sequelize-pgpubsub: per listener (its holder lock key), the notifications it is running; outlives the claiming transaction so that a process death is charged to them';

-- Any role can take an advisory lock, so a drain lock alone proves nothing: the listener that
-- drains also writes the time here (roles without UPDATE on it cannot), and a producer skips its
-- NOTIFY for a drain lock only while that beat is fresh.
CREATE SEQUENCE {{schema}}.drain_beat MINVALUE 0 START 0 NO CYCLE;
COMMENT ON SEQUENCE {{schema}}.drain_beat IS 'sequelize-pgpubsub: the time (epoch ms) a listener holding a drain lock last said it is draining';

-- Channels no listener claims until resumed; their notifications stay stored. Readable by the listeners.
CREATE TABLE {{schema}}.paused (
  channel text PRIMARY KEY,
  paused_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE {{schema}}.paused IS 'sequelize-pgpubsub: channels no listener claims until resumed';
GRANT SELECT ON {{schema}}.paused TO PUBLIC;

-- One row per live LISTEN connection, keyed by its backend pid. Readers take only the rows of live
-- listener connections (their locks), so a dead process never shows.
CREATE TABLE {{schema}}.listener (
  backend_pid integer PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  started_at timestamptz NOT NULL,
  reported_at timestamptz NOT NULL,
  channels jsonb NOT NULL
);
COMMENT ON TABLE {{schema}}.listener IS 'sequelize-pgpubsub: what each live listener connection reports of itself';
GRANT SELECT ON {{schema}}.listener TO PUBLIC;

-- The producer's side of the wake-up protocol (explained in lib/db/wake-locks.ts). Lock calls are
-- plain assignments and conditions (PL/pgSQL evaluates those without the executor), not PERFORMs;
-- it returns whether it sent the NOTIFY, and callers assign the result (cheaper than PERFORM).
CREATE FUNCTION {{schema}}.wake(channel text) RETURNS boolean LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  key integer := hashtext(channel);
  unlocked boolean;
BEGIN
  -- An exclusive probe fails while any listener listens (or, for an instant, another producer probes).
  IF pg_try_advisory_lock({{lock_listening}}, key) THEN
    -- Nobody listens. Say so until commit, taken while the probe keeps listeners from starting: one
    -- that starts after it waits for this commit, then claims. Fails only in the instant a listener checks.
    IF pg_try_advisory_xact_lock_shared({{lock_skipped}}, key) THEN
      unlocked := pg_advisory_unlock({{lock_listening}}, key);
      RETURN false;
    END IF;
    unlocked := pg_advisory_unlock({{lock_listening}}, key);
    PERFORM pg_notify(channel, '');
    RETURN true;
  END IF;
  FOR pass IN 1..2 LOOP
    -- Looking again after saying "skipped": a listener that stopped in between needs no wake-up either.
    IF pass = 2 AND pg_try_advisory_lock({{lock_listening}}, key) THEN
      unlocked := pg_advisory_unlock({{lock_listening}}, key);
      RETURN false;
    END IF;
    -- A shared probe fails only while someone holds the drain lock; a listener draining also beats.
    IF pg_try_advisory_lock_shared({{lock_draining}}, key) THEN
      unlocked := pg_advisory_unlock_shared({{lock_draining}}, key);
      PERFORM pg_notify(channel, '');
      RETURN true;
    ELSIF coalesce(pg_sequence_last_value('{{schema}}.drain_beat'::regclass), 0)
          < extract(epoch FROM clock_timestamp()) * 1000 - {{drain_beat_fresh_ms}} THEN
      -- A drain lock without a fresh beat: not (or no longer) a listener draining. Wake when in doubt.
      PERFORM pg_notify(channel, '');
      RETURN true;
    END IF;
    -- A listener drains: skip, saying so until commit (it claims again once this commit is done),
    -- then look once more, since it may have let go of its drain lock meanwhile.
    IF pass = 1 AND NOT pg_try_advisory_xact_lock_shared({{lock_skipped}}, key) THEN
      PERFORM pg_notify(channel, '');
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END
$fn$;

-- Whether the listener that wrote a marker is gone: its holder lock is free, or held by a backend
-- other than the LISTEN connection the marker names. Any role that can connect can take an
-- advisory lock, a dead listener's key included, but it cannot be that backend: its pid and role
-- (and its start, where the caller may see it: a backend of its own role). The lock is taken and
-- let go at once: a listener reconnecting must be able to take its key back.
CREATE FUNCTION {{schema}}.listener_gone(holder integer, backend_pid integer, backend_role oid, backend_start timestamptz) RETURNS boolean
  LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT CASE WHEN pg_catalog.pg_try_advisory_lock_shared({{lock_holder}}, holder)
              THEN pg_catalog.pg_advisory_unlock_shared({{lock_holder}}, holder)
              ELSE backend_pid IS NOT NULL AND NOT EXISTS (
                     SELECT FROM pg_catalog.pg_stat_get_activity(backend_pid) AS a
                      WHERE a.usesysid = backend_role AND (a.backend_start IS NULL OR a.backend_start = listener_gone.backend_start)) END
$fn$;

-- Locks and returns up to max_rows due notifications in id order, skipping rows other listeners
-- hold, flagging those a dead listener held (suspects), and taking ordered rows one per key. It
-- bounds its transaction on the server (statement_timeout, idle_in_transaction_session_timeout),
-- so a frozen process or a dead network path gives its rows back. Right after a bulk insert the
-- table has no statistics and the planner would sort the whole backlog: sorting is off here.
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

-- Marks the ordered rows known to wait behind an earlier stored one that no listener has in hand
-- (head false), so that claims skip them by index. Run by a listener in a transaction of its own
-- before it claims, never inside the claim: its row locks would otherwise last the whole batch,
-- and two listeners' batches, each promoting a row the other had locked, would deadlock.
-- A row marked false relies on whoever removes the earlier one to promote it, and that remover's
-- trigger cannot see a row committed after it ran; so the earlier row counts only when no remover
-- can be at work on it unseen: the key's head (removed only by the claim that has it in flight),
-- or a waiting or failed row this transaction holds a key-share lock on (a fold or purge deleting
-- it holds it, and one that comes later waits for this commit, then sees the mark). A first row
-- not yet known to be the head counts not at all: locking it would make a claim skip it.
CREATE FUNCTION {{schema}}.settle_heads(channels text[]) RETURNS integer LANGUAGE plpgsql
  SET jit = off SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  flying bigint[];
  marked integer := 0;
BEGIN
  IF EXISTS (SELECT FROM {{schema}}.notification AS q WHERE q.head IS NULL AND q.ordering_key IS NOT NULL AND q.failed_at IS NULL AND q.channel = ANY (channels)) THEN
    flying := ARRAY(SELECT u.id FROM {{schema}}.inflight AS m, pg_catalog.unnest(m.ids) AS u(id));
    UPDATE {{schema}}.notification AS b SET head = false
     WHERE b.id IN (SELECT q.id FROM {{schema}}.notification AS q
                     CROSS JOIN LATERAL (SELECT e.id, e.head, e.failed_at FROM {{schema}}.notification AS e
                                          WHERE e.channel = q.channel AND e.ordering_key = q.ordering_key AND e.id < q.id
                                            AND NOT (e.id = ANY (flying))
                                          ORDER BY e.id LIMIT 1) AS first
                     WHERE q.head IS NULL AND q.ordering_key IS NOT NULL AND q.failed_at IS NULL AND q.channel = ANY (channels)
                       AND ((first.head AND first.failed_at IS NULL)
                            OR EXISTS (SELECT FROM {{schema}}.notification AS l WHERE l.id = first.id AND (l.head IS FALSE OR l.failed_at IS NOT NULL)
                                          FOR KEY SHARE OF l SKIP LOCKED))
                     ORDER BY q.id LIMIT 1000 FOR UPDATE OF q SKIP LOCKED)
       AND b.head IS NULL;
    GET DIAGNOSTICS marked = ROW_COUNT;
  END IF;
  RETURN marked;
END
$fn$;

-- Statement triggers promote the next row of every key a statement let go of (a processed row
-- deleted, a purge, a failure for good that releases its key), and wake its channel's listeners,
-- so every path that ends a notification moves its key on, in the same transaction.
CREATE FUNCTION {{schema}}.advance_deleted() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  moved text;
  woke boolean;
BEGIN
  -- Most deletes are of unordered rows: nothing to do.
  IF EXISTS (SELECT FROM gone WHERE gone.ordering_key IS NOT NULL) THEN
    FOR moved IN WITH promoted AS (
      UPDATE {{schema}}.notification AS p SET head = true
       WHERE p.id IN (SELECT (SELECT pg_catalog.min(e.id) FROM {{schema}}.notification AS e WHERE e.channel = k.channel AND e.ordering_key = k.ordering_key)
                        FROM (SELECT DISTINCT gone.channel, gone.ordering_key FROM gone WHERE gone.ordering_key IS NOT NULL) AS k)
         AND p.head IS NOT TRUE
      RETURNING p.channel)
    SELECT DISTINCT promoted.channel FROM promoted LOOP
      woke := {{schema}}.wake(moved);
    END LOOP;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE FUNCTION {{schema}}.advance_released() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  moved text;
  woke boolean;
BEGIN
  IF EXISTS (SELECT FROM gone WHERE gone.ordering_key IS NOT NULL) THEN
    FOR moved IN WITH promoted AS (
      UPDATE {{schema}}.notification AS p SET head = true
       WHERE p.id IN (SELECT (SELECT pg_catalog.min(e.id) FROM {{schema}}.notification AS e WHERE e.channel = k.channel AND e.ordering_key = k.ordering_key)
                        FROM (SELECT DISTINCT gone.channel, gone.ordering_key FROM gone JOIN kept ON kept.id = gone.id
                               WHERE gone.ordering_key IS NOT NULL AND kept.ordering_key IS NULL) AS k)
         AND p.head IS NOT TRUE
      RETURNING p.channel)
    SELECT DISTINCT promoted.channel FROM promoted LOOP
      woke := {{schema}}.wake(moved);
    END LOOP;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER pgpubsub_advance_deleted AFTER DELETE ON {{schema}}.notification
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.advance_deleted();
CREATE TRIGGER pgpubsub_advance_released AFTER UPDATE ON {{schema}}.notification
  REFERENCING OLD TABLE AS gone NEW TABLE AS kept FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.advance_released();

-- What notify() runs, as the library's owner: the functions an app's role is granted. A role granted
-- them can send on any channel, but only as op 'NOTIFY': a listener fails such a row on a model
-- channel at once as malformed.
CREATE FUNCTION {{schema}}.send(channel text, payload jsonb, durable boolean) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  message jsonb := jsonb_build_object('op', 'NOTIFY', 'payload', payload, 'context', {{schema}}.context());
  woke boolean;
BEGIN
  IF durable THEN
    INSERT INTO {{schema}}.notification (channel, payload) VALUES (channel, message);
    woke := {{schema}}.wake(channel);
  ELSE
    PERFORM pg_notify(channel, message::text);
  END IF;
END
$fn$;

-- A delayed notification (notify()'s delayMs and runAt, a channel's delayMs): due no earlier than available_at.
CREATE FUNCTION {{schema}}.send(channel text, payload jsonb, durable boolean, available_at timestamptz) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  message jsonb := jsonb_build_object('op', 'NOTIFY', 'payload', payload, 'context', {{schema}}.context());
  woke boolean;
BEGIN
  IF NOT durable THEN
    RAISE EXCEPTION 'pgpubsub send: a broadcast cannot be delayed (it is a NOTIFY, never stored)' USING ERRCODE = '22023';
  END IF;
  -- An infinite due time would never come (and no listener could count down to it).
  IF NOT isfinite(available_at) OR available_at > '{{latest_run_at}}'::timestamptz THEN
    RAISE EXCEPTION 'pgpubsub send: available_at must be a finite time no later than {{latest_run_at}}, got %', available_at USING ERRCODE = '22008';
  END IF;
  INSERT INTO {{schema}}.notification (channel, payload, available_at) VALUES (channel, message, coalesce(available_at, now()));
  -- Woken now: a listener that finds it not yet due sets a timer for it.
  woke := {{schema}}.wake(channel);
END
$fn$;

-- Writes the caller's own row of listener (its backend pid, never another's), as the owner; NULL
-- channels deletes it.
CREATE FUNCTION {{schema}}.report(host text, pid integer, started_at timestamptz, channels jsonb) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  -- Rows of connections that ended (every role sees every backend's pid).
  DELETE FROM {{schema}}.listener AS l WHERE NOT EXISTS (SELECT FROM pg_stat_activity AS a WHERE a.pid = l.backend_pid);
  IF channels IS NULL THEN
    DELETE FROM {{schema}}.listener WHERE backend_pid = pg_backend_pid();
    RETURN;
  END IF;
  IF jsonb_typeof(channels) <> 'object' OR pg_column_size(channels) > {{report_max_bytes}} THEN
    RAISE EXCEPTION 'pgpubsub report: channels must be a JSON object of at most {{report_max_bytes}} bytes' USING ERRCODE = '22023';
  END IF;
  INSERT INTO {{schema}}.listener AS l (backend_pid, host, pid, started_at, reported_at, channels)
  VALUES (pg_backend_pid(), left(host, 255), pid, started_at, clock_timestamp(), channels)
  ON CONFLICT (backend_pid) DO UPDATE
    SET host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
        reported_at = EXCLUDED.reported_at, channels = EXCLUDED.channels;
END
$fn$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {{schema}} FROM PUBLIC;

-- The managed trigger functions run as their owner (a writer needs no right on the notification
-- table, so it cannot forge one), and so does whatever they run: a cast to json from a column's
-- type (to_jsonb() calls it), a function a when.sql condition calls. They are owned by this role,
-- which can log in to nothing and do nothing but write notifications: code another role wrote
-- runs there with no more rights than that. Created here when the installing role may (superuser,
-- or CREATEROLE); otherwise an administrator creates it and grants it to the installing role.
DO $do$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {{trigger_owner_name}}) THEN
    BEGIN
      CREATE ROLE {{trigger_owner}} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- another database's install made it meanwhile (roles belong to the whole server)
    WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'pgpubsub: the role % that owns the library''s trigger functions does not exist, and % may not create it: as an administrator, %, then run the migration again',
        {{trigger_owner_name}}, current_user, pg_catalog.format('CREATE ROLE %I NOLOGIN; GRANT %I TO %I', {{trigger_owner_name}}, {{trigger_owner_name}}, current_user)
        USING ERRCODE = 'insufficient_privilege';
    END;
  END IF;
  -- The installing role makes the trigger functions and hands them over: it must be able to act as that role.
  IF NOT pg_catalog.pg_has_role(current_user, {{trigger_owner_name}}, 'MEMBER') THEN
    BEGIN
      GRANT {{trigger_owner}} TO CURRENT_USER;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'pgpubsub: % must be a member of the role % that owns the library''s trigger functions: as an administrator, %, then run the migration again',
        current_user, {{trigger_owner_name}}, pg_catalog.format('GRANT %I TO %I', {{trigger_owner_name}}, current_user)
        USING ERRCODE = 'insufficient_privilege';
    END;
  END IF;
END
$do$;
GRANT USAGE ON SCHEMA {{schema}} TO {{trigger_owner}};
GRANT INSERT ON {{schema}}.notification TO {{trigger_owner}};
GRANT USAGE ON SEQUENCE {{schema}}.notification_id_seq TO {{trigger_owner}};
GRANT SELECT ON SEQUENCE {{schema}}.drain_beat TO {{trigger_owner}};
GRANT EXECUTE ON FUNCTION {{schema}}.context(), {{schema}}.parse_context(text), {{schema}}.db_version(), {{schema}}.wake(text) TO {{trigger_owner}};

-- db_version() follows the app's migration storage table, wherever it is (sequelize-cli and
-- Umzug's SequelizeStorage create it before the first migration runs).
DO $do$
DECLARE
  storage regclass := pg_catalog.to_regclass({{storage}});
BEGIN
  IF storage IS NOT NULL THEN
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s', {{db_version_trigger}}, storage);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.db_version_changed()',
                              {{db_version_trigger}}, storage);
  END IF;
  PERFORM {{schema}}.refresh_db_version(storage);
END
$do$;
