import { expect } from 'chai';
import { QueryTypes } from 'sequelize';
import { PgPubSubError, channel } from '../lib';
import type { App } from '../models/app';
import { type TestDatabase, testDatabase } from './support/hooks';
import { openApp } from '../dev/example-app';
import { listenTo, storedNotifications } from './support/notifications';

const Durable = channel<{ text: string; nested?: unknown; count?: bigint; when?: Date }>('durable_custom');
const TooBig = channel<{ blob: string }>('too_big_broadcast', { durable: false });

describe('notify() and the notification context', () => {
  let db: TestDatabase;
  let app: App;

  before(async () => {
    db = await testDatabase('notify');
    app = openApp(db.url);
    app.sequelize.pgpubsub.register(Durable, TooBig);
  });
  after(async () => {
    await app?.sequelize.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await app.sequelize.query('TRUNCATE pgpubsub.notification, authors, posts RESTART IDENTITY CASCADE');
  });

  describe('notify()', () => {
    it('stores a durable custom notification with quotes, unicode and nested JSON intact, and wakes listeners', async () => {
      const listener = await listenTo(db.url, ['durable_custom']);
      try {
        const payload = {
          text: "O'Brien said \"hi\" -- '); DROP TABLE authors; -- $1 :name ? \\ 🚀 ünïcödé",
          nested: { list: [1, 'two', { three: [null, true] }], '1': 'numeric key' },
          count: 9007199254740993n,
          when: new Date('2024-05-06T07:08:09.123Z'),
        };
        await app.sequelize.pgpubsub.notify(Durable, payload);
        const [row] = await storedNotifications(app.sequelize);
        expect(row.channel).to.equal('durable_custom');
        expect(row.payload).to.deep.equal({
          op: 'NOTIFY',
          context: {},
          payload: { ...payload, count: '9007199254740993', when: '2024-05-06T07:08:09.123Z' },
        });
        expect((await listener.waitFor(1))[0].payload).to.equal('');
        expect(await app.Author.count()).to.equal(0);
      } finally {
        await listener.close();
      }
    });

    it('sends a broadcast channel in the NOTIFY itself, with defaults filled in, and stores nothing', async () => {
      const listener = await listenTo(db.url, ['post_reads']);
      try {
        await app.sequelize.pgpubsub.notify('post_reads', { modelId: 1 });
        const [message] = await listener.waitFor(1);
        expect(JSON.parse(message.payload!)).to.deep.equal({ op: 'NOTIFY', context: {}, payload: { modelId: 1, modelType: 'Post' } });
        expect(await storedNotifications(app.sequelize)).to.deep.equal([]);
      } finally {
        await listener.close();
      }
    });

    it('stores nothing and sends nothing when the transaction rolls back', async () => {
      const listener = await listenTo(db.url, ['durable_custom', 'post_reads']);
      try {
        const transaction = await app.sequelize.transaction();
        await app.sequelize.pgpubsub.notify(Durable, { text: 'a' }, { transaction });
        await app.sequelize.pgpubsub.notify(app.PostReads, { modelId: 2 }, { transaction });
        await transaction.rollback();
        expect(await listener.settle()).to.deep.equal([]);
        expect(await storedNotifications(app.sequelize)).to.deep.equal([]);
      } finally {
        await listener.close();
      }
    });

    it('refuses a broadcast payload over the NOTIFY limit, saying to make the channel durable', async () => {
      let failure: unknown;
      await app.sequelize.pgpubsub.notify(TooBig, { blob: 'z'.repeat(9000) }).catch((error) => { failure = error; });
      expect(failure).to.be.instanceOf(PgPubSubError);
      expect((failure as Error).message).to.contain("notify('too_big_broadcast'): the payload is 9011 bytes").and.contain('make the channel durable');
    });

    it('rejects an unknown channel name and a model channel, naming the fix', async () => {
      let unknown: Error | undefined;
      await app.sequelize.pgpubsub.notify('no_such_channel', {}).catch((error: Error) => { unknown = error; });
      expect(unknown?.message).to.contain("unknown channel 'no_such_channel'").and.contain('author_created');
      let model: Error | undefined;
      await app.sequelize.pgpubsub.notify('author_created', {}).catch((error: Error) => { model = error; });
      expect(model?.message).to.contain('this is a channel of model Author');
    });
  });

  describe('context', () => {
    const storedContexts = async () => (await storedNotifications(app.sequelize)).map((row) => row.payload.context);

    it('stores {} when no context is set', async () => {
      await app.Author.create({ name: 'plain' });
      expect(await storedContexts()).to.deep.equal([{}]);
    });

    it('stores a transaction-scoped context only within its transaction', async () => {
      await app.sequelize.transaction(async (transaction) => {
        await app.sequelize.pgpubsub.setContext({ traceId: 't-1', tenant: 7 }, { transaction });
        await app.Author.create({ name: 'traced' }, { transaction });
        await app.sequelize.pgpubsub.notify(Durable, { text: 'traced too' }, { transaction });
      });
      await app.Author.create({ name: 'after' });
      expect(await storedContexts()).to.deep.equal([{ traceId: 't-1', tenant: 7 }, { traceId: 't-1', tenant: 7 }, {}]);
    });

    it('runs work with a context through withContext()', async () => {
      const author = await app.sequelize.pgpubsub.withContext({ content: 'Custom welcome' }, (transaction) => app.Author.create({ name: 'w' }, { transaction }));
      expect(author.name).to.equal('w');
      expect(await storedContexts()).to.deep.equal([{ content: 'Custom welcome' }]);
    });

    it('keeps a session-scoped context on its connection after the transaction commits', async () => {
      const single = openApp(db.url, { pool: { max: 1, min: 1 } });
      try {
        await single.sequelize.transaction(async (transaction) => {
          await single.sequelize.pgpubsub.setContext({ test_key: 'test-value' }, { scope: 'session', transaction });
        });
        await single.Author.create({ name: 'later on the same connection' });
        await single.sequelize.transaction(async (transaction) => {
          await single.sequelize.pgpubsub.setContext({}, { scope: 'session', transaction });
        });
        await single.Author.create({ name: 'cleared' });
      } finally {
        await single.sequelize.close();
      }
      expect(await storedContexts()).to.deep.equal([{ test_key: 'test-value' }, {}]);
    });

    it('sets a context on a raw pg connection', async () => {
      const { Client } = await import('pg');
      const client = new Client({ connectionString: db.url });
      await client.connect();
      try {
        await app.sequelize.pgpubsub.setContext({ source: 'raw' }, { scope: 'session', connection: client });
        await client.query("INSERT INTO authors (name) VALUES ('raw')");
      } finally {
        await client.end();
      }
      expect(await storedContexts()).to.deep.equal([{ source: 'raw' }]);
    });

    it('refuses a transaction-scoped context outside a transaction, saying what to do', async () => {
      let failure: PgPubSubError | undefined;
      await app.sequelize.pgpubsub.setContext({ a: 1 }).catch((error: PgPubSubError) => { failure = error; });
      expect(failure?.code).to.equal('PGPUBSUB_CONTEXT_NO_TRANSACTION');
      expect(failure?.message).to.contain('Pass { transaction }').and.contain('withContext');
    });

    it('does not throw a second error when set in an already failed transaction', async () => {
      const outcome = await app.sequelize.transaction(async (transaction) => {
        await app.sequelize.query('SELECT 1/0', { transaction }).catch(() => undefined);
        await app.sequelize.pgpubsub.setContext({ late: true }, { transaction });
        return 'reached';
      }).catch((error: Error) => error.message);
      // The transaction itself fails at COMMIT (it was aborted), but setContext added no error of its own.
      expect(outcome).to.not.contain('pgpubsub');
    });

    it('never cancels a write because a hand-set context is not JSON', async () => {
      await app.sequelize.transaction(async (transaction) => {
        await app.sequelize.query("SELECT set_config('pgpubsub.notification_context', 'not json', true)", { transaction, type: QueryTypes.SELECT });
        await app.Author.create({ name: 'still written' }, { transaction });
      });
      expect(await app.Author.count()).to.equal(1);
      expect(await storedContexts()).to.deep.equal([{ invalid_context: 'not json' }]);
    });

    it('rejects a context that is not a plain object', async () => {
      await app.sequelize.transaction(async (transaction) => {
        let failure: PgPubSubError | undefined;
        await app.sequelize.pgpubsub.setContext(['a'] as unknown as Record<string, unknown>, { transaction }).catch((e: PgPubSubError) => { failure = e; });
        expect(failure?.code).to.equal('PGPUBSUB_CONTEXT_TYPE');
      });
    });
  });
});
