-- The library's grants for the two roles an app runs as (docs/security.md, "Database objects and privileges").
-- Run them as the role that ran the migrations (it owns schema pgpubsub, the library's objects and
-- the managed triggers), after the migrations. app_writer and app_listener stand for your roles.

-- The app's role. Its writes to channel tables need nothing from the library: the triggers run as
-- their owner. notify() on a custom channel needs send().
GRANT USAGE ON SCHEMA pgpubsub TO app_writer;
GRANT EXECUTE ON FUNCTION pgpubsub.send(text, jsonb, boolean) TO app_writer;
GRANT EXECUTE ON FUNCTION pgpubsub.send(text, jsonb, boolean, timestamptz) TO app_writer;

-- The listener's role: claims, deletes what it processed, records failures and what it is running.
-- Its callbacks also need the rights their own queries use (here: those of app_writer).
GRANT USAGE ON SCHEMA pgpubsub TO app_listener;
GRANT SELECT ON pgpubsub.version TO app_listener;
GRANT SELECT, UPDATE, DELETE ON pgpubsub.notification TO app_listener;
GRANT SELECT, INSERT, UPDATE, DELETE ON pgpubsub.inflight TO app_listener;
GRANT SELECT, UPDATE ON SEQUENCE pgpubsub.drain_beat TO app_listener;
GRANT EXECUTE ON FUNCTION pgpubsub.claim(text[], jsonb, integer, integer, integer, bigint[], bigint[]) TO app_listener;
GRANT EXECUTE ON FUNCTION pgpubsub.report(text, integer, timestamptz, jsonb) TO app_listener;
GRANT EXECUTE ON FUNCTION pgpubsub.settle_heads(text[]) TO app_listener;
GRANT EXECUTE ON FUNCTION pgpubsub.listener_gone(integer, integer, oid, timestamptz) TO app_listener;
-- An inbox (a listener fed from NATS JetStream) records the messages it ran.
GRANT SELECT, INSERT, UPDATE, DELETE ON pgpubsub.inbox TO app_listener;
GRANT app_writer TO app_listener;

-- An operator's role, for pgpubsub status, failed and channels (the owner needs nothing more).
GRANT USAGE ON SCHEMA pgpubsub TO app_operator;
GRANT SELECT, UPDATE, DELETE ON pgpubsub.notification TO app_operator;
GRANT SELECT ON pgpubsub.inflight, pgpubsub.version, pgpubsub.inbox TO app_operator;
GRANT SELECT, INSERT, DELETE ON pgpubsub.paused TO app_operator;
