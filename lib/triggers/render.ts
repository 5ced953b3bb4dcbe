/** Renders the managed triggers: names, function bodies, install and uninstall statements, comment labels. Pure: no database access. */
import type { ChannelEvent, ChannelOp, ModelChannel } from '../channels/channel';
import { DEFAULT_SCHEMA, type LibraryObjects, PINNED_SEARCH_PATH, libraryObjects, triggerOwnerRole } from '../db/objects';
import { MAX_IDENTIFIER_BYTES, qualified, quoteIdent, quoteLiteral, shortHash } from '../db/sql-text';
import { COMMENT_TAG, TRIGGER_PREFIX } from '../db/protocol';

/** Every managed trigger and its function carry this name prefix and a comment starting with COMMENT_TAG. */
export { COMMENT_TAG, TRIGGER_PREFIX };
/** A NOTIFY payload must be shorter than 8000 bytes. */
export const NOTIFY_PAYLOAD_LIMIT = 7999;

/** What a trigger's comment records, so `ls` can report on a trigger whose channel is gone. */
export interface TriggerLabel {
  hash: string;
  channel: string;
  event: ChannelEvent;
  model: string;
  /** The schema of the library the trigger stores into, when not the default (absent: `pgpubsub`). */
  library?: string;
}

/** One managed trigger (and its function of the same name), rendered and frozen. */
export interface TriggerSpec extends TriggerLabel {
  schema: string;
  table: string;
  /** Name of both the trigger and its function. */
  name: string;
  /** The function's body, as PostgreSQL stores it in pg_proc.prosrc (used to detect hand edits). */
  body: string;
  /** Statements that install or replace the trigger, idempotently. */
  install: string[];
  /** Statements that remove the trigger and its function, idempotently. */
  uninstall: string[];
}

/** The op a channel event records in its payload. */
const OP: Record<ChannelEvent, ChannelOp> = { insert: 'INSERT', update: 'UPDATE', delete: 'DELETE', truncate: 'TRUNCATE', soft_delete: 'SOFT_DELETE', restore: 'RESTORE' };
/** The table event a channel event's trigger fires on. */
const TABLE_EVENT: Record<ChannelEvent, 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE'> = {
  insert: 'INSERT', update: 'UPDATE', delete: 'DELETE', truncate: 'TRUNCATE', soft_delete: 'UPDATE', restore: 'UPDATE',
};
/** The transition tables a row event's trigger reads (old, new). */
const SIDES: Record<Exclude<ChannelEvent, 'truncate'>, { old: boolean; new: boolean }> = {
  insert: { old: false, new: true }, delete: { old: true, new: false }, update: { old: true, new: true }, soft_delete: { old: true, new: true }, restore: { old: true, new: true },
};

/** A deterministic, readable name of at most 63 bytes, unique per (schema, table, channel, event). */
function triggerName(channel: Pick<ModelChannel, 'schema' | 'table' | 'name'>, event: ChannelEvent): string {
  const hash = shortHash(JSON.stringify([channel.schema, channel.table, channel.name, event]), 8);
  const slug = channel.name.toLowerCase().replace(/[^a-z0-9_]+/g, '_');
  const room = MAX_IDENTIFIER_BYTES - TRIGGER_PREFIX.length - event.length - hash.length - 2;
  return `${TRIGGER_PREFIX}${slug.slice(0, room)}_${event}_${hash}`;
}

/** Renders the statement-level trigger and function that record `event` on a model channel. */
export function renderTrigger(channel: ModelChannel, event: ChannelEvent, objects: LibraryObjects = libraryObjects()): TriggerSpec {
  const name = triggerName(channel, event);
  const table = qualified(channel.schema, channel.table);
  const fn = qualified(channel.schema, name);
  const rendered = event === 'truncate' ? truncateBody(channel, objects)
    : channel.durable ? durableBody(channel, event, objects) : broadcastBody(channel, event, objects);
  // A when.sql condition names old and new, which PL/pgSQL also declares (NULL in a statement trigger): the tables win.
  const body = channel.condition && event !== 'truncate' ? `\n#variable_conflict use_column${rendered}` : rendered;
  const sides = event === 'truncate' ? null : SIDES[event];
  const transition = !sides ? '' : `REFERENCING ${[sides.old ? 'OLD TABLE AS pgpubsub_old' : '', sides.new ? 'NEW TABLE AS pgpubsub_new' : ''].filter(Boolean).join(' ')} `;
  // Runs as its owner, so a writer needs no rights on the notification table and cannot forge a
  // notification; that owner is the library's trigger owner role (handOver), which can do nothing
  // but write notifications, so neither can whatever the function runs (a cast from a column's
  // type, a function a condition calls). Its search_path is pinned, so no function or table
  // another role creates is ever picked.
  const createFunction = `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER ${PINNED_SEARCH_PATH} AS ${dollarQuote(body)}`;
  const createTrigger = `CREATE TRIGGER ${quoteIdent(name)} AFTER ${TABLE_EVENT[event]} ON ${table} `
    + `${transition}FOR EACH STATEMENT EXECUTE FUNCTION ${fn}()`;
  const hash = shortHash([createFunction, createTrigger].join(';\n'));
  const label: TriggerLabel = {
    hash, channel: channel.name, event, model: channel.modelName,
    ...(objects.schema === DEFAULT_SCHEMA ? {} : { library: objects.schema }),
  };
  const comment = quoteLiteral(COMMENT_TAG + JSON.stringify(label));
  return {
    ...label,
    schema: channel.schema,
    table: channel.table,
    name,
    body,
    install: [
      // A when.sql condition is checked here, so a mistake fails the migration, never a user's write.
      ...(channel.condition && event !== 'truncate' ? [conditionCheck(channel)] : []),
      createFunction,
      handOver(fn, channel.schema, triggerOwnerRole(objects.schema)),
      `REVOKE ALL ON FUNCTION ${fn}() FROM PUBLIC`,
      `COMMENT ON FUNCTION ${fn}() IS ${comment}`,
      `DROP TRIGGER IF EXISTS ${quoteIdent(name)} ON ${table}`,
      createTrigger,
      `COMMENT ON TRIGGER ${quoteIdent(name)} ON ${table} IS ${comment}`,
    ],
    uninstall: uninstallStatements(channel.schema, channel.table, name),
  };
}

/**
 * Makes `role` own the trigger function. PostgreSQL wants the new owner to be allowed to create in
 * the function's schema: when it is not, it is for this statement only (granted, then revoked).
 */
function handOver(fn: string, schema: string, role: string): string {
  const alter = `ALTER FUNCTION ${fn}() OWNER TO ${quoteIdent(role)}`;
  return `DO $own$ BEGIN
  IF pg_catalog.has_schema_privilege(${quoteLiteral(role)}, ${quoteLiteral(schema)}, 'CREATE') THEN
    ${alter};
  ELSE
    GRANT CREATE ON SCHEMA ${quoteIdent(schema)} TO ${quoteIdent(role)};
    ${alter};
    REVOKE CREATE ON SCHEMA ${quoteIdent(schema)} FROM ${quoteIdent(role)};
  END IF;
END $own$`;
}

/** Removes a managed trigger and its function; safe when either is already gone. */
export function uninstallStatements(schema: string, table: string, name: string): string[] {
  return [
    `DROP TRIGGER IF EXISTS ${quoteIdent(name)} ON ${qualified(schema, table)}`,
    `DROP FUNCTION IF EXISTS ${qualified(schema, name)}()`,
  ];
}

/** The schema of the library a label's trigger stores into. */
export function labelLibrary(label: TriggerLabel): string {
  return label.library ?? DEFAULT_SCHEMA;
}

/** Parses a managed trigger's or function's comment; null when it is not one of ours. */
export function parseLabel(comment: string | null): TriggerLabel | null {
  if (!comment?.startsWith(COMMENT_TAG)) return null;
  try {
    return JSON.parse(comment.slice(COMMENT_TAG.length)) as TriggerLabel;
  } catch {
    return null;
  }
}

/**
 * The rows a statement touched, one per changed row, in statement order, as `old_row`/`new_row` jsonb.
 * Update pairs old and new by position: PostgreSQL appends both transition rows of a row together,
 * so this holds even when the update changes the primary key.
 */
function allRows(event: Exclude<ChannelEvent, 'truncate'>): string {
  const sides = SIDES[event];
  if (!sides.old) return 'SELECT NULL::jsonb AS old_row, to_jsonb(r) AS new_row FROM pgpubsub_new AS r';
  if (!sides.new) return 'SELECT to_jsonb(r) AS old_row, NULL::jsonb AS new_row FROM pgpubsub_old AS r';
  return 'SELECT o.row AS old_row, n.row AS new_row'
    + ' FROM (SELECT row_number() OVER () AS i, to_jsonb(r) AS row FROM pgpubsub_old AS r) AS o'
    + ' JOIN (SELECT row_number() OVER () AS i, to_jsonb(r) AS row FROM pgpubsub_new AS r) AS n USING (i)'
    + ' ORDER BY i';
}

/**
 * The rows of a channel with a `when.sql` condition: the transition rows as `old` and `new` (a
 * row of NULLs on the side an insert or delete lacks), so that the condition reads their columns.
 */
function conditionRows(channel: ModelChannel, event: Exclude<ChannelEvent, 'truncate'>): string {
  const sides = SIDES[event];
  const nulls = `(SELECT (NULL::${qualified(channel.schema, channel.table)}).*)`;
  const numbered = (table: string) => `(SELECT pg_catalog.row_number() OVER () AS pgpubsub_i, r.* FROM ${table} AS r)`;
  const from = sides.old && sides.new ? `${numbered('pgpubsub_old')} AS "old" JOIN ${numbered('pgpubsub_new')} AS "new" USING (pgpubsub_i)`
    : sides.new ? `(SELECT r.* FROM pgpubsub_new AS r) AS "new" CROSS JOIN ${nulls} AS "old"`
      : `(SELECT r.* FROM pgpubsub_old AS r) AS "old" CROSS JOIN ${nulls} AS "new"`;
  const json = (side: 'old' | 'new') => (!sides[side] ? 'NULL::jsonb' : sides.old && sides.new ? `to_jsonb("${side}") - 'pgpubsub_i'` : `to_jsonb("${side}")`);
  return `SELECT ${json('old')} AS old_row, ${json('new')} AS new_row FROM ${from} WHERE (${channel.condition})${sides.old && sides.new ? ' ORDER BY pgpubsub_i' : ''}`;
}

/** The statement run at install that proves a `when.sql` condition valid on the table's columns. */
function conditionCheck(channel: ModelChannel): string {
  const nulls = `(SELECT (NULL::${qualified(channel.schema, channel.table)}).*)`;
  return `SELECT 1 FROM ${nulls} AS "old", ${nulls} AS "new" WHERE (${channel.condition}) LIMIT 0`;
}

/**
 * The rows an event records, one per changed row, in statement order, as `old_row`/`new_row`
 * jsonb, after the channel's filters: `when.sql`, `when.changed`, and on a paranoid model the
 * split of updates into updates, soft deletes and restores. A channel without any renders as
 * it always has (so its trigger, and its hash, stay the same).
 */
function changedRows(channel: ModelChannel, event: Exclude<ChannelEvent, 'truncate'>): string {
  const source = channel.condition ? conditionRows(channel, event) : allRows(event);
  const filters: string[] = [];
  const sides = SIDES[event];
  if (channel.changedColumns && sides.old && sides.new) {
    filters.push(`(${channel.changedColumns.map((column) => `(c.old_row -> ${quoteLiteral(column)}) IS DISTINCT FROM (c.new_row -> ${quoteLiteral(column)})`).join(' OR ')})`);
  }
  if (channel.softDeleteColumn && sides.old && sides.new) {
    const was = `(c.old_row ->> ${quoteLiteral(channel.softDeleteColumn)}) IS NULL`;
    const is = `(c.new_row ->> ${quoteLiteral(channel.softDeleteColumn)}) IS NULL`;
    filters.push(event === 'soft_delete' ? `${was} AND NOT ${is}` : event === 'restore' ? `NOT ${was} AND ${is}` : `(${was}) = (${is})`);
  }
  return filters.length === 0 && !channel.condition ? source : `SELECT c.old_row, c.new_row FROM (${source}) AS c${filters.length ? ` WHERE ${filters.join(' AND ')}` : ''}`;
}

/**
 * An ordered channel's key for a changed row: 'c:' or 'b:' (whether the key goes on after a
 * failure for good), then the key's values as a JSON array, from the row after (or, for a
 * delete, before) the change.
 */
function orderingKey(channel: ModelChannel): string {
  const row = 'coalesce(c.new_row, c.old_row)';
  const values = channel.ordering!.columns.map((column) => `${row} -> ${quoteLiteral(column)}`).join(', ');
  return `${quoteLiteral(channel.ordering!.afterFailure === 'block' ? 'b:' : 'c:')} || jsonb_build_array(${values})::text`;
}

/** A stored or sent row: every column, or only the channel's `columns`, or all but its `exclude`. */
function projected(channel: ModelChannel, row: string): string {
  if (channel.payloadColumns) {
    return `CASE WHEN ${row} IS NULL THEN NULL ELSE jsonb_build_object(${channel.payloadColumns.map((column) => `${quoteLiteral(column)}, ${row} -> ${quoteLiteral(column)}`).join(', ')}) END`;
  }
  if (channel.excludedColumns.length) return `(${row} - ${quoteLiteral(`{${channel.excludedColumns.map((column) => `"${column.replace(/["\\]/g, '\\$&')}"`).join(',')}}`)}::text[])`;
  return row;
}

function payload(channel: ModelChannel, event: ChannelEvent, oldRow: string, newRow: string, context = 'context'): string {
  return `jsonb_build_object('op', ${quoteLiteral(OP[event])}, 'schema', ${quoteLiteral(channel.schema)}, `
    + `'table', ${quoteLiteral(channel.table)}, 'model', ${quoteLiteral(channel.modelName)}, `
    + `'old', ${oldRow}, 'new', ${newRow}, 'context', ${context})`;
}

/** One notification per TRUNCATE statement: op TRUNCATE, no rows. */
function truncateBody(channel: ModelChannel, objects: LibraryObjects): string {
  const message = payload(channel, 'truncate', 'NULL::jsonb', 'NULL::jsonb', channel.durable ? 'context' : 'key_context');
  if (!channel.durable) {
    return `
DECLARE
  context jsonb := ${objects.contextFunction}();
  key_context jsonb := CASE WHEN octet_length(context::text) <= ${Math.floor(NOTIFY_PAYLOAD_LIMIT / 2)} THEN context ELSE '{"truncated": true}'::jsonb END;
BEGIN
  PERFORM pg_notify(${quoteLiteral(channel.name)}, ${message}::text);
  RETURN NULL;
END
`;
  }
  return `
DECLARE
  context jsonb := ${objects.contextFunction}();
  woke boolean;
BEGIN
  INSERT INTO ${objects.notificationTable} (channel, payload, db_version${channel.delayMs ? ', available_at' : ''})
  VALUES (${quoteLiteral(channel.name)}, ${message}, ${objects.dbVersionFunction}()${channel.delayMs ? `, now() + interval '${channel.delayMs} milliseconds'` : ''});
  woke := ${objects.wakeFunction}(${quoteLiteral(channel.name)});
  RETURN NULL;
END
`;
}

/**
 * Stores one notification per row, then wakes the channel's listeners at commit if they need it
 * (nothing stored, nothing to wake). Written for the hot path: each statement here is one
 * executor run, and assignments of function results are cheaper than PERFORM.
 */
function durableBody(channel: ModelChannel, event: Exclude<ChannelEvent, 'truncate'>, objects: LibraryObjects): string {
  return `
DECLARE
  context jsonb := ${objects.contextFunction}();
  stored bigint;
  woke boolean;
BEGIN
  INSERT INTO ${objects.notificationTable} (channel, payload, db_version${channel.delayMs ? ', available_at' : ''}${channel.ordering ? ', ordering_key' : ''})
  SELECT ${quoteLiteral(channel.name)}, ${payload(channel, event, projected(channel, 'c.old_row'), projected(channel, 'c.new_row'))}, version.name${
    channel.delayMs ? `, now() + interval '${channel.delayMs} milliseconds'` : ''}${channel.ordering ? `, ${orderingKey(channel)}` : ''}
    FROM (${changedRows(channel, event)}) AS c
   CROSS JOIN (SELECT ${objects.dbVersionFunction}() AS name) AS version;
  GET DIAGNOSTICS stored = ROW_COUNT;
  IF stored > 0 THEN
    woke := ${objects.wakeFunction}(${quoteLiteral(channel.name)});
  END IF;
  RETURN NULL;
END
`;
}

/**
 * Sends each row in its NOTIFY: its primary key, or with `fullRows` its columns. A full payload
 * over the NOTIFY limit is cut down to the primary key (with "truncated": true); a context too
 * large to leave room for the key becomes `{"truncated": true}`, so the user's write never fails
 * for its size.
 */
function broadcastBody(channel: ModelChannel, event: Exclude<ChannelEvent, 'truncate'>, objects: LibraryObjects): string {
  const keyOnly = (row: string) => `CASE WHEN ${row} IS NULL THEN NULL ELSE jsonb_build_object(${
    channel.primaryKeyColumns.map((column) => `${quoteLiteral(column)}, ${row} -> ${quoteLiteral(column)}`).join(', ')
  }) END`;
  const keyContext = `key_context jsonb := CASE WHEN octet_length(context::text) <= ${Math.floor(NOTIFY_PAYLOAD_LIMIT / 2)} THEN context ELSE '{"truncated": true}'::jsonb END;`;
  if (!channel.fullRows) {
    return `
DECLARE
  context jsonb := ${objects.contextFunction}();
  ${keyContext}
BEGIN
  PERFORM pg_notify(${quoteLiteral(channel.name)}, ${payload(channel, event, keyOnly('c.old_row'), keyOnly('c.new_row'), 'key_context')}::text)
    FROM (${changedRows(channel, event)}) AS c;
  RETURN NULL;
END
`;
  }
  return `
DECLARE
  context jsonb := ${objects.contextFunction}();
  ${keyContext}
BEGIN
  PERFORM pg_notify(${quoteLiteral(channel.name)},
    CASE WHEN octet_length(p.full::text) <= ${NOTIFY_PAYLOAD_LIMIT} THEN p.full::text
         ELSE (${payload(channel, event, keyOnly('p.old_row'), keyOnly('p.new_row'), 'key_context')} || '{"truncated": true}'::jsonb)::text
    END)
    FROM (SELECT c.old_row, c.new_row, ${payload(channel, event, projected(channel, 'c.old_row'), projected(channel, 'c.new_row'))} AS full
            FROM (${changedRows(channel, event)}) AS c) AS p;
  RETURN NULL;
END
`;
}

function dollarQuote(body: string): string {
  let tag = '$pgpubsub$';
  for (let i = 0; body.includes(tag); i++) tag = `$pgpubsub${i}$`;
  return `${tag}${body}${tag}`;
}
