import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { DataTypes, type ModelOptions, Sequelize } from 'sequelize';
import { ROOT } from '../dev/processes';
import pgpubsub, { ChannelDefinitionError, PgPubSubError, SetupError, channel, install } from '../lib';

/** A Sequelize instance that never connects: definitions are checked without a database. */
function offline(): Sequelize {
  return new Sequelize('postgres://nobody@127.0.0.1:1/none', { logging: false });
}

function defineWith(sequelize: Sequelize, name: string, pgpubsubOption: unknown, extra: Partial<ModelOptions> = {}) {
  return sequelize.define(name, { title: DataTypes.STRING }, { ...extra, pgpubsub: pgpubsubOption } as ModelOptions);
}

function definitionError(work: () => unknown): ChannelDefinitionError {
  try {
    work();
  } catch (error) {
    expect(error).to.be.instanceOf(ChannelDefinitionError);
    return error as ChannelDefinitionError;
  }
  throw new Error('expected a ChannelDefinitionError');
}

describe('channel definitions', () => {
  it('installs with sequelize.use(pgpubsub), and a second use() is harmless', () => {
    const sequelize = offline();
    const Custom = channel('custom_one');
    expect(sequelize.use(pgpubsub)).to.equal(sequelize);
    const first = sequelize.pgpubsub;
    sequelize.use(pgpubsub, { channels: [Custom] });
    install(sequelize, { channels: [Custom] });
    expect(sequelize.pgpubsub).to.equal(first);
    expect(sequelize.pgpubsub.channel('custom_one')).to.equal(Custom);
    expect(Object.keys(Sequelize.prototype)).not.to.include('use');
    expect(Object.keys(sequelize)).not.to.include('pgpubsub');
  });

  it('says to call use(pgpubsub) first when sequelize.pgpubsub is read before it', () => {
    const sequelize = offline();
    expect(() => sequelize.pgpubsub).to.throw(SetupError, 'call sequelize.use(pgpubsub) first');
    sequelize.use(pgpubsub);
    expect(sequelize.pgpubsub.channels()).to.deep.equal([]);
  });

  it('refuses an option use(pgpubsub, options) does not know, naming it and the known ones (plain JavaScript has no compiler to catch it)', () => {
    const sequelize = offline();
    expect(() => sequelize.use(pgpubsub, { shema: 'ops' } as never)).to.throw(SetupError, "use(pgpubsub, options): unknown option 'shema' (known: channels, schema)");
    expect(() => install(sequelize, 'ops' as never)).to.throw(SetupError, 'options must be an object');
    // Refused before anything was installed: a correct use() afterwards works.
    sequelize.use(pgpubsub, { schema: 'ops' });
    expect(sequelize.pgpubsub.schema).to.equal('ops');
  });

  it('picks up models defined before and after use()', () => {
    const sequelize = offline();
    defineWith(sequelize, 'Before', { channels: { before_created: { events: ['insert'] } } });
    sequelize.use(pgpubsub);
    defineWith(sequelize, 'After', { channels: { after_changed: { events: ['update', 'delete'] } } });
    const names = sequelize.pgpubsub.channels().map((c) => c.name).sort();
    expect(names).to.deep.equal(['after_changed', 'before_created']);
    expect(sequelize.pgpubsub.channel('after_changed')).to.include({ kind: 'model', modelName: 'After', table: 'Afters', durable: true });
  });

  it('resolves events, durability, retry defaults and the primary key column', () => {
    const sequelize = offline().use(pgpubsub);
    sequelize.define('Thing', { code: { type: DataTypes.STRING, primaryKey: true, field: 'thing_code' } }, {
      pgpubsub: { channels: { thing_seen: { events: 'delete', durable: false, retry: { maxAttempts: 2 } } } },
    });
    const resolved = sequelize.pgpubsub.channel('thing_seen');
    expect(resolved).to.deep.include({
      events: ['delete'], durable: false, retry: { maxAttempts: 2, backoffMs: 1000, maxBackoffMs: 300_000 }, fullRows: false, primaryKeyColumns: ['thing_code'],
    });
  });

  it('takes fullRows on broadcast channels only', () => {
    const sequelize = offline().use(pgpubsub);
    sequelize.define('Gauge', { level: DataTypes.INTEGER }, {
      pgpubsub: { channels: { gauge_read: { events: 'update', durable: false, fullRows: true }, gauge_set: { events: 'insert', fullRows: true } } },
    });
    expect(() => sequelize.pgpubsub.channels()).to.throw("channel 'gauge_set' on model Gauge: 'fullRows' is for broadcast channels (durable: false)");
  });

  it('does not copy a channel onto the through model belongsToMany creates', () => {
    const sequelize = offline().use(pgpubsub);
    const Post = defineWith(sequelize, 'Post', { channels: { post_made: { events: ['insert'] } } });
    const Tag = sequelize.define('Tag', {});
    Post.belongsToMany(Tag, { through: 'post_tags' });
    expect(sequelize.pgpubsub.channels().map((c) => c.name)).to.deep.equal(['post_made']);
  });

  it("rejects an unknown event, naming the model, the channel and the supported events", () => {
    const sequelize = offline();
    defineWith(sequelize, 'Author', { channels: { author_created: { events: ['insert', 'upsert'] } } });
    const error = definitionError(() => sequelize.use(pgpubsub));
    expect(error.message).to.equal(`channel 'author_created' on model Author: event "upsert" is not supported (insert, update, delete, truncate, soft_delete, restore)`);
    expect(error.code).to.equal('PGPUBSUB_INVALID_CHANNEL');
    // docs/getting-started.md shows this message as it is.
    expect(fs.readFileSync(path.join(ROOT, 'docs', 'getting-started.md'), 'utf8')).to.contain(`\n    ${error.message}\n`);
  });

  it('rejects a channel without events', () => {
    const sequelize = offline();
    defineWith(sequelize, 'Author', { channels: { author_created: {} } });
    expect(definitionError(() => sequelize.use(pgpubsub)).message).to.contain("'events' is required; list one or more of insert, update, delete, truncate, soft_delete, restore");
  });

  it('rejects a malformed name, a name over 63 bytes and a reserved name', () => {
    const sequelize = offline();
    const long = 'é'.repeat(32);
    defineWith(sequelize, 'Author', { channels: { 'bad name!': { events: ['insert'] }, [long]: { events: ['insert'] }, pgpubsub_x: { events: ['insert'] } } });
    const { problems } = definitionError(() => sequelize.use(pgpubsub));
    expect(problems).to.have.length(3);
    expect(problems[0]).to.contain("channel 'bad name!' on model Author: the name may contain only letters");
    expect(problems[1]).to.contain('the name is 64 bytes; PostgreSQL channel names are at most 63');
    expect(problems[2]).to.contain('reserved');
  });

  it('rejects a channel on a model with no primary key', () => {
    const sequelize = offline();
    const Log = defineWith(sequelize, 'Log', { channels: { log_written: { events: ['insert'] } } });
    Log.removeAttribute('id');
    expect(definitionError(() => sequelize.use(pgpubsub)).message).to.contain("channel 'log_written' on model Log: the model has no primary key");
  });

  it('rejects a channel name used twice, across models and custom channels', () => {
    const sequelize = offline();
    defineWith(sequelize, 'Author', { channels: { changed: { events: ['insert'] } } });
    defineWith(sequelize, 'Post', { channels: { changed: { events: ['delete'] } } });
    const { problems } = definitionError(() => sequelize.use(pgpubsub, { channels: [channel('changed')] }));
    expect(problems).to.deep.equal([
      "channel 'changed' is declared twice: on model Author and on model Post; channel names are global, rename one",
      "channel 'changed' is declared twice: on model Author and on a custom channel; channel names are global, rename one",
    ]);
  });

  it('rejects unknown options and a malformed retry policy', () => {
    const sequelize = offline();
    defineWith(sequelize, 'Author', { channels: { author_created: { event: 'insert', events: 'insert', durable: 'yes', retry: { maxAttempts: 0 } } } });
    const { problems } = definitionError(() => sequelize.use(pgpubsub));
    expect(problems).to.include("channel 'author_created' on model Author: unknown option 'event' (known: events, durable, retry, timeoutMs, fullRows, delayMs, columns, exclude, when, ordering, orderingKey, afterFailure, coalesce)");
    expect(problems).to.include(`channel 'author_created' on model Author: 'durable' must be true or false, got "yes"`);
    expect(problems).to.include("channel 'author_created' on model Author: retry.maxAttempts must be a positive integer, got 0");
  });

  it('reports a bad definition on a model defined after use() from channels() and sync, not as a lost hook error', async () => {
    const lost: unknown[] = [];
    const onRejection = (reason: unknown) => lost.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      const sequelize = offline().use(pgpubsub);
      defineWith(sequelize, 'Late', { channels: { late: { events: ['upsert'] } } });
      await new Promise((resolve) => setImmediate(resolve));
      expect(() => sequelize.pgpubsub.channels()).to.throw(ChannelDefinitionError, "channel 'late' on model Late");
      let syncError: unknown;
      await sequelize.pgpubsub.triggers.sync().catch((error) => { syncError = error; });
      expect(syncError).to.be.instanceOf(ChannelDefinitionError);
      expect(lost).to.deep.equal([]);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });

  it('validates a custom channel when it is declared', () => {
    expect(() => channel('has space')).to.throw(PgPubSubError, "custom channel 'has space': the name may contain only");
    expect(() => channel('ok', { durable: 1 as unknown as boolean })).to.throw(PgPubSubError, "'durable' must be true or false");
  });

  it('names the known channels when asked for an unknown one', () => {
    const sequelize = offline();
    defineWith(sequelize, 'Author', { channels: { author_created: { events: ['insert'] } } });
    sequelize.use(pgpubsub);
    expect(() => sequelize.pgpubsub.channel('nope')).to.throw(PgPubSubError, "unknown channel 'nope'. Known channels: author_created.");
  });
});
