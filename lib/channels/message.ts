import { LosslessNumber, isSafeNumber, parse } from 'lossless-json';
import type { Model, ModelStatic, Transaction } from 'sequelize';
import type { AnyChannel, ChannelOp, CustomChannel, ModelChannel } from './channel';
import type { NotificationContext } from './context';
import { MalformedPayloadError } from '../errors';

/** The fields of every model channel message, whatever its op. */
export interface ModelMessageFields {
  channel: string;
  /**
   * The schema of the table written: the model's, or a tenant's (`triggers sync --schemas`). The
   * instances are of `Model.schema(schema)` then, so that saving one writes to that tenant.
   */
  schema: string;
  context: NotificationContext;
  /** The stored notification's id (a bigint as a string); null for broadcast channels. */
  id: string | null;
  /** Set when a broadcast payload was too large for NOTIFY and carries only the primary key. */
  truncated: boolean;
  /** How many stored notifications this message stands for: more than 1 when a coalescing channel folded a row's updates into it. */
  folded: number;
}

/** `old` and `new` as `op` has them: INSERT has no old row, DELETE no new one, TRUNCATE neither. */
export type ModelMessageRows<M, Op extends ChannelOp> = Op extends 'INSERT' ? { op: Op; old: null; new: M }
  : Op extends 'DELETE' ? { op: Op; old: M; new: null }
    : Op extends 'TRUNCATE' ? { op: Op; old: null; new: null }
      : { op: Op; old: M; new: M };

/**
 * What a callback of a model channel receives. `old`/`new` are instances of the model, narrowed
 * by `op` (on `'INSERT'`, `new` is an instance and `old` null). `Op` is the ops the channel sends:
 * every op, or only its events' when the model declares its channels in a static `pgpubsub`.
 */
export type ModelMessage<M extends Model = Model, Op extends ChannelOp = ChannelOp> = ModelMessageFields & ModelMessageRows<M, Op>;

/** What a callback of a custom channel receives. */
export interface CustomMessage<T = unknown> {
  channel: string;
  op: 'NOTIFY';
  payload: T;
  context: NotificationContext;
  id: string | null;
}

/** The second argument of every callback. */
export interface CallbackContext {
  /** The transaction the callback runs in; pass it to your model calls so their writes commit with the message. */
  transaction: Transaction;
  /** 1 on the first attempt, 2 on the first retry, … */
  attempt: number;
  /**
   * Aborted when the channel's `timeoutMs` is up (its reason a CallbackTimeoutError); pass it to
   * fetch() and other calls that take one. The work is rolled back either way.
   */
  signal: AbortSignal;
  /**
   * Runs `hook` once the notification's transaction has committed: after the outer commit, never
   * at a savepoint, and not at all if the message's work rolls back (its callback fails, or the
   * batch is redone). `transaction.afterCommit(hook)` means the same inside a callback. A hook that
   * throws is logged (event `after-commit-failed`); the message stays processed.
   */
  afterCommit(hook: () => unknown): void;
  /**
   * Runs SQL on the message's own transaction (inside its savepoint when it has one), straight on
   * the node-postgres client under it: `$1, $2, …` placeholders with `values`, and node-postgres's
   * result. It skips Sequelize's query pipeline (hooks, logging, result shaping), the fastest way
   * to write a callback's effect; model calls with `{ transaction }` stay the way to use models.
   * Safe with `callbackConcurrency` (queries on the transaction's connection take turns). A query
   * after the callback's time limit, or after its transaction ended (one not awaited before the
   * callback returned), is refused (`CallbackTimeoutError`, `ChannelUsageError` `PGPUBSUB_QUERY_AFTER_END`).
   *
   * @example
   * await query('INSERT INTO audit (author_id, action) VALUES ($1, $2)', [author.id, 'created']);
   */
  query: RawQuery;
}

/** What `context.query()` resolves to: node-postgres's result, as far as a callback needs it. */
export interface QueryResult<R extends object = Record<string, unknown>> {
  /** The rows, as node-postgres parses them (Sequelize's type parsers are not applied). */
  rows: R[];
  /** Rows the statement returned, inserted, updated or deleted (null for a statement that has no count). */
  rowCount: number | null;
  /** The statement's command tag: 'INSERT', 'SELECT', … */
  command: string;
}

/** `context.query(text, values)`: SQL on the message's transaction, without Sequelize's query pipeline. */
export type RawQuery = <R extends object = Record<string, unknown>>(text: string, values?: readonly unknown[]) => Promise<QueryResult<R>>;

export type ModelCallback<M extends Model = Model, Op extends ChannelOp = ChannelOp> = (message: ModelMessage<M, Op>, context: CallbackContext) => unknown;
export type CustomCallback<T = unknown> = (message: CustomMessage<T>, context: CallbackContext) => unknown;

/** The second argument of a batch callback (onBatch): a callback's context, with each message's attempt. */
export interface BatchContext extends Omit<CallbackContext, 'attempt'> {
  /** Each message's attempt (1 on the first), in the order of the messages. */
  attempts: readonly number[];
}

export type ModelBatchCallback<M extends Model = Model, Op extends ChannelOp = ChannelOp> = (messages: ModelMessage<M, Op>[], context: BatchContext) => unknown;
export type CustomBatchCallback<T = unknown> = (messages: CustomMessage<T>[], context: BatchContext) => unknown;

/**
 * Parses stored or sent payload text without losing numeric precision (numbers stay LosslessNumber
 * until a type says what they are). A payload that is a JSON string holding the JSON is unwrapped:
 * that is how rows stored by the Python library django-pgpubsub look (its payload column held the
 * JSON text encoded as a JSON string), so a table carried over from it keeps working.
 *
 * Not Node 22's JSON.parse reviver with `context.source`, which could do without lossless-json:
 * on Node 22.23 it took 9.0 µs for a row with a long key and a DECIMAL where lossless-json takes
 * 5.5 µs (the reviver runs for every value), and Node 20 has no `context.source`.
 */
function parsePayload(text: string): unknown {
  let value = parse(text);
  if (typeof value === 'string') value = parse(value);
  return value;
}

/**
 * Number literals JSON.parse could round: 16 or more digits in a row (every number of at most 15
 * significant digits survives a double exactly) or an exponent. Matches inside strings too, which
 * only sends that payload down the slower exact path.
 */
const MAYBE_INEXACT = /\d{16}|\d[eE]/;

/**
 * parsePayload's result for payloads whose numbers all survive JSON.parse, which is several times
 * faster than the exact parser: the listener decodes every message. `exactText` says the numbers'
 * own digits are needed (DECIMAL columns: '12.50' must not come back as '12.5'), which always
 * takes the exact path.
 */
function parseFast(text: string, exactText: boolean): unknown {
  if (exactText || MAYBE_INEXACT.test(text)) return parsePayload(text);
  // A string-wrapped payload (django-pgpubsub's rows, see parsePayload): its inner text is part of `text`, so the test above covered it too.
  const value: unknown = JSON.parse(text);
  return typeof value === 'string' ? JSON.parse(value) : value;
}

/** ISO instants exactly as Date#toJSON writes them come back as Dates. */
const DATE_JSON = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Plain JS values: safe numbers as numbers, unsafe ones (big integers, long decimals) as their exact digits. */
function plain(value: unknown, reviveDates: boolean): unknown {
  if (value instanceof LosslessNumber) return isSafeNumber(value.value) ? Number(value.value) : value.value;
  if (Array.isArray(value)) return value.map((item) => plain(item, reviveDates));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, plain(item, reviveDates)]));
  }
  if (reviveDates && typeof value === 'string' && DATE_JSON.test(value)) return new Date(value);
  return value;
}

const EXACT_TYPES = new Set(['BIGINT', 'DECIMAL', 'NUMERIC']);
/** Types whose values Sequelize hands out as the database's own digits, which a double cannot keep. */
const DIGIT_TYPES = new Set(['DECIMAL', 'NUMERIC']);
const TIME_TYPES = new Set(['DATE']);

/** A column value converted to what Sequelize itself would hand out for the attribute's type. */
function attributeValue(typeKey: string | undefined, value: unknown): unknown {
  if (value === null || value === undefined) return value;
  if (value instanceof LosslessNumber) {
    // Sequelize returns BIGINT and DECIMAL from PostgreSQL as strings, so precision is never lost.
    return EXACT_TYPES.has(typeKey ?? '') ? value.value : plain(value, false);
  }
  // A number from the fast parse has at most 15 digits, so its text is exact (DECIMAL never comes this way).
  if (typeof value === 'number') return EXACT_TYPES.has(typeKey ?? '') ? String(value) : value;
  if (TIME_TYPES.has(typeKey ?? '') && typeof value === 'string') return new Date(value);
  return plain(value, false);
}

interface AttributeColumn { name: string; column: string; typeKey: string | undefined }

/** Each model's attributes as (attribute, column, type), cached by the attributes object (Sequelize replaces it when they change). */
const columnsCache = new WeakMap<object, { columns: AttributeColumn[]; digits: boolean }>();

function attributeColumns(model: ModelStatic<Model>): { columns: AttributeColumn[]; digits: boolean } {
  const attributes = model.getAttributes() as Record<string, { field?: string; type?: { key?: string } }>;
  let entry = columnsCache.get(attributes);
  if (!entry) {
    const columns = Object.entries(attributes).map(([name, attribute]) => ({ name, column: attribute.field ?? name, typeKey: attribute.type?.key }));
    entry = { columns, digits: columns.some((c) => DIGIT_TYPES.has(c.typeKey ?? '')) };
    columnsCache.set(attributes, entry);
  }
  return entry;
}

/** Builds a model instance from a row keyed by column; columns the model no longer has are ignored. */
function rowToInstance<M extends Model>(model: ModelStatic<M>, row: Record<string, unknown>): M {
  const values: Record<string, unknown> = {};
  for (const { name, column, typeKey } of attributeColumns(model).columns) {
    if (Object.prototype.hasOwnProperty.call(row, column)) values[name] = attributeValue(typeKey, row[column]);
  }
  return model.build(values as M['_creationAttributes'], { isNewRecord: false, raw: true });
}

const OPS = new Set(['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'SOFT_DELETE', 'RESTORE']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const tenantModels = new WeakMap<ModelStatic<Model>, Map<string, ModelStatic<Model>>>();

/** `model.schema(schema)`, made once per model and schema (Sequelize makes a new class each call). */
function inSchema(model: ModelStatic<Model>, schema: string): ModelStatic<Model> {
  let bySchema = tenantModels.get(model);
  if (!bySchema) tenantModels.set(model, bySchema = new Map());
  let found = bySchema.get(schema);
  if (!found) bySchema.set(schema, found = model.schema(schema));
  return found;
}

/** Turns a parsed trigger payload into a model message, checking its shape first. */
function modelMessage(channel: ModelChannel, payload: unknown, id: string | null): ModelMessage {
  const bad = (problem: string) => new MalformedPayloadError(channel.name, problem);
  if (!isRecord(payload)) throw bad(`expected a JSON object, got ${JSON.stringify(payload)?.slice(0, 200)}`);
  // A channel's identity is its name: rows stored under a model's old name (renamed in code) are its own.
  const { op, old: oldRow, new: newRow, context } = payload;
  const schema = typeof payload.schema === 'string' ? payload.schema : channel.schema;
  const model = schema === channel.schema ? channel.model : inSchema(channel.model, schema);
  if (typeof op !== 'string' || !OPS.has(op)) throw bad(`'op' must be INSERT, UPDATE, DELETE, TRUNCATE, SOFT_DELETE or RESTORE, got ${JSON.stringify(op)}`);
  // TRUNCATE names no row; INSERT has no old, DELETE no new.
  const needsOld = op !== 'INSERT' && op !== 'TRUNCATE';
  const needsNew = op !== 'DELETE' && op !== 'TRUNCATE';
  if (needsOld ? !isRecord(oldRow) : oldRow !== null && oldRow !== undefined) throw bad(`'old' must be ${needsOld ? 'a row' : 'null'} for ${op}`);
  if (needsNew ? !isRecord(newRow) : newRow !== null && newRow !== undefined) throw bad(`'new' must be ${needsNew ? 'a row' : 'null'} for ${op}`);
  // The checks above make old and new what the op says (ModelMessageRows).
  return {
    channel: channel.name,
    op: op as ChannelOp,
    schema,
    old: isRecord(oldRow) ? rowToInstance(model, oldRow) : null,
    new: isRecord(newRow) ? rowToInstance(model, newRow) : null,
    context: isRecord(context) ? (plain(context, false) as NotificationContext) : {},
    id,
    truncated: payload.truncated === true,
    // A number, or lossless-json's LosslessNumber (Number() takes either).
    folded: Number.isInteger(Number(payload.folded)) && Number(payload.folded) > 1 ? Number(payload.folded) : 1,
  } as ModelMessage;
}

/** Turns a parsed custom payload into a message, filling in the channel's defaults. */
function customMessage<T>(channel: CustomChannel<T>, payload: unknown, id: string | null): CustomMessage<T> {
  if (!isRecord(payload) || payload.op !== 'NOTIFY' || !isRecord(payload.payload)) {
    throw new MalformedPayloadError(channel.name, `expected { op: 'NOTIFY', payload: {…}, context }, got ${JSON.stringify(plain(payload, false))?.slice(0, 200)}`);
  }
  return {
    channel: channel.name,
    op: 'NOTIFY',
    payload: { ...channel.defaults, ...(plain(payload.payload, true) as object) } as T,
    context: isRecord(payload.context) ? (plain(payload.context, false) as NotificationContext) : {},
    id,
  };
}

/**
 * Stored or sent payload text to the message a callback receives. Throws MalformedPayloadError
 * for text that is not a message of this channel.
 */
export function decodeMessage(channel: AnyChannel, text: string, id: string | null): ModelMessage | CustomMessage {
  let parsed: unknown;
  try {
    parsed = parseFast(text, channel.kind === 'model' && attributeColumns(channel.model).digits);
  } catch (error) {
    throw new MalformedPayloadError(channel.name, `expected a JSON object, got text that is not JSON (${(error as Error).message}): ${text.slice(0, 200)}`);
  }
  try {
    if (channel.kind === 'model') return modelMessage(channel, parsed, id);
    return customMessage(channel, parsed, id);
  } catch (error) {
    // Nested past the stack (JSON.parse takes it, a recursive walk does not): it never will decode.
    if (error instanceof RangeError) throw new MalformedPayloadError(channel.name, `expected a message, got one nested too deep to decode (${error.message})`);
    throw error;
  }
}
