import type { Model, ModelStatic } from 'sequelize';
import {
  CHANNEL_EVENTS,
  type ChannelEvent,
  DEFAULT_RETRY,
  type ModelChannel,
  type ModelChannelOptions,
  channelNameProblems,
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
      ...unknownKeyProblems(options, ['events', 'durable', 'retry', 'timeoutMs', 'fullRows'], at),
      ...eventProblems(options.events, events, at),
      ...durableProblems(options.durable, at),
      ...retryProblems(options.retry, at),
      ...timeoutProblems(options.timeoutMs, at),
      ...fullRowsProblems(options.fullRows, options.durable, at),
    ];
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
      primaryKeyColumns,
    });
  }
  return { channels, problems };
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
