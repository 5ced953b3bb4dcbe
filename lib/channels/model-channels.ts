import type { Model, ModelStatic } from 'sequelize';
import {
  CHANNEL_EVENTS,
  type ChannelCondition,
  type ChannelEvent,
  DEFAULT_RETRY,
  type ModelChannel,
  type ModelChannelOptions,
  channelNameProblems,
  delayProblems,
  durableProblems,
  retryProblems,
  timeoutProblems,
  unknownKeyProblems,
} from './channel';

export interface ModelChannelsResult {
  channels: ModelChannel[];
  problems: string[];
}

/**
 * The schema Sequelize's unqualified queries go to: the first of its `searchPath` when it applies
 * it (`dialectOptions.prependSearchPath`; otherwise Sequelize ignores the option), else `public`.
 * `"$user"` is skipped: it names no schema the definitions can know.
 */
function defaultSchema(model: ModelStatic<Model>): string {
  const options = (model.sequelize as unknown as { options?: { searchPath?: unknown; dialectOptions?: { prependSearchPath?: unknown } } } | undefined)?.options;
  if (!options?.dialectOptions?.prependSearchPath || typeof options.searchPath !== 'string') return 'public';
  const first = options.searchPath.split(',').map((entry) => entry.trim())
    .map((entry) => (/^".*"$/.test(entry) ? entry.slice(1, -1).replace(/""/g, '"') : entry.toLowerCase()))
    .find((entry) => entry !== '' && entry !== '$user' && entry.toUpperCase() !== 'DEFAULT');
  return first ?? 'public';
}

/** Where a model's rows live: its schema (its own, else Sequelize's default) and table name. */
function modelTable(model: ModelStatic<Model>): { schema: string; ownSchema: boolean; table: string } {
  const name = model.getTableName() as string | { tableName: string; schema?: string };
  const own = typeof name === 'string' ? model.options.schema : name.schema;
  const table = typeof name === 'string' ? name : name.tableName;
  return own ? { schema: own, ownSchema: true, table } : { schema: defaultSchema(model), ownSchema: false, table };
}

/**
 * Through models that `belongsToMany` created from a string name. Sequelize copies the source
 * model's options into them, `pgpubsub` included; those copies declare nothing of their own.
 */
export function implicitThroughModels(models: readonly ModelStatic<Model>[]): Set<ModelStatic<Model>> {
  const inherited = new Set<ModelStatic<Model>>();
  for (const model of models) {
    for (const association of Object.values(model.associations)) {
      const through = (association as { through?: { model?: ModelStatic<Model> } }).through?.model;
      const declared = (model.options as { pgpubsub?: unknown }).pgpubsub;
      if (through && declared !== undefined && (through.options as { pgpubsub?: unknown }).pgpubsub === declared) {
        inherited.add(through);
      }
    }
  }
  return inherited;
}

/** Reads and validates the channels a model declares in its `pgpubsub` option. */
export function modelChannels(model: ModelStatic<Model>): ModelChannelsResult {
  const declared = (model.options as { pgpubsub?: unknown }).pgpubsub;
  if (declared === undefined) return { channels: [], problems: [] };

  const where = `model ${model.name}`;
  if (typeof declared !== 'object' || declared === null || typeof (declared as { channels?: unknown }).channels !== 'object') {
    return {
      channels: [],
      problems: [`${where}: option 'pgpubsub' must look like { channels: { author_created: { events: ['insert'] } } }`],
    };
  }
  const problems = unknownKeyProblems(declared, ['channels'], `${where}: option 'pgpubsub'`);
  const { schema, ownSchema, table } = modelTable(model);
  const primaryKeyColumns = model.primaryKeyAttributes.map((attribute) => model.getAttributes()[attribute]?.field ?? attribute);
  const channels: ModelChannel[] = [];

  for (const [name, raw] of Object.entries((declared as { channels: Record<string, unknown> }).channels ?? {})) {
    const at = `channel '${name}' on model ${model.name}`;
    if (typeof raw !== 'object' || raw === null) {
      problems.push(`${at}: expected an object like { events: ['insert'] }, got ${JSON.stringify(raw)}`);
      continue;
    }
    const options = raw as Partial<ModelChannelOptions>;
    const events = eventList(options.events);
    const found = [
      ...channelNameProblems(name, at),
      ...unknownKeyProblems(options, ['events', 'durable', 'retry', 'timeoutMs', 'fullRows', 'delayMs', 'columns', 'exclude', 'when', 'ordering', 'orderingKey', 'afterFailure', 'coalesce'], at),
      ...delayProblems(options.delayMs, options.durable, at),
      ...eventProblems(options.events, events, at),
      ...durableProblems(options.durable, at),
      ...retryProblems(options.retry, at),
      ...timeoutProblems(options.timeoutMs, at),
      ...fullRowsProblems(options.fullRows, options.durable, at),
    ];
    const shape = payloadShape(model, options, events, primaryKeyColumns, at);
    found.push(...shape.problems);
    if (primaryKeyColumns.length === 0) {
      found.push(`${at}: the model has no primary key; give an attribute primaryKey: true (notifications identify rows by it)`);
    }
    problems.push(...found);
    if (found.length > 0) continue;
    channels.push({
      kind: 'model',
      name,
      model,
      modelName: model.name,
      schema,
      ownSchema,
      table,
      events: CHANNEL_EVENTS.filter((event) => events.includes(event)),
      durable: options.durable ?? true,
      retry: { ...DEFAULT_RETRY, ...options.retry },
      timeoutMs: options.timeoutMs,
      fullRows: options.fullRows ?? false,
      delayMs: options.delayMs ?? 0,
      payloadColumns: shape.payloadColumns,
      excludedColumns: shape.excludedColumns,
      changedColumns: shape.changedColumns,
      condition: shape.condition,
      softDeleteColumn: shape.softDeleteColumn,
      ordering: shape.ordering,
      coalesce: options.coalesce === true,
      primaryKeyColumns,
    });
  }
  return { channels, problems };
}

interface PayloadShape {
  payloadColumns: string[] | null;
  excludedColumns: string[];
  changedColumns: string[] | null;
  condition: string | null;
  softDeleteColumn: string | null;
  ordering: ModelChannel['ordering'];
  problems: string[];
}

/** `columns`, `exclude`, `when` and the paranoid events, checked against the model's attributes and turned into column names. */
function payloadShape(model: ModelStatic<Model>, options: Partial<ModelChannelOptions>, events: unknown[], primaryKeyColumns: readonly string[], at: string): PayloadShape {
  const problems: string[] = [];
  const attributes = model.getAttributes() as Record<string, { field?: string }>;
  const names = Object.keys(attributes);
  const columnsOf = (option: string, value: unknown): string[] | null => {
    if (value === undefined) return null;
    if (!Array.isArray(value) || value.length === 0 || !value.every((item) => typeof item === 'string')) {
      problems.push(`${at}: '${option}' must be a non-empty list of attribute names, got ${JSON.stringify(value)}`);
      return null;
    }
    const unknown = value.filter((name) => !names.includes(name));
    if (unknown.length) problems.push(`${at}: '${option}' names ${unknown.map((name) => `'${name}'`).join(', ')}, not attributes of ${model.name} (attributes: ${names.join(', ')})`);
    return value.filter((name) => names.includes(name)).map((name) => attributes[name].field ?? name);
  };
  const columns = columnsOf('columns', options.columns);
  const excluded = columnsOf('exclude', options.exclude) ?? [];
  if (options.columns !== undefined && options.exclude !== undefined) problems.push(`${at}: give 'columns' or 'exclude', not both`);
  const keyExcluded = excluded.filter((column) => primaryKeyColumns.includes(column));
  if (keyExcluded.length) problems.push(`${at}: 'exclude' cannot leave out the primary key (${keyExcluded.join(', ')}): notifications identify rows by it`);

  let changed: string[] | null = null;
  let condition: string | null = null;
  const when = options.when as unknown;
  if (when !== undefined) {
    if (typeof when !== 'object' || when === null || Array.isArray(when)) {
      problems.push(`${at}: 'when' must look like { changed: ['status'] } or { sql: "new.status = 'paid'" }`);
    } else {
      problems.push(...unknownKeyProblems(when, ['changed', 'sql'], `${at}: when`));
      changed = columnsOf('when.changed', (when as ChannelCondition).changed);
      const sql = (when as ChannelCondition).sql;
      if (sql !== undefined) {
        if (typeof sql !== 'string' || sql.trim() === '') problems.push(`${at}: 'when.sql' must be a SQL condition on old and new, e.g. "new.status = 'paid'"`);
        else if (/;|\$[A-Za-z_]*\$/.test(sql)) problems.push(`${at}: 'when.sql' must be one condition: no ';' and no dollar quotes`);
        else if (outsideParentheses(sql)) problems.push(`${at}: 'when.sql' must be one condition: ${outsideParentheses(sql)}, got ${JSON.stringify(sql)}`);
        else condition = sql.trim();
      }
      if (changed && !events.some((event) => event === 'update' || event === 'soft_delete' || event === 'restore')) {
        problems.push(`${at}: 'when.changed' filters updates, and this channel records none (add 'update' to its events)`);
      }
    }
  }

  const paranoid = Boolean(model.options.paranoid) && model.options.timestamps !== false;
  const deletedAt = paranoid ? (model as unknown as { _timestampAttributes?: { deletedAt?: string } })._timestampAttributes?.deletedAt : undefined;
  const softDeleteColumn = deletedAt ? attributes[deletedAt]?.field ?? deletedAt : null;
  const paranoidEvents = events.filter((event) => event === 'soft_delete' || event === 'restore');
  if (paranoidEvents.length && !softDeleteColumn) {
    problems.push(`${at}: ${paranoidEvents.map((event) => `'${event}'`).join(' and ')} need a paranoid model (paranoid: true, with timestamps); ${model.name} deletes its rows for real: use 'delete'`);
  }
  let ordering: ModelChannel['ordering'] = null;
  if (options.ordering !== undefined && options.ordering !== 'row') problems.push(`${at}: 'ordering' must be 'row', got ${JSON.stringify(options.ordering)}`);
  if (options.afterFailure !== undefined && options.afterFailure !== 'continue' && options.afterFailure !== 'block') {
    problems.push(`${at}: 'afterFailure' must be 'continue' or 'block', got ${JSON.stringify(options.afterFailure)}`);
  }
  if (options.ordering === undefined && (options.orderingKey !== undefined || options.afterFailure !== undefined)) {
    problems.push(`${at}: 'orderingKey' and 'afterFailure' go with ordering: 'row'`);
  }
  if (options.coalesce !== undefined && typeof options.coalesce !== 'boolean') problems.push(`${at}: 'coalesce' must be true or false, got ${JSON.stringify(options.coalesce)}`);
  if (options.coalesce === true && options.ordering !== 'row') problems.push(`${at}: 'coalesce' folds a row's pending updates, which needs ordering: 'row'`);
  if (options.ordering === 'row') {
    if (options.durable === false) problems.push(`${at}: ordering: 'row' is for durable channels; a broadcast is sent to every listener at once`);
    const keyColumns = columnsOf('orderingKey', options.orderingKey) ?? primaryKeyColumns;
    ordering = { columns: keyColumns, afterFailure: options.afterFailure ?? 'continue' };
  }
  return { payloadColumns: columns && [...new Set([...primaryKeyColumns, ...columns])], excludedColumns: excluded, changedColumns: changed, condition, softDeleteColumn, ordering, problems };
}

function fullRowsProblems(fullRows: unknown, durable: unknown, where: string): string[] {
  if (fullRows === undefined) return [];
  if (typeof fullRows !== 'boolean') return [`${where}: 'fullRows' must be true or false, got ${JSON.stringify(fullRows)}`];
  return durable === false ? [] : [`${where}: 'fullRows' is for broadcast channels (durable: false); a durable channel stores each whole row, readable only by the listener's role`];
}

function eventList(events: unknown): unknown[] {
  if (events === undefined) return [];
  return Array.isArray(events) ? events : [events];
}

function eventProblems(raw: unknown, events: unknown[], where: string): string[] {
  if (raw === undefined || events.length === 0) {
    return [`${where}: 'events' is required; list one or more of ${CHANNEL_EVENTS.join(', ')}`];
  }
  return events
    .filter((event) => !CHANNEL_EVENTS.includes(event as ChannelEvent))
    .map((event) => `${where}: event ${JSON.stringify(event)} is not supported (${CHANNEL_EVENTS.join(', ')})`);
}

/**
 * Why a `when.sql` condition would not stay inside the parentheses the trigger puts around it
 * (`false) OR (true` is two, and a comment could hide the closing one), or null. Quoted text and
 * identifiers are skipped.
 */
function outsideParentheses(sql: string): string | null {
  let depth = 0;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i];
    if (c === "'" || c === '"') {
      const end = sql.indexOf(c, i + 1);
      if (end < 0) return `an unterminated ${c === "'" ? 'string' : 'quoted identifier'}`;
      i = end; // a doubled quote ('' or "") closes and reopens: the scan goes on inside
    } else if ((c === '-' && sql[i + 1] === '-') || (c === '/' && sql[i + 1] === '*')) {
      return 'no comments';
    } else if (c === '(') {
      depth++;
    } else if (c === ')' && --depth < 0) {
      return "a ')' that closes more than it opened";
    }
  }
  return depth === 0 ? null : "a '(' left open";
}
