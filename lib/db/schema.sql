-- What a fresh install of sequelize-pgpubsub leaves in its schema (the default, pgpubsub), read
-- from the catalog: review schema changes here. Not run by anything: the library migrations in
-- lib/db/migrations/ install it. Rewritten by `npm run schema:dump`; test/schema.test.ts fails while
-- a fresh install differs from it.

CREATE SCHEMA pgpubsub;
COMMENT ON SCHEMA pgpubsub IS 'sequelize-pgpubsub: the library''s tables and functions';
-- grants other than the owner's: GRANT USAGE ON SCHEMA pgpubsub TO pgpubsub_trigger_owner;

CREATE TABLE pgpubsub.inbox (
  message_id text NOT NULL,
  channel text NOT NULL,
  stream_seq bigint,
  received_at timestamp with time zone NOT NULL DEFAULT now(),
  processed_at timestamp with time zone,
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  failed_at timestamp with time zone
);
ALTER TABLE pgpubsub.inbox ADD CONSTRAINT inbox_pkey PRIMARY KEY (message_id);
CREATE INDEX inbox_failed ON pgpubsub.inbox USING btree (channel, failed_at) WHERE (failed_at IS NOT NULL);
CREATE INDEX inbox_processed ON pgpubsub.inbox USING btree (processed_at) WHERE (processed_at IS NOT NULL);
COMMENT ON TABLE pgpubsub.inbox IS NULL;

CREATE TABLE pgpubsub.inflight (
  holder integer NOT NULL,
  ids bigint[] NOT NULL,
  updated_at timestamp with time zone NOT NULL DEFAULT now(),
  suspected_at timestamp with time zone,
  xact xid8,
  backend_pid integer,
  backend_role oid,
  backend_start timestamp with time zone
) WITH (fillfactor=50, autovacuum_vacuum_scale_factor=0, autovacuum_vacuum_threshold=1000);
ALTER TABLE pgpubsub.inflight ADD CONSTRAINT inflight_pkey PRIMARY KEY (holder);
COMMENT ON TABLE pgpubsub.inflight IS 'sequelize-pgpubsub: per listener (its holder lock key), the notifications it is running; outlives the claiming transaction so that a process death is charged to them';

CREATE TABLE pgpubsub.listener (
  backend_pid integer NOT NULL,
  host text NOT NULL,
  pid integer NOT NULL,
  started_at timestamp with time zone NOT NULL,
  reported_at timestamp with time zone NOT NULL,
  channels jsonb NOT NULL
);
ALTER TABLE pgpubsub.listener ADD CONSTRAINT listener_pkey PRIMARY KEY (backend_pid);
COMMENT ON TABLE pgpubsub.listener IS 'sequelize-pgpubsub: what each live listener connection reports of itself';
GRANT SELECT ON TABLE pgpubsub.listener TO PUBLIC;

CREATE TABLE pgpubsub.notification (
  id bigint NOT NULL DEFAULT nextval('pgpubsub.notification_id_seq'::regclass),
  channel text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  db_version text DEFAULT pgpubsub.db_version(),
  attempts integer NOT NULL DEFAULT 0,
  available_at timestamp with time zone NOT NULL DEFAULT now(),
  last_error text,
  failed_at timestamp with time zone,
  ordering_key text,
  head boolean
) WITH (autovacuum_vacuum_scale_factor=0.01, autovacuum_vacuum_threshold=1000, autovacuum_analyze_scale_factor=0.02, autovacuum_vacuum_cost_delay=0);
ALTER TABLE pgpubsub.notification ADD CONSTRAINT notification_channel_length CHECK (((octet_length(channel) >= 1) AND (octet_length(channel) <= 63)));
ALTER TABLE pgpubsub.notification ADD CONSTRAINT notification_pkey PRIMARY KEY (id);
CREATE INDEX notification_due ON pgpubsub.notification USING btree (channel, available_at, id) WHERE ((failed_at IS NULL) AND (head IS NOT FALSE));
CREATE INDEX notification_failed_at ON pgpubsub.notification USING btree (failed_at) WHERE (failed_at IS NOT NULL);
CREATE INDEX notification_failed_channel ON pgpubsub.notification USING btree (channel, failed_at) INCLUDE (ordering_key) WHERE (failed_at IS NOT NULL);
CREATE INDEX notification_ordering_key ON pgpubsub.notification USING btree (channel, ordering_key, id) WHERE (ordering_key IS NOT NULL);
CREATE INDEX notification_unknown_head ON pgpubsub.notification USING btree (id) WHERE ((head IS NULL) AND (ordering_key IS NOT NULL) AND (failed_at IS NULL));
CREATE TRIGGER pgpubsub_advance_deleted AFTER DELETE ON pgpubsub.notification REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pgpubsub.advance_deleted();
CREATE TRIGGER pgpubsub_advance_released AFTER UPDATE ON pgpubsub.notification REFERENCING OLD TABLE AS gone NEW TABLE AS kept FOR EACH STATEMENT EXECUTE FUNCTION pgpubsub.advance_released();
COMMENT ON TABLE pgpubsub.notification IS 'sequelize-pgpubsub: stored notifications of durable channels, deleted when processed; failed_at marks those that used up their attempts';
GRANT INSERT ON TABLE pgpubsub.notification TO pgpubsub_trigger_owner;

CREATE TABLE pgpubsub.paused (
  channel text NOT NULL,
  paused_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE pgpubsub.paused ADD CONSTRAINT paused_pkey PRIMARY KEY (channel);
COMMENT ON TABLE pgpubsub.paused IS 'sequelize-pgpubsub: channels no listener claims until resumed';
GRANT SELECT ON TABLE pgpubsub.paused TO PUBLIC;

CREATE TABLE pgpubsub.version (
  version integer NOT NULL,
  name text NOT NULL,
  applied_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE pgpubsub.version ADD CONSTRAINT version_pkey PRIMARY KEY (version);
COMMENT ON TABLE pgpubsub.version IS 'sequelize-pgpubsub: the library migrations applied to this database';

CREATE SEQUENCE pgpubsub.drain_beat AS bigint INCREMENT 1 MINVALUE 0 MAXVALUE 9223372036854775807 START 0 NO CYCLE;
COMMENT ON SEQUENCE pgpubsub.drain_beat IS 'sequelize-pgpubsub: the time (epoch ms) a listener holding a drain lock last said it is draining';
GRANT SELECT ON SEQUENCE pgpubsub.drain_beat TO pgpubsub_trigger_owner;

CREATE SEQUENCE pgpubsub.notification_id_seq AS bigint INCREMENT 1 MINVALUE 1 MAXVALUE 9223372036854775807 START 1 NO CYCLE; -- owned by pgpubsub.notification
GRANT USAGE ON SEQUENCE pgpubsub.notification_id_seq TO pgpubsub_trigger_owner;

CREATE OR REPLACE FUNCTION pgpubsub.advance_deleted()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  moved text;
  woke boolean;
BEGIN
  -- Most deletes are of unordered rows: nothing to do.
  IF EXISTS (SELECT FROM gone WHERE gone.ordering_key IS NOT NULL) THEN
    FOR moved IN WITH promoted AS (
      UPDATE "pgpubsub".notification AS p SET head = true
       WHERE p.id IN (SELECT (SELECT pg_catalog.min(e.id) FROM "pgpubsub".notification AS e WHERE e.channel = k.channel AND e.ordering_key = k.ordering_key)
                        FROM (SELECT DISTINCT gone.channel, gone.ordering_key FROM gone WHERE gone.ordering_key IS NOT NULL) AS k)
         AND p.head IS NOT TRUE
      RETURNING p.channel)
    SELECT DISTINCT promoted.channel FROM promoted LOOP
      woke := "pgpubsub".wake(moved);
    END LOOP;
  END IF;
  RETURN NULL;
END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.advance_released()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  moved text;
  woke boolean;
BEGIN
  IF EXISTS (SELECT FROM gone WHERE gone.ordering_key IS NOT NULL) THEN
    FOR moved IN WITH promoted AS (
      UPDATE "pgpubsub".notification AS p SET head = true
       WHERE p.id IN (SELECT (SELECT pg_catalog.min(e.id) FROM "pgpubsub".notification AS e WHERE e.channel = k.channel AND e.ordering_key = k.ordering_key)
                        FROM (SELECT DISTINCT gone.channel, gone.ordering_key FROM gone JOIN kept ON kept.id = gone.id
                               WHERE gone.ordering_key IS NOT NULL AND kept.ordering_key IS NULL) AS k)
         AND p.head IS NOT TRUE
      RETURNING p.channel)
    SELECT DISTINCT promoted.channel FROM promoted LOOP
      woke := "pgpubsub".wake(moved);
    END LOOP;
  END IF;
  RETURN NULL;
END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.claim(channels text[], context jsonb, max_rows integer, claimer integer, timeout_ms integer, after_us bigint[], after_id bigint[])
 RETURNS TABLE(id text, channel text, payload text, attempts integer, suspect boolean, due_us bigint, created_at timestamp with time zone)
 LANGUAGE plpgsql
 SET enable_sort TO 'off'
 SET jit TO 'off'
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
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
  -- listener's only after 10 s without its lock; until then its rows are left alone.
  -- So are, for as long, the rows of a marker whose lock is held but whose claiming transaction
  -- aborted: a dying process's server lets go of its row locks before its holder lock, and its
  -- batch, poison included, must not run again in another process's batch meanwhile. After that
  -- they are suspects, as a dead listener's: the server ended that claim (the timeouts above), so
  -- its process froze or blocked its event loop past every limit, maybe on one of them.
  WITH marker AS MATERIALIZED (
    SELECT m.holder, m.ids, m.suspected_at, gone.free,
           NOT gone.free AND m.xact < pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())
             AND pg_catalog.pg_xact_status(m.xact) = 'aborted' AS dying
      FROM "pgpubsub".inflight AS m
     CROSS JOIN LATERAL (SELECT "pgpubsub".listener_gone(m.holder, m.backend_pid, m.backend_role, m.backend_start) AS free) AS gone
     WHERE m.holder IS DISTINCT FROM claimer
  ), noticed AS (
    -- SKIP LOCKED: a claim never waits for another claim's transaction.
    UPDATE "pgpubsub".inflight AS m SET suspected_at = now()
     WHERE m.holder IN (SELECT i.holder FROM "pgpubsub".inflight AS i JOIN marker ON i.holder = marker.holder
                         WHERE (marker.free OR marker.dying) AND marker.suspected_at IS NULL FOR UPDATE OF i SKIP LOCKED)
  )
  SELECT pg_catalog.array_agg(u.id) FILTER (WHERE marker.suspected_at < now() - interval '10 seconds'),
         pg_catalog.array_agg(u.id) FILTER (WHERE marker.suspected_at IS NULL OR marker.suspected_at >= now() - interval '10 seconds')
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
         (SELECT n.available_at, n.id FROM "pgpubsub".notification AS n
           WHERE n.channel = ch.name AND n.failed_at IS NULL AND n.head IS NOT FALSE AND n.available_at <= now()
             AND (n.available_at, n.id) > (coalesce(ch.after_at, '-infinity'), coalesce(ch.after_id, 0))
           ORDER BY n.available_at, n.id LIMIT 1)
         UNION ALL
         (SELECT n.available_at, n.id FROM "pgpubsub".notification AS n
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
         SELECT * FROM (SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head, c.available_at, c.created_at FROM "pgpubsub".notification AS c
           WHERE c.channel = o.name AND c.failed_at IS NULL AND c.head IS NOT FALSE AND c.available_at <= now()
             -- (no point: from the start; an OR here would keep the bound out of the index scan)
             AND (c.available_at, c.id) > (coalesce(o.after_at, '-infinity'), coalesce(o.after_id, 0))
             AND (context IS NULL OR c.payload -> 'context' @> context)
             AND (waiting IS NULL OR NOT (c.id = ANY (waiting)))
             -- An ordered row not yet known to be next: only when no earlier row of its key is stored.
             AND (c.ordering_key IS NULL OR c.head OR NOT EXISTS (
                   SELECT FROM "pgpubsub".notification AS e WHERE e.channel = c.channel AND e.ordering_key = c.ordering_key AND e.id < c.id))
           ORDER BY c.available_at, c.id
             FOR UPDATE OF c SKIP LOCKED) AS after_point
         UNION ALL
         SELECT * FROM (SELECT c.id, c.channel, c.payload, c.attempts, c.ordering_key, c.head, c.available_at, c.created_at FROM "pgpubsub".notification AS c
           WHERE c.channel = o.name AND c.failed_at IS NULL AND c.head IS NOT FALSE AND c.available_at <= now()
             AND o.after_at IS NOT NULL AND (c.available_at, c.id) <= (o.after_at, o.after_id)
             AND (context IS NULL OR c.payload -> 'context' @> context)
             AND (waiting IS NULL OR NOT (c.id = ANY (waiting)))
             AND (c.ordering_key IS NULL OR c.head OR NOT EXISTS (
                   SELECT FROM "pgpubsub".notification AS e WHERE e.channel = c.channel AND e.ordering_key = c.ordering_key AND e.id < c.id))
           ORDER BY c.available_at, c.id
             FOR UPDATE OF c SKIP LOCKED) AS before_point) AS c
       LIMIT max_rows
    ), known AS (
      -- Claimed, it is its key's next until it is done (a retry keeps its place).
      UPDATE "pgpubsub".notification AS k SET head = true FROM claimed WHERE k.id = claimed.id AND claimed.ordering_key IS NOT NULL AND claimed.head IS NULL
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
      SELECT m.ids FROM "pgpubsub".inflight AS m
       WHERE m.holder IS DISTINCT FROM claimer
         AND ("pgpubsub".listener_gone(m.holder, m.backend_pid, m.backend_role, m.backend_start)
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
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.context()
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
  SELECT CASE WHEN coalesce(pg_catalog.current_setting('pgpubsub.notification_context', true), '') = '' THEN '{}'::pg_catalog.jsonb
              ELSE "pgpubsub".parse_context(pg_catalog.current_setting('pgpubsub.notification_context', true)) END
    OPERATOR(pg_catalog.||) CASE WHEN coalesce(pg_catalog.current_setting('pgpubsub.traceparent', true), '') = '' THEN '{}'::pg_catalog.jsonb
                                 ELSE pg_catalog.jsonb_build_object('traceparent', pg_catalog.current_setting('pgpubsub.traceparent', true)) END
$function$;
-- grants other than the owner's: GRANT EXECUTE ON FUNCTION pgpubsub.context() TO pgpubsub_trigger_owner;

CREATE OR REPLACE FUNCTION pgpubsub.db_version()
 RETURNS text
 LANGUAGE sql
 STABLE
AS $function$ SELECT NULL::pg_catalog.text $function$;
-- grants other than the owner's: GRANT EXECUTE ON FUNCTION pgpubsub.db_version() TO pgpubsub_trigger_owner;

CREATE OR REPLACE FUNCTION pgpubsub.db_version_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
  PERFORM "pgpubsub".refresh_db_version(TG_RELID::regclass);
  RETURN NULL;
END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.listener_gone(holder integer, backend_pid integer, backend_role oid, backend_start timestamp with time zone)
 RETURNS boolean
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT CASE WHEN pg_catalog.pg_try_advisory_lock_shared(1885826933, holder)
              THEN pg_catalog.pg_advisory_unlock_shared(1885826933, holder)
              ELSE backend_pid IS NOT NULL AND NOT EXISTS (
                     SELECT FROM pg_catalog.pg_stat_get_activity(backend_pid) AS a
                      WHERE a.usesysid = backend_role AND (a.backend_start IS NULL OR a.backend_start = listener_gone.backend_start)) END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.parse_context(raw text)
 RETURNS jsonb
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
  RETURN raw::jsonb;
EXCEPTION WHEN others THEN
  -- A hand-set, malformed context must never cancel the user's write.
  RETURN jsonb_build_object('invalid_context', raw);
END
$function$;
-- grants other than the owner's: GRANT EXECUTE ON FUNCTION pgpubsub.parse_context(raw text) TO pgpubsub_trigger_owner;

CREATE OR REPLACE FUNCTION pgpubsub.refresh_db_version(storage regclass)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  newest text;
BEGIN
  IF storage IS NOT NULL THEN
    EXECUTE format('SELECT name FROM %s WHERE name NOT LIKE %L ORDER BY name DESC LIMIT 1', storage, 'pgpubsub-triggers-%')
       INTO newest;
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION "pgpubsub".db_version() RETURNS text LANGUAGE sql STABLE AS %L',
                 format(' SELECT %L::pg_catalog.text ', newest));
END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.report(host text, pid integer, started_at timestamp with time zone, channels jsonb)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
  -- Rows of connections that ended (every role sees every backend's pid).
  DELETE FROM "pgpubsub".listener AS l WHERE NOT EXISTS (SELECT FROM pg_stat_activity AS a WHERE a.pid = l.backend_pid);
  IF channels IS NULL THEN
    DELETE FROM "pgpubsub".listener WHERE backend_pid = pg_backend_pid();
    RETURN;
  END IF;
  IF jsonb_typeof(channels) <> 'object' OR pg_column_size(channels) > 65536 THEN
    RAISE EXCEPTION 'pgpubsub report: channels must be a JSON object of at most 65536 bytes' USING ERRCODE = '22023';
  END IF;
  INSERT INTO "pgpubsub".listener AS l (backend_pid, host, pid, started_at, reported_at, channels)
  VALUES (pg_backend_pid(), left(host, 255), pid, started_at, clock_timestamp(), channels)
  ON CONFLICT (backend_pid) DO UPDATE
    SET host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
        reported_at = EXCLUDED.reported_at, channels = EXCLUDED.channels;
END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.send(channel text, payload jsonb, durable boolean)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  message jsonb := jsonb_build_object('op', 'NOTIFY', 'payload', payload, 'context', "pgpubsub".context());
  woke boolean;
BEGIN
  IF durable THEN
    INSERT INTO "pgpubsub".notification (channel, payload) VALUES (channel, message);
    woke := "pgpubsub".wake(channel);
  ELSE
    PERFORM pg_notify(channel, message::text);
  END IF;
END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.send(channel text, payload jsonb, durable boolean, available_at timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  message jsonb := jsonb_build_object('op', 'NOTIFY', 'payload', payload, 'context', "pgpubsub".context());
  woke boolean;
BEGIN
  IF NOT durable THEN
    RAISE EXCEPTION 'pgpubsub send: a broadcast cannot be delayed (it is a NOTIFY, never stored)' USING ERRCODE = '22023';
  END IF;
  -- An infinite due time would never come (and no listener could count down to it).
  IF NOT isfinite(available_at) OR available_at > '9999-12-31T23:59:59.999Z'::timestamptz THEN
    RAISE EXCEPTION 'pgpubsub send: available_at must be a finite time no later than 9999-12-31T23:59:59.999Z, got %', available_at USING ERRCODE = '22008';
  END IF;
  INSERT INTO "pgpubsub".notification (channel, payload, available_at) VALUES (channel, message, coalesce(available_at, now()));
  -- Woken now: a listener that finds it not yet due sets a timer for it.
  woke := "pgpubsub".wake(channel);
END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.settle_heads(channels text[])
 RETURNS integer
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  flying bigint[];
  marked integer := 0;
BEGIN
  IF EXISTS (SELECT FROM "pgpubsub".notification AS q WHERE q.head IS NULL AND q.ordering_key IS NOT NULL AND q.failed_at IS NULL AND q.channel = ANY (channels)) THEN
    flying := ARRAY(SELECT u.id FROM "pgpubsub".inflight AS m, pg_catalog.unnest(m.ids) AS u(id));
    UPDATE "pgpubsub".notification AS b SET head = false
     WHERE b.id IN (SELECT q.id FROM "pgpubsub".notification AS q
                     CROSS JOIN LATERAL (SELECT e.id, e.head, e.failed_at FROM "pgpubsub".notification AS e
                                          WHERE e.channel = q.channel AND e.ordering_key = q.ordering_key AND e.id < q.id
                                            AND NOT (e.id = ANY (flying))
                                          ORDER BY e.id LIMIT 1) AS first
                     WHERE q.head IS NULL AND q.ordering_key IS NOT NULL AND q.failed_at IS NULL AND q.channel = ANY (channels)
                       AND ((first.head AND first.failed_at IS NULL)
                            OR EXISTS (SELECT FROM "pgpubsub".notification AS l WHERE l.id = first.id AND (l.head IS FALSE OR l.failed_at IS NOT NULL)
                                          FOR KEY SHARE OF l SKIP LOCKED))
                     ORDER BY q.id LIMIT 1000 FOR UPDATE OF q SKIP LOCKED)
       AND b.head IS NULL;
    GET DIAGNOSTICS marked = ROW_COUNT;
  END IF;
  RETURN marked;
END
$function$;
-- grants other than the owner's: none

CREATE OR REPLACE FUNCTION pgpubsub.wake(channel text)
 RETURNS boolean
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  key integer := hashtext(channel);
  unlocked boolean;
BEGIN
  -- An exclusive probe fails while any listener listens (or, for an instant, another producer probes).
  IF pg_try_advisory_lock(1885826930, key) THEN
    -- Nobody listens. Say so until commit, taken while the probe keeps listeners from starting: one
    -- that starts after it waits for this commit, then claims. Fails only in the instant a listener checks.
    IF pg_try_advisory_xact_lock_shared(1885826932, key) THEN
      unlocked := pg_advisory_unlock(1885826930, key);
      RETURN false;
    END IF;
    unlocked := pg_advisory_unlock(1885826930, key);
    PERFORM pg_notify(channel, '');
    RETURN true;
  END IF;
  FOR pass IN 1..2 LOOP
    -- Looking again after saying "skipped": a listener that stopped in between needs no wake-up either.
    IF pass = 2 AND pg_try_advisory_lock(1885826930, key) THEN
      unlocked := pg_advisory_unlock(1885826930, key);
      RETURN false;
    END IF;
    -- A shared probe fails only while someone holds the drain lock; a listener draining also beats.
    IF pg_try_advisory_lock_shared(1885826931, key) THEN
      unlocked := pg_advisory_unlock_shared(1885826931, key);
      PERFORM pg_notify(channel, '');
      RETURN true;
    ELSIF coalesce(pg_sequence_last_value('"pgpubsub".drain_beat'::regclass), 0)
          < extract(epoch FROM clock_timestamp()) * 1000 - 1000 THEN
      -- A drain lock without a fresh beat: not (or no longer) a listener draining. Wake when in doubt.
      PERFORM pg_notify(channel, '');
      RETURN true;
    END IF;
    -- A listener drains: skip, saying so until commit (it claims again once this commit is done),
    -- then look once more, since it may have let go of its drain lock meanwhile.
    IF pass = 1 AND NOT pg_try_advisory_xact_lock_shared(1885826932, key) THEN
      PERFORM pg_notify(channel, '');
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END
$function$;
-- grants other than the owner's: GRANT EXECUTE ON FUNCTION pgpubsub.wake(channel text) TO pgpubsub_trigger_owner;
