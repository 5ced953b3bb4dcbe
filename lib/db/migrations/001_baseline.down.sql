-- sequelize-pgpubsub library migration 1, undone: drops the library's objects (stored
-- notifications included), its trigger on the app's migration storage table, and its schema (which
-- must then be empty: objects of the app's own in it make this fail and change nothing).
-- Managed triggers on the app's tables call functions of this schema: undo the trigger migrations
-- (or run `pgpubsub triggers prune`) first, or writes to those tables fail afterwards.

DO $do$
DECLARE
  storage regclass := pg_catalog.to_regclass({{storage}});
BEGIN
  IF storage IS NOT NULL THEN
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s', {{db_version_trigger}}, storage);
  END IF;
END
$do$;

DROP TABLE {{schema}}.notification, {{schema}}.inflight, {{schema}}.paused, {{schema}}.listener, {{schema}}.version;
DROP SEQUENCE {{schema}}.drain_beat;
DROP FUNCTION {{schema}}.report(text, integer, timestamptz, jsonb), {{schema}}.send(text, jsonb, boolean, timestamptz),
  {{schema}}.send(text, jsonb, boolean), {{schema}}.advance_released(), {{schema}}.advance_deleted(),
  {{schema}}.settle_heads(text[]), {{schema}}.claim(text[], jsonb, integer, integer, integer),
  {{schema}}.listener_gone(integer, integer, oid, timestamptz), {{schema}}.wake(text),
  {{schema}}.context(), {{schema}}.parse_context(text), {{schema}}.db_version_changed(),
  {{schema}}.refresh_db_version(regclass), {{schema}}.db_version();
DROP SCHEMA {{schema}};
