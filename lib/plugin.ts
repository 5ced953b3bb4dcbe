import { Sequelize } from 'sequelize';
import { type ModelPubSubOptions, unknownKeyProblems } from './channels/channel';
import { SetupError } from './errors';
import { INSTALLED } from './installed';
import { PgPubSub, type PgPubSubOptions } from './pubsub';

/** The options `use(pgpubsub, options)` knows (PgPubSubOptions). */
const PLUGIN_OPTIONS: readonly (keyof PgPubSubOptions)[] = ['channels', 'schema'];

/** Anything `sequelize.use()` accepts: an object with `install(sequelize, options)`. */
export interface SequelizePlugin<O = unknown, R = unknown> {
  install(sequelize: Sequelize, options?: O): R;
}

declare module 'sequelize/types/sequelize' {
  interface Sequelize {
    /** Installs a plugin, e.g. `sequelize.use(pgpubsub, options)`. Returns the Sequelize instance. */
    use<O>(plugin: SequelizePlugin<O>, options?: O): this;
    /** Channels, notify, context and triggers; present after `sequelize.use(pgpubsub)`. */
    readonly pgpubsub: PgPubSub;
  }
}

declare module 'sequelize/types/model' {
  interface ModelOptions<M extends Model = Model> {
    /** Channels this model's table writes send on. See ModelPubSubOptions. */
    pgpubsub?: ModelPubSubOptions<M>;
  }
}


/**
 * Adds pgpubsub to a Sequelize instance (the primitive behind `sequelize.use(pgpubsub)`).
 * Idempotent: a second call applies new options to the same instance. Models defined before
 * and after it are picked up. Throws ChannelDefinitionError if a model's channels are invalid.
 */
export function install(sequelize: Sequelize, options: PgPubSubOptions = {}): PgPubSub {
  if (sequelize.getDialect() !== 'postgres') {
    throw new SetupError('PGPUBSUB_DIALECT', `pgpubsub needs PostgreSQL; this Sequelize instance uses '${sequelize.getDialect()}'. Use dialect: 'postgres'`);
  }
  // Plain JavaScript gets no compiler to catch `{ shema: 'x' }`: an unknown option is refused, as listen() refuses its own.
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new SetupError('PGPUBSUB_PLUGIN', `use(pgpubsub, options): options must be an object such as { schema: 'pgpubsub' }, got ${JSON.stringify(options)}`);
  }
  const unknown = unknownKeyProblems(options, PLUGIN_OPTIONS, 'use(pgpubsub, options)');
  if (unknown.length > 0) throw new SetupError('PGPUBSUB_PLUGIN', unknown.join('; '));
  const holder = sequelize as unknown as Record<symbol, PgPubSub | undefined>;
  let pubsub = holder[INSTALLED];
  if (pubsub) {
    pubsub.configure(options);
  } else {
    pubsub = new PgPubSub(sequelize, options);
    Object.defineProperty(sequelize, INSTALLED, { value: pubsub });
    Object.defineProperty(sequelize, 'pgpubsub', { value: pubsub, enumerable: false });
    // Definitions are read lazily from sequelize.models; a new model only invalidates the cache.
    // (A throw inside a v6 define hook would be lost, so validation happens in channels().)
    sequelize.addHook('afterDefine', 'pgpubsub', () => pubsub?.invalidate());
  }
  pubsub.channels();
  return pubsub;
}

/** The plugin object for `sequelize.use(pgpubsub, options)`. */
export const pgpubsub: SequelizePlugin<PgPubSubOptions, PgPubSub> = { install };

// Sequelize has no plugin API; this adds a non-enumerable, idempotent `use` to the app's Sequelize
// (a peer dependency, so this is the app's copy).
if (!Object.prototype.hasOwnProperty.call(Sequelize.prototype, 'use')) {
  Object.defineProperty(Sequelize.prototype, 'use', {
    value: function use(this: Sequelize, plugin: SequelizePlugin, options?: unknown) {
      if (typeof plugin?.install !== 'function') {
        throw new SetupError('PGPUBSUB_PLUGIN', 'sequelize.use(plugin): the plugin must have an install(sequelize, options) function, e.g. sequelize.use(pgpubsub)');
      }
      plugin.install(this, options);
      return this;
    },
    enumerable: false,
    writable: true,
    configurable: true,
  });
}

// `sequelize.pgpubsub` before `use(pgpubsub)`: a message that says so, instead of "Cannot read
// properties of undefined". install() gives each instance an own property that hides this one.
if (!Object.prototype.hasOwnProperty.call(Sequelize.prototype, 'pgpubsub')) {
  Object.defineProperty(Sequelize.prototype, 'pgpubsub', {
    get(this: Sequelize): never {
      throw new SetupError('PGPUBSUB_NOT_USED', 'sequelize.pgpubsub: this Sequelize instance has no pgpubsub yet; call sequelize.use(pgpubsub) first (import pgpubsub from \'sequelize-pgpubsub\')');
    },
    enumerable: false,
    configurable: true,
  });
}
