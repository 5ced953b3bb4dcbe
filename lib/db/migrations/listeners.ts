import { TRACE_SETTING } from '../../channels/context';
import { PINNED_SEARCH_PATH } from '../objects';
import { quoteLiteral } from '../sql-text';
import { type MigrationTarget, libraryStep } from './runner';
import { contextFunctionV3 } from './schema';

/**
 * Version 5: what listeners say of themselves, for `pgpubsub status`, the metrics and the dashboard.
 *
 * - `listener`: one row per live LISTEN connection, keyed by its backend pid: the host and process
 *   id of the listener, since when it runs, and per channel what it did lately (the highest lag of
 *   the messages it started within the last minute, counts). Rows of ended connections are deleted
 *   by the next report of any listener, and readers take only the rows of live listener
 *   connections (their locks), so a dead process never shows. (Keyed by pid alone: another role's
 *   backend_start is hidden from a role without pg_read_all_stats, and a new connection writes its
 *   row as it connects.) Readable by every role with USAGE on the schema.
 * - `report(host, pid, started_at, channels)`: writes the caller's own row (its backend pid, never
 *   another's), as the owner; NULL channels deletes it. Like every library function, not
 *   executable by PUBLIC: the roles that may claim (EXECUTE on claim()) are granted it here, so
 *   an upgrade needs no new grant for the listeners' roles.
 * - `send(channel, payload, durable, available_at)`: send() for a delayed notification (notify()'s
 *   `delayMs` and `runAt`, a channel's `delayMs`): stored, due no earlier than `available_at`. Granted
 *   to the roles that may run the three-argument send(), so the writers need no new grant.
 * - `context()` also gives the producer's trace context: the W3C `traceparent` in the setting
 *   `pgpubsub.traceparent`, which the library sets from OpenTelemetry's active span before a
 *   model's write or a notify() (when @opentelemetry/api is installed), so that the callback's
 *   span joins the write's trace. Without it set, context() is what it was.
 */
export const LISTENERS_NAME = '00000000000005-pgpubsub-listeners.js';

/** The most a report's channels may take (bytes of jsonb). */
export const REPORT_MAX_BYTES = 65_536;

/** context() of version 5: version 3's, with `traceparent` from its setting when that is set. */
function contextFunctionV5(objects: MigrationTarget['objects']): string {
  const trace = `pg_catalog.current_setting(${quoteLiteral(TRACE_SETTING)}, true)`;
  return contextFunctionV3(objects).replace(/ END\n\$fn\$$/, ` END
    OPERATOR(pg_catalog.||) CASE WHEN coalesce(${trace}, '') = '' THEN '{}'::pg_catalog.jsonb
                                 ELSE pg_catalog.jsonb_build_object('traceparent', ${trace}) END
$fn$`);
}

/** Grants EXECUTE on function `to` to every role (other than the owner and PUBLIC) that may execute `from` (both qualified, with their argument types). */
export function copyGrants(from: string, to: string): string {
  return `DO $do$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT DISTINCT a.grantee::regrole AS grantee
             FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
            WHERE p.oid = ${quoteLiteral(from)}::pg_catalog.regprocedure
              AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', ${quoteLiteral(to)}, r.grantee);
  END LOOP;
END
$do$`;
}

function listenersSql({ objects }: MigrationTarget) {
  const up = [
    contextFunctionV5(objects),
    `CREATE TABLE ${objects.listenerTable} (
  backend_pid integer PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  started_at timestamptz NOT NULL,
  reported_at timestamptz NOT NULL,
  channels jsonb NOT NULL
)`,
    `COMMENT ON TABLE ${objects.listenerTable} IS 'sequelize-pgpubsub: what each live listener connection reports of itself'`,
    `GRANT SELECT ON ${objects.listenerTable} TO PUBLIC`,
    `CREATE FUNCTION ${objects.reportFunction}(host text, pid integer, started_at timestamptz, channels jsonb) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER ${PINNED_SEARCH_PATH} AS $fn$
BEGIN
  -- Rows of connections that ended (every role sees every backend's pid).
  DELETE FROM ${objects.listenerTable} AS l WHERE NOT EXISTS (SELECT FROM pg_stat_activity AS a WHERE a.pid = l.backend_pid);
  IF channels IS NULL THEN
    DELETE FROM ${objects.listenerTable} WHERE backend_pid = pg_backend_pid();
    RETURN;
  END IF;
  IF jsonb_typeof(channels) <> 'object' OR pg_column_size(channels) > ${REPORT_MAX_BYTES} THEN
    RAISE EXCEPTION 'pgpubsub report: channels must be a JSON object of at most ${REPORT_MAX_BYTES} bytes' USING ERRCODE = '22023';
  END IF;
  INSERT INTO ${objects.listenerTable} AS l (backend_pid, host, pid, started_at, reported_at, channels)
  VALUES (pg_backend_pid(), left(host, 255), pid, started_at, clock_timestamp(), channels)
  ON CONFLICT (backend_pid) DO UPDATE
    SET host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
        reported_at = EXCLUDED.reported_at, channels = EXCLUDED.channels;
END
$fn$`,
    `REVOKE ALL ON FUNCTION ${objects.reportFunction}(text, integer, timestamptz, jsonb) FROM PUBLIC`,
    copyGrants(`${objects.claimFunction}(text[], jsonb, integer, integer, integer)`, `${objects.reportFunction}(text, integer, timestamptz, jsonb)`),
    `CREATE FUNCTION ${objects.sendFunction}(channel text, payload jsonb, durable boolean, available_at timestamptz) RETURNS void LANGUAGE plpgsql
  SECURITY DEFINER ${PINNED_SEARCH_PATH} AS $fn$
DECLARE
  message jsonb := jsonb_build_object('op', 'NOTIFY', 'payload', payload, 'context', ${objects.contextFunction}());
  woke boolean;
BEGIN
  IF NOT durable THEN
    RAISE EXCEPTION 'pgpubsub send: a broadcast cannot be delayed (it is a NOTIFY, never stored)' USING ERRCODE = '22023';
  END IF;
  INSERT INTO ${objects.notificationTable} (channel, payload, available_at) VALUES (channel, message, coalesce(available_at, now()));
  -- Woken now: a listener that finds it not yet due sets a timer for it.
  woke := ${objects.wakeFunction}(channel);
END
$fn$`,
    `REVOKE ALL ON FUNCTION ${objects.sendFunction}(text, jsonb, boolean, timestamptz) FROM PUBLIC`,
    copyGrants(`${objects.sendFunction}(text, jsonb, boolean)`, `${objects.sendFunction}(text, jsonb, boolean, timestamptz)`),
    `INSERT INTO ${objects.versionTable} (version, name) VALUES (5, ${quoteLiteral(LISTENERS_NAME)})`,
  ];
  const down = [
    `DELETE FROM ${objects.versionTable} WHERE version = 5`,
    `DROP FUNCTION ${objects.sendFunction}(text, jsonb, boolean, timestamptz)`,
    `DROP FUNCTION ${objects.reportFunction}(text, integer, timestamptz, jsonb)`,
    `DROP TABLE ${objects.listenerTable}`,
    contextFunctionV3(objects),
  ];
  return { up, down };
}

export const listeners = libraryStep(5, LISTENERS_NAME, listenersSql);
export const { name, up, down, withOptions } = listeners;
