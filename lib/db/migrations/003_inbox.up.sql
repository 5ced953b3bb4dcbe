-- sequelize-pgpubsub library migration 3: the inbox, where a listener fed from NATS JetStream
-- (lib/relay/inbox.ts) records each message it ran, in the transaction of its callbacks' work, so
-- that a message delivered again is acknowledged without running twice.
--
-- Frozen once released (see 001_baseline.up.sql for the placeholders).

CREATE TABLE {{schema}}.inbox (
  -- The message's Nats-Msg-Id: the relaying database's identity, its library schema and the notification's id.
  message_id text PRIMARY KEY,
  channel text NOT NULL,
  -- Its sequence number in the stream, for looking it up there.
  stream_seq bigint,
  received_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  -- Set when its callbacks failed for good (after the channel's maxAttempts, or at once for a
  -- message that can never succeed): JetStream was told to stop delivering it.
  failed_at timestamptz,
  attempts integer NOT NULL DEFAULT 1,
  last_error text
);
-- Pruning by age, and the failed ones for the status.
CREATE INDEX inbox_received ON {{schema}}.inbox (received_at);
CREATE INDEX inbox_failed ON {{schema}}.inbox (channel, failed_at) WHERE failed_at IS NOT NULL;
REVOKE ALL ON {{schema}}.inbox FROM PUBLIC;

-- The roles that process notifications here (they delete them) may run an inbox too.
DO $grants$
DECLARE
  grantee text;
BEGIN
  FOR grantee IN
    SELECT DISTINCT pg_catalog.quote_ident(r.rolname)
      FROM pg_catalog.pg_class AS c
     CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
      JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
     WHERE c.oid = '{{schema}}.notification'::pg_catalog.regclass
       AND a.privilege_type = 'DELETE' AND r.rolname <> current_user
  LOOP
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {{schema}}.inbox TO ' || grantee;
  END LOOP;
END
$grants$;
