import { inspect } from 'node:util';
import type { Model, ModelStatic } from 'sequelize';
import { ChannelDefinitionError } from '../errors';
import { MAX_IDENTIFIER_BYTES } from '../db/sql-text';

/**
 * Table events a model channel can listen to. `truncate`: one notification per TRUNCATE statement
 * (and `destroy({ truncate: true })`). `soft_delete` and `restore`, on a paranoid model: the updates
 * that set or clear its deletedAt, which an `update` channel there does not record.
 */
export type ChannelEvent = 'insert' | 'update' | 'delete' | 'truncate' | 'soft_delete' | 'restore';
export const CHANNEL_EVENTS: readonly ChannelEvent[] = ['insert', 'update', 'delete', 'truncate', 'soft_delete', 'restore'];

/** The operation recorded in a payload's `op`. */
export type ChannelOp = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE' | 'SOFT_DELETE' | 'RESTORE';

/** Which row changes a model channel records, besides its events. */
export interface ChannelCondition {
  /** An update is recorded only when one of these attributes changed (inserts and deletes are not filtered). */
  changed?: readonly string[];
  /**
   * A SQL condition on the rows, with `old` and `new` for the row before and after (NULL columns
   * where there is none), e.g. `new.status = 'paid' AND old.status IS DISTINCT FROM 'paid'`. It runs in
   * the trigger, as the library's owner, with search_path pg_catalog: qualify your own functions.
   * Checked when the trigger is installed, so a mistake fails the migration, never a write.
   */
  sql?: string;
}

/** How a durable notification is retried when a callback fails. */
export interface RetryPolicy {
  /** Attempts before the notification is marked failed and no longer claimed. Default 5. */
  maxAttempts?: number;
  /** Delay before the first retry, doubled on each further attempt (with jitter). Default 1000 ms. */
  backoffMs?: number;
  /** Upper bound of the retry delay. Default 300000 ms (5 minutes). */
  maxBackoffMs?: number;
}

export const DEFAULT_RETRY: Required<RetryPolicy> = { maxAttempts: 5, backoffMs: 1000, maxBackoffMs: 300_000 };

/** One channel declared in a model's `pgpubsub.channels`. */
export interface ModelChannelOptions {
  /** The table events that send on this channel: one or several of insert, update, delete. */
  events: ChannelEvent | readonly ChannelEvent[];
  /**
   * Durable (default): each notification is stored and processed exactly once by one listener,
   * including those sent while no listener ran. `false`: broadcast to every listening process, never stored.
   */
  durable?: boolean;
  retry?: RetryPolicy;
  /** How long a callback may take, in ms, before its work is rolled back and an attempt charged (default: listen()'s timeoutMs, 60000). */
  timeoutMs?: number;
  /** Durable channels: each notification is due this many ms after it is stored (default 0). */
  delayMs?: number;
  /** Only these attributes (and the primary key, always) go into the stored payload and broadcasts. */
  columns?: readonly string[];
  /** These attributes stay out of the stored payload and broadcasts (secrets, large columns). Not with `columns`. */
  exclude?: readonly string[];
  /** Record only the row changes that meet this. */
  when?: ChannelCondition;
  /**
   * `'row'`: notifications of the same row (its primary key, or `orderingKey`) are processed one
   * at a time, in id order, across every process; other rows' still go in parallel. Durable only.
   */
  ordering?: 'row';
  /** The attributes that make an ordering key, instead of the primary key. */
  orderingKey?: readonly string[];
  /**
   * When a notification of an ordered key fails for good: `'continue'` (default) lets the key go
   * on with its next notification; `'block'` holds the key's later notifications until that one
   * is retried (and succeeds) or purged.
   */
  afterFailure?: 'continue' | 'block';
  /**
   * With `ordering: 'row'`: the pending updates of one row fold into one message, the first one's
   * `old` and the last one's `new` (`message.folded`: how many it stands for), processed once.
   */
  coalesce?: boolean;
  /**
   * Broadcast channels only: send each row's columns in the NOTIFY. By default a broadcast sends
   * only the primary key, because any role that can connect may LISTEN and read it.
   */
  fullRows?: boolean;
}

/**
 * The `pgpubsub` key of `Model.init`/`sequelize.define` options.
 *
 * @example
 * Author.init(attributes, {
 *   sequelize,
 *   pgpubsub: { channels: { author_created: { events: ['insert'] } } },
 * });
 */
// M mirrors ModelOptions<M>, which this type extends through module augmentation.
export interface ModelPubSubOptions<M extends Model = Model> {
  channels: Record<string, ModelChannelOptions>;
}

/** A channel resolved from a model definition: everything trigger SQL and listeners need. */
export interface ModelChannel {
  readonly kind: 'model';
  readonly name: string;
  readonly model: ModelStatic<Model>;
  readonly modelName: string;
  /**
   * The schema of the model's table: its own (`schema` option), else the first of Sequelize's
   * `searchPath` (which Sequelize applies under `dialectOptions.prependSearchPath`), else `public`.
   */
  readonly schema: string;
  /** Whether the model names its schema (`schema` option); a model that does not can be used in any schema (Model.schema()). */
  readonly ownSchema: boolean;
  readonly table: string;
  readonly events: readonly ChannelEvent[];
  readonly durable: boolean;
  readonly retry: Required<RetryPolicy>;
  /** The callbacks' time limit; undefined: listen()'s timeoutMs. */
  readonly timeoutMs?: number;
  /** Broadcast only: whether the NOTIFY carries each row's columns (else its primary key). */
  readonly fullRows: boolean;
  /** Each notification is due this many ms after it is stored (0: at once). */
  readonly delayMs: number;
  /** `columns`, as column names with the primary key's; null: every column. */
  readonly payloadColumns: readonly string[] | null;
  /** `exclude`, as column names. */
  readonly excludedColumns: readonly string[];
  /** `when.changed`, as column names; null: every update. */
  readonly changedColumns: readonly string[] | null;
  /** `when.sql`; null: none. */
  readonly condition: string | null;
  /** A paranoid model's deletedAt column (soft deletes and restores are told apart by it); null otherwise. */
  readonly softDeleteColumn: string | null;
  /** `ordering: 'row'`: the key's column names, and whether the key goes on after a failure for good; null: unordered. */
  readonly ordering: { columns: readonly string[]; afterFailure: 'continue' | 'block' } | null;
  /** `coalesce: true`: a row's pending updates fold into one message. */
  readonly coalesce: boolean;
  /** Column names (not attribute names) of the primary key, in key order. */
  readonly primaryKeyColumns: readonly string[];
}

export interface CustomChannelOptions<T> {
  /** Durable (default): stored and processed exactly once. `false`: broadcast, never stored. */
  durable?: boolean;
  retry?: RetryPolicy;
  /** How long a callback may take, in ms (default: listen()'s timeoutMs, 60000). */
  timeoutMs?: number;
  /** Values for optional fields a sender left out. */
  defaults?: Partial<T>;
  /** Durable channels: each notification is due this many ms after it is sent, unless notify() says otherwise (default 0). */
  delayMs?: number;
}

/** A channel for `notify()` from application code, with a typed payload. */
export class CustomChannel<T = unknown> {
  readonly kind = 'custom' as const;
  readonly name: string;
  readonly durable: boolean;
  readonly retry: Required<RetryPolicy>;
  readonly timeoutMs?: number;
  readonly defaults: Partial<T>;
  readonly delayMs: number;

  constructor(name: string, options: CustomChannelOptions<T> = {}) {
    const where = `custom channel '${name}'`;
    const problems = [
      ...channelNameProblems(name, where),
      ...unknownKeyProblems(options, ['durable', 'retry', 'timeoutMs', 'defaults', 'delayMs'], where),
      ...delayProblems(options.delayMs, options.durable, where),
      ...durableProblems(options.durable, where),
      ...retryProblems(options.retry, where),
      ...timeoutProblems(options.timeoutMs, where),
    ];
    if (problems.length > 0) throw new ChannelDefinitionError(problems, problems.join('\n'));
    this.name = name;
    this.durable = options.durable ?? true;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.timeoutMs = options.timeoutMs;
    this.defaults = { ...options.defaults } as Partial<T>;
    this.delayMs = options.delayMs ?? 0;
  }
}

/**
 * Declares a custom channel for `notify()`.
 *
 * @example
 * const PostReads = channel<{ modelId: number; modelType?: string }>('post_reads', {
 *   durable: false,
 *   defaults: { modelType: 'Post' },
 * });
 */
export function channel<T = unknown>(name: string, options?: CustomChannelOptions<T>): CustomChannel<T> {
  return new CustomChannel<T>(name, options);
}

export type AnyChannel = ModelChannel | CustomChannel<any>;

const CHANNEL_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

/** Problems with a channel name; `where` names the channel for the message. */
export function channelNameProblems(name: unknown, where: string): string[] {
  if (typeof name !== 'string' || name.length === 0) {
    return [`${where}: the name must be a non-empty string`];
  }
  const bytes = Buffer.byteLength(name);
  if (bytes > MAX_IDENTIFIER_BYTES) {
    return [`${where}: the name is ${bytes} bytes; PostgreSQL channel names are at most ${MAX_IDENTIFIER_BYTES}. Use a shorter name`];
  }
  if (!CHANNEL_NAME.test(name)) {
    return [`${where}: the name may contain only letters, digits, '_', '.', ':' and '-', and must start with a letter or '_'. Rename it`];
  }
  if (name.toLowerCase().startsWith('pgpubsub')) {
    return [`${where}: names starting with 'pgpubsub' are reserved for the library's own channels. Rename it`];
  }
  return [];
}

export function unknownKeyProblems(options: object, known: readonly string[], where: string): string[] {
  return Object.keys(options)
    .filter((key) => !known.includes(key))
    .map((key) => `${where}: unknown option '${key}' (known: ${known.join(', ')})`);
}

export function durableProblems(durable: unknown, where: string): string[] {
  return durable === undefined || typeof durable === 'boolean'
    ? []
    : [`${where}: 'durable' must be true or false, got ${JSON.stringify(durable)}`];
}

export function retryProblems(retry: unknown, where: string): string[] {
  if (retry === undefined) return [];
  if (typeof retry !== 'object' || retry === null) {
    return [`${where}: 'retry' must be an object like { maxAttempts: 5, backoffMs: 1000, maxBackoffMs: 300000 }`];
  }
  const problems = unknownKeyProblems(retry, Object.keys(DEFAULT_RETRY), `${where}: retry`);
  for (const [key, value] of Object.entries(retry)) {
    if (key in DEFAULT_RETRY && !(Number.isInteger(value) && (value as number) >= (key === 'maxAttempts' ? 1 : 0))) {
      problems.push(`${where}: retry.${key} must be a ${key === 'maxAttempts' ? 'positive' : 'non-negative'} integer, got ${JSON.stringify(value)}`);
    }
  }
  return problems;
}

/** The most a delay may be: what an int4 of milliseconds holds (24.8 days). */
export const MAX_DELAY_MS = 2 ** 31 - 1;

export function delayProblems(delayMs: unknown, durable: unknown, where: string): string[] {
  if (delayMs === undefined) return [];
  if (!(Number.isInteger(delayMs) && (delayMs as number) >= 0 && (delayMs as number) <= MAX_DELAY_MS)) {
    return [`${where}: 'delayMs' must be an integer from 0 to ${MAX_DELAY_MS} (milliseconds), got ${inspect(delayMs)}`];
  }
  return durable === false ? [`${where}: 'delayMs' is for durable channels; a broadcast is a NOTIFY, sent at commit and never stored`] : [];
}

export function timeoutProblems(timeoutMs: unknown, where: string): string[] {
  return timeoutMs === undefined || (Number.isInteger(timeoutMs) && (timeoutMs as number) >= 1)
    ? []
    : [`${where}: 'timeoutMs' must be a positive integer (milliseconds), got ${JSON.stringify(timeoutMs)}`];
}
