import { expect } from 'chai';
import { QueryTypes } from 'sequelize';
import type { App } from '../models/app';
import { registerCallbacks } from '../models/callbacks';
import { openApp } from './support/app';
import { type TestDatabase, testDatabase } from './support/hooks';
import { listenTo } from './support/notifications';
import { eventually, sleep } from './support/wait';

describe('wake-ups', () => {
  let db: TestDatabase;
  let app: App;
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const count = async (table: string) => (await app.sequelize.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`, { type: QueryTypes.SELECT }))[0].n;

  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
    app = openApp(db.url);
  });
  afterEach(async function () {
    await app.sequelize.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('sends one NOTIFY per transaction and channel, at commit, and leaves no wake request behind', async () => {
    const listener = await listenTo(db.url, ['author_created', 'media_changed']);
    try {
      const transaction = await app.sequelize.transaction();
      await app.Author.create({ name: 'a' }, { transaction });
      await app.Author.bulkCreate([{ name: 'b' }, { name: 'c' }], { transaction });
      await app.Media.create({ key: 'm', name: 'm' }, { transaction });
      expect(await listener.settle(200), 'nothing before commit').to.deep.equal([]);
      await transaction.commit();
      await listener.waitFor(2);
      expect((await listener.settle()).map((m) => m.channel).sort()).to.deep.equal(['author_created', 'media_changed']);
      const rolledBack = await app.sequelize.transaction();
      await app.Author.create({ name: 'never' }, { transaction: rolledBack });
      await rolledBack.rollback();
      expect(await listener.settle()).to.have.length(2);
      expect(await count('pgpubsub_wake_request')).to.equal(0);
    } finally {
      await listener.close();
    }
  });

  it("skips the NOTIFY while a listener holds a drain lease on the channel, and not for other channels or after it expires", async () => {
    const listener = await listenTo(db.url, ['author_created', 'media_changed']);
    try {
      await app.sequelize.query(`INSERT INTO pgpubsub_drain_lease (listener, channels, until)
        VALUES ('busy', '{author_created}', clock_timestamp() + interval '600 ms')`);
      await app.Author.create({ name: 'while busy' });
      await app.Media.create({ key: 'k', name: 'other channel' });
      const [message] = await listener.waitFor(1);
      expect(message.channel).to.equal('media_changed');
      expect(await listener.settle(300)).to.have.length(1);
      await sleep(400);
      await app.Author.create({ name: 'after the lease' });
      await listener.waitFor(2);
      expect(listener.received[1].channel).to.equal('author_created');
      expect(await count('pgpubsub_notification')).to.equal(3);
    } finally {
      await listener.close();
    }
  });

  it('strands no row while producers skip their NOTIFYs for a draining listener', async function () {
    this.timeout(60_000);
    registerCallbacks(app);
    // The default heartbeat (60 s) cannot be what finds the rows: only the lease hand-over can.
    const listener = await app.sequelize.pgpubsub.listen({ batchSize: 10, logger: quiet });
    const wakeups = await listenTo(db.url, ['author_created']);
    let transactions = 0;
    try {
      const producers = Array.from({ length: 4 }, async (_, p) => {
        const producer = openApp(db.url);
        try {
          for (const until = Date.now() + 2500; Date.now() < until;) {
            await producer.Author.create({ name: `p${p}-${transactions}` });
            transactions++;
          }
        } finally {
          await producer.sequelize.close();
        }
      });
      await Promise.all(producers);
      const lastCommit = Date.now();
      // Well before the heartbeat (60 s): a stranded row would wait for it. Draining the backlog left
      // by the producers takes a few seconds on a loaded machine.
      await eventually(async () => (await count('pgpubsub_notification')) === 0, 'every notification to be processed', 30_000, 20);
      const drainedAfter = Date.now() - lastCommit;
      expect(await count('posts')).to.equal(transactions);
      expect(await count('authors')).to.equal(transactions);
      const notifies = (await wakeups.settle()).length;
      expect(notifies, `${notifies} NOTIFYs for ${transactions} producing transactions`).to.be.below(transactions / 2);
      expect(drainedAfter).to.be.below(30_000);
      await eventually(async () => (await count('pgpubsub_drain_lease')) === 0, 'the lease to be released');
      expect(listener.stats.processed).to.equal(transactions);
    } finally {
      await wakeups.close();
      await listener.stop();
    }
  });
});
