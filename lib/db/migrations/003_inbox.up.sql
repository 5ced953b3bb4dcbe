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
  -- Set in the transaction of its callbacks' work: it ran, and never runs again.
  processed_at timestamptz,
  -- Its callbacks' failures so far (not its deliveries: a redelivery after a lost connection or an
  -- acknowledgement that came late is no failure), and the last one's error.
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  -- Set when its callbacks failed for good (after the channel's maxAttempts, or at once for a
  -- message that can never succeed): JetStream was told to stop delivering it.
  failed_at timestamptz
);
-- Pruning the ones that ran by age, and the failed ones for the status.
CREATE INDEX inbox_processed ON {{schema}}.inbox (processed_at) WHERE processed_at IS NOT NULL;
CREATE INDEX inbox_failed ON {{schema}}.inbox (channel, failed_at) WHERE failed_at IS NOT NULL;
REVOKE ALL ON {{schema}}.inbox FROM PUBLIC;

-- The roles that process notifications here (they delete them) may run an inbox too, and those
-- that read them (an operator's, for the status) may read it.
DO $grants$
DECLARE
  grantee text;
  rights text;
BEGIN
  FOR grantee, rights IN
    SELECT pg_catalog.quote_ident(r.rolname),
           CASE WHEN pg_catalog.bool_or(a.privilege_type = 'DELETE') THEN 'SELECT, INSERT, UPDATE, DELETE' ELSE 'SELECT' END
      FROM pg_catalog.pg_class AS c
     CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
      JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
     WHERE c.oid = '{{schema}}.notification'::pg_catalog.regclass
       AND a.privilege_type IN ('SELECT', 'DELETE') AND r.rolname <> current_user
     GROUP BY r.rolname
  LOOP
    EXECUTE 'GRANT ' || rights || ' ON {{schema}}.inbox TO ' || grantee;
  END LOOP;
END
$grants$;
