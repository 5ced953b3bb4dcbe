import { Admin } from './ops/admin';
import { traceProducers } from './ops/tracing';
import type { DashboardHandler, DashboardOptions } from './ops/dashboard';
import type { MetricsOptions, PubSubMetrics } from './ops/metrics';
import type { Model, ModelStatic, Sequelize, Transaction } from 'sequelize';
import { type AnyChannel, CustomChannel, type ModelChannel } from './channels/channel';
import { type NotificationContext, type SetContextOptions, setContext, withContext } from './channels/context';
import { DEFAULT_SCHEMA, type LibraryObjects, checkSchemaName, libraryObjects } from './db/objects';
import { ChannelDefinitionError, ChannelUsageError, SetupError } from './errors';
import { Listener, RECOVER_CHANNEL } from './listener/listener';
import type { ListenOptions } from './listener/types';
import type { ModelChannelName, ModelChannelOp } from './channels/names';
import type { CustomBatchCallback, CustomCallback, ModelBatchCallback, ModelCallback } from './channels/message';
import { libraryProblem } from './db/library-check';
import { libraryMigrations } from './db/migrations/index';
import { implicitThroughModels, modelChannels } from './channels/model-channels';
import { type NotifyOptions, notify } from './channels/notify';
import type { SyncResult } from './triggers/reconcile';
import { TriggerManager } from './triggers/manager';

export interface PgPubSubOptions {
  /** Custom channels (from `channel<T>()`) this app sends or listens on. */
  channels?: readonly CustomChannel<any>[];
  /**
   * The schema of the library's tables and functions (default `pgpubsub`). Give the library's
   * migrations the same one (`withOptions({ schema })`, or `libraryMigrations({ schema })` for Umzug).
   * Fixed by the first `use()`.
   */
  schema?: string;
}

/** What install() did: the library migrations it applied (none when up to date), and the trigger sync. */
export interface InstallResult {
  migrations: string[];
  triggers: SyncResult;
}

/** What `sequelize.pgpubsub` holds: channels, notify, context and trigger management for one Sequelize instance. */
export class PgPubSub {
  readonly sequelize: Sequelize;
  readonly triggers: TriggerManager;
  /** The operator's view: status of channels and listeners, failed notifications to retry or purge. */
  readonly admin: Admin;
  /** The schema of the library's objects this app uses (`schema` option, default `pgpubsub`). */
  readonly schema: string;
  /** @internal The library's objects in that schema, qualified for SQL. */
  readonly objects: LibraryObjects;
  readonly #custom = new Map<string, CustomChannel<any>>();
  readonly #callbacks = new Map<string, Function[]>();
  readonly #batchCallbacks = new Map<string, Function[]>();
  #resolved: AnyChannel[] | null = null;

  constructor(sequelize: Sequelize, options: PgPubSubOptions = {}) {
    this.sequelize = sequelize;
    this.schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA, 'use(pgpubsub, { schema })');
    this.objects = libraryObjects(this.schema);
    this.triggers = new TriggerManager(this);
    this.admin = new Admin(sequelize, this.objects, () => this.channels());
    // With @opentelemetry/api: writes made in a span carry its traceparent to their callbacks.
    traceProducers(sequelize);
    this.configure(options);
  }

  /** Applies options again (a second `use()`); adds custom channels, validates everything. */
  configure(options: PgPubSubOptions = {}): void {
    if (options.schema !== undefined && options.schema !== this.schema) {
      throw new SetupError(
        'PGPUBSUB_SCHEMA',
        `use(pgpubsub, { schema: '${options.schema}' }): this Sequelize instance already uses the library in schema '${this.schema}'; `
          + 'the schema is fixed by the first use(). Pass the same schema, or leave it out',
      );
    }
    this.register(...(options.channels ?? []));
  }

  /**
   * Why `who` (e.g. 'triggers check') cannot run on this database's library objects: missing, at
   * an older version, or newer than this code; null when they fit.
   */
  async libraryProblem(who: string): Promise<Error | null> {
    return libraryProblem(this.sequelize, this.schema, who);
  }

  /** Adds custom channels. Registering the same channel object twice is harmless. */
  register(...channels: CustomChannel<any>[]): this {
    for (const channel of channels) {
      if (!(channel instanceof CustomChannel)) {
        throw new ChannelDefinitionError([`register: expected a channel made by channel<T>('name'), got ${JSON.stringify(channel)}`]);
      }
      const known = this.#custom.get(channel.name);
      if (known && known !== channel) {
        throw new ChannelDefinitionError([`custom channel '${channel.name}' is registered twice with different definitions; channel names are global, rename one`]);
      }
      this.#custom.set(channel.name, channel);
    }
    this.invalidate();
    return this;
  }

  /** Forgets resolved definitions; called when a model is defined. */
  invalidate(): void {
    this.#resolved = null;
  }

  /** Every channel (model and custom), validated. Throws ChannelDefinitionError listing every problem. */
  channels(): AnyChannel[] {
    if (this.#resolved) return this.#resolved;
    const problems: string[] = [];
    const all: AnyChannel[] = [];
    const owner = new Map<string, string>();
    const claim = (channel: AnyChannel, who: string) => {
      const previous = owner.get(channel.name);
      if (previous) {
        problems.push(`channel '${channel.name}' is declared twice: on ${previous} and on ${who}; channel names are global, rename one`);
        return;
      }
      owner.set(channel.name, who);
      all.push(channel);
    };
    const models = Object.values(this.sequelize.models);
    const inherited = implicitThroughModels(models);
    for (const model of models.filter((m) => !inherited.has(m))) {
      const result = modelChannels(model);
      problems.push(...result.problems);
      for (const channel of result.channels) claim(channel, `model ${model.name}`);
    }
    for (const channel of this.#custom.values()) claim(channel, 'a custom channel');
    if (problems.length > 0) throw new ChannelDefinitionError(problems);
    this.#resolved = all;
    return all;
  }

  modelChannels(): ModelChannel[] {
    return this.channels().filter((channel): channel is ModelChannel => channel.kind === 'model');
  }

  /** Looks a channel up by name. */
  channel(name: string): AnyChannel {
    const found = this.channels().find((channel) => channel.name === name);
    if (!found) {
      const known = this.channels().map((channel) => channel.name);
      throw new ChannelUsageError(
        'PGPUBSUB_UNKNOWN_CHANNEL',
        `unknown channel '${name}'. Known channels: ${known.length ? known.join(', ') : '(none)'}. `
          + "Declare it on a model (pgpubsub: { channels }) or register channel<T>('name') with use(pgpubsub, { channels })",
      );
    }
    return found;
  }

  /**
   * Sends a payload on a custom channel, as part of `options.transaction` when given.
   *
   * @example
   * await sequelize.pgpubsub.notify(PostReads, { modelId: post.id }, { transaction });
   */
  async notify<T>(channel: CustomChannel<T> | string, payload: T, options: NotifyOptions = {}): Promise<void> {
    const target = typeof channel === 'string' ? this.channel(channel) : channel;
    if (!(target instanceof CustomChannel)) {
      throw new ChannelUsageError(
        'PGPUBSUB_NOTIFY_MODEL_CHANNEL',
        `notify('${target.name}'): this is a channel of model ${target.modelName}; its notifications come from table writes. `
          + "Write the row, or declare a custom channel with channel<T>('name') for notify()",
      );
    }
    await notify(this.objects, this.sequelize, target, payload, options);
  }

  /**
   * Registers a callback. Several callbacks on one channel run in registration order, in the same
   * transaction; pass `transaction` to your model calls so their writes commit with the message.
   *
   * @example
   * sequelize.pgpubsub.on(Author, 'author_created', async ({ new: author }, { transaction }) => {
   *   await Post.create({ authorId: author!.id, content: 'Welcome!' }, { transaction });
   * });
   * sequelize.pgpubsub.on(PostReads, ({ payload }) => count(payload.modelId));
   */
  on<S extends ModelStatic<Model>, N extends ModelChannelName<S>>(model: S, channel: N, callback: ModelCallback<InstanceType<S>, ModelChannelOp<S, N>>): this;
  on<T>(channel: CustomChannel<T>, callback: CustomCallback<T>): this;
  on(target: ModelStatic<Model> | CustomChannel<any>, second: string | Function, third?: Function): this {
    return this.#add('on', this.#callbacks, target, second, third);
  }

  /**
   * Registers a batch callback: it receives the messages of one claim on the channel at once, in
   * id order, in one transaction (one bulkCreate instead of a hundred creates). When it throws,
   * it runs again with each message alone, so that only the messages it fails on are charged an
   * attempt. A channel takes on() callbacks or onBatch() ones, not both; broadcast channels take
   * on() only (their messages come one at a time).
   *
   * @example
   * sequelize.pgpubsub.onBatch(Author, 'author_created', async (messages, { transaction }) => {
   *   await Post.bulkCreate(messages.map(({ new: author }) => ({ authorId: author!.id, content: 'Welcome!' })), { transaction });
   * });
   */
  onBatch<S extends ModelStatic<Model>, N extends ModelChannelName<S>>(model: S, channel: N, callback: ModelBatchCallback<InstanceType<S>, ModelChannelOp<S, N>>): this;
  onBatch<T>(channel: CustomChannel<T>, callback: CustomBatchCallback<T>): this;
  onBatch(target: ModelStatic<Model> | CustomChannel<any>, second: string | Function, third?: Function): this {
    return this.#add('onBatch', this.#batchCallbacks, target, second, third);
  }

  #add(method: 'on' | 'onBatch', into: Map<string, Function[]>, target: ModelStatic<Model> | CustomChannel<any>, second: string | Function, third?: Function): this {
    let name: string;
    let callback: Function | undefined;
    let found: AnyChannel;
    if (target instanceof CustomChannel) {
      this.register(target);
      name = target.name;
      callback = second as Function;
      found = target;
    } else {
      name = String(second);
      callback = third;
      found = this.channel(name);
      if (found.kind !== 'model' || found.model !== target) {
        const owner = found.kind === 'model' ? `model ${found.modelName}` : 'a custom channel';
        throw new ChannelUsageError('PGPUBSUB_CHANNEL_MODEL', `${method}(${target?.name}, '${name}'): channel '${name}' belongs to ${owner}, not to ${target?.name}`);
      }
    }
    if (typeof callback !== 'function') {
      throw new ChannelUsageError('PGPUBSUB_CALLBACK', `${method}('${name}'): the callback must be a function, got ${typeof callback}`);
    }
    if (method === 'onBatch' && !found.durable) {
      throw new ChannelUsageError('PGPUBSUB_CALLBACK', `onBatch('${name}'): a broadcast channel's messages come one at a time; use on() for it, or make the channel durable`);
    }
    const other = method === 'on' ? this.#batchCallbacks : this.#callbacks;
    if ((other.get(name) ?? []).length > 0) {
      throw new ChannelUsageError('PGPUBSUB_CALLBACK', `${method}('${name}'): the channel already has ${method === 'on' ? 'onBatch()' : 'on()'} callbacks; a channel takes one kind. Put the work in one of them`);
    }
    into.set(name, [...(into.get(name) ?? []), callback]);
    return this;
  }

  /** The callbacks registered for a channel, in registration order. */
  callbacks(name: string): readonly Function[] {
    return this.#callbacks.get(name) ?? [];
  }

  /** The batch callbacks registered for a channel, in registration order. */
  batchCallbacks(name: string): readonly Function[] {
    return this.#batchCallbacks.get(name) ?? [];
  }

  /**
   * The dashboard as a plain Node http handler, to mount behind your own auth (or run
   * `pgpubsub dashboard`). close() stops its sampling.
   *
   * @example
   * app.use('/ops/pgpubsub', requireAdmin, sequelize.pgpubsub.dashboard());
   */
  dashboard(options: DashboardOptions = {}): DashboardHandler {
    const { dashboardHandler } = require('./ops/dashboard') as typeof import('./ops/dashboard');
    return dashboardHandler(this, options);
  }

  /**
   * Prometheus metrics for the listeners this app runs itself (prom-client): pass each to
   * `observe(listener)`, serve `text()` (or `handler()`, which adds /healthz and /readyz). What
   * `pgpubsub listen --metrics-port` serves, for one process.
   *
   * @example
   * const metrics = sequelize.pgpubsub.metrics();
   * metrics.observe(await sequelize.pgpubsub.listen());
   * http.createServer(metrics.handler()).listen(9464);
   */
  metrics(options: MetricsOptions = {}): PubSubMetrics {
    // Loaded only when asked for: apps without metrics never load prom-client.
    const { PubSubMetrics: Metrics } = require('./ops/metrics') as typeof import('./ops/metrics');
    return new Metrics(this.sequelize, this.admin, options);
  }

  /**
   * Starts a listener in this process: it claims durable notifications exactly once and runs
   * broadcast ones as they arrive. Resolves once it is listening; `stop()` it to shut down.
   */
  async listen(options: ListenOptions = {}): Promise<Listener> {
    return new Listener(this, options).start();
  }

  /**
   * Installs what the library needs in the database, for apps that create their tables with
   * `sequelize.sync()` instead of migrations: the library's migrations not yet applied (recorded in
   * the library's version table, not in SequelizeMeta), then the managed triggers of every channel. Safe at
   * every boot and from several processes at once; call it after `sync()`, which drops a table's
   * triggers with the table under `force: true`.
   *
   * @example
   * await sequelize.sync();
   * await sequelize.pgpubsub.install();
   */
  async install(): Promise<InstallResult> {
    const applied: string[] = [];
    for (const migration of libraryMigrations({ schema: this.schema })) {
      if (await migration.apply?.({ context: this.sequelize })) applied.push(migration.name);
    }
    return { migrations: applied, triggers: await this.triggers.sync() };
  }

  /** Asks every running listener to drain the stored notifications now. */
  async recover(): Promise<void> {
    await this.sequelize.query(`SELECT pg_catalog.pg_notify('${RECOVER_CHANNEL}', '')`);
  }

  /** Sets the notification context; see SetContextOptions for scopes. */
  async setContext(context: NotificationContext, options?: SetContextOptions): Promise<void> {
    await setContext(this.sequelize, context, options);
  }

  /** Runs `work` in a transaction (or the given one) whose notifications carry `context`. */
  async withContext<R>(context: NotificationContext, work: (transaction: Transaction) => Promise<R>, options?: { transaction?: Transaction }): Promise<R> {
    return withContext(this.sequelize, context, work, options);
  }
}
