/**
 * Trigger management for one app: the triggers its model channels call for, compared with those
 * installed, synced, pruned, or made an Umzug step. `sequelize.pgpubsub.triggers` is one.
 */
import type { Sequelize } from 'sequelize';
import type { ModelChannel } from '../channels/channel';
import type { LibraryObjects } from '../db/objects';
import type { LibraryMigration } from '../db/migrations/runner';
import type { TriggerSpec } from './render';
import { type SyncResult, type TriggerState, desiredTriggers, syncTriggers, triggerStates } from './reconcile';
import { triggerStep } from './step';
import { type TriggerRisk, triggerRisks } from './risks';

/** What trigger management reads: `sequelize.pgpubsub` (PgPubSub) is one. */
export interface TriggerHost {
  readonly sequelize: Sequelize;
  /** The library's objects (its schema) the app uses. */
  readonly objects: LibraryObjects;
  /** Every model channel, validated. */
  modelChannels(): ModelChannel[];
  /** Why `who` cannot work on the library's objects (missing, another version), or null. */
  libraryProblem(who: string): Promise<Error | null>;
}

/**
 * Which schemas trigger management looks at. Without `schemas`, every schema: each model channel
 * in its model's schema, and a managed trigger anywhere that no channel asks for is pruned.
 */
export interface TriggerScope {
  /**
   * Schema-per-tenant apps (`Model.schema('tenant')`): the channels of every model without a schema
   * of its own are rendered in each of these schemas (a model with its own schema only when that
   * schema is listed), and nothing outside them is compared, installed or pruned. So syncing a new
   * tenant's schema leaves the others alone.
   */
  schemas?: readonly string[];
}

/** Trigger management: the engine behind `pgpubsub triggers …`, generated migrations and the Umzug step. */
export class TriggerManager {
  readonly #pubsub: TriggerHost;

  constructor(pubsub: TriggerHost) {
    this.#pubsub = pubsub;
  }

  /** The triggers the current channel definitions call for, rendered (in `scope.schemas` when given). */
  desired(scope: TriggerScope = {}): TriggerSpec[] {
    return desiredTriggers(this.#inScope(scope), this.#pubsub.objects);
  }

  /**
   * What the channels' triggers would run with the library owner's rights that another role owns:
   * a column's type or a cast from it, a function a `when.sql` condition calls (see TriggerRisk).
   */
  async risks(scope: TriggerScope = {}): Promise<TriggerRisk[]> {
    return triggerRisks(this.#pubsub.sequelize, this.#pubsub.objects, this.#inScope(scope));
  }

  /** The model channels, each in its schema (in each of `scope.schemas` for those without one of their own). */
  #inScope(scope: TriggerScope): ModelChannel[] {
    const channels = this.#pubsub.modelChannels();
    if (!scope.schemas) return channels;
    const schemas = [...new Set(scope.schemas)];
    return channels.flatMap((channel) => (channel.ownSchema
      ? (schemas.includes(channel.schema) ? [channel] : [])
      : schemas.map((schema) => ({ ...channel, schema }))));
  }

  /** Each desired or installed managed trigger with its status: INSTALLED, OUTDATED, UNINSTALLED or PRUNE. */
  async ls(scope: TriggerScope = {}): Promise<TriggerState[]> {
    return triggerStates(this.#pubsub.sequelize, this.desired(scope), this.#pubsub.objects, { schemas: scope.schemas });
  }

  /** `ok` is false when any trigger is not INSTALLED, i.e. the database has drifted from the definitions. */
  async check(scope: TriggerScope = {}): Promise<{ ok: boolean; drift: TriggerState[] }> {
    const drift = (await this.ls(scope)).filter((state) => state.status !== 'INSTALLED');
    return { ok: drift.length === 0, drift };
  }

  /**
   * Installs missing triggers, replaces outdated ones and drops orphans, atomically. Refuses (a
   * LibraryVersionError naming the migrations to run) on a database without the library's objects
   * at this version, where every write to a table with an installed trigger would fail.
   */
  async sync(options: { prune?: boolean } & TriggerScope = {}): Promise<SyncResult> {
    const desired = this.desired(options);
    const problem = await this.#pubsub.libraryProblem('triggers sync');
    if (problem) throw problem;
    return syncTriggers(this.#pubsub.sequelize, desired, this.#pubsub.objects, options);
  }

  /** Drops managed triggers (and their functions) that no channel asks for; installs nothing. */
  async prune(scope: TriggerScope = {}): Promise<SyncResult> {
    return syncTriggers(this.#pubsub.sequelize, this.desired(scope), this.#pubsub.objects, { ...scope, install: false });
  }

  /**
   * An Umzug v3 step that syncs the triggers. Its name carries a hash of the rendered triggers, so
   * Umzug runs it again whenever a definition changes. `down` removes every managed trigger.
   *
   * @example
   * new Umzug({ migrations: [...pgpubsubMigrations, ...appMigrations, sequelize.pgpubsub.triggers.migration()], … })
   */
  migration(): LibraryMigration {
    return triggerStep(this.#pubsub.sequelize, this.desired(), this.#pubsub.objects);
  }
}
