import { expect } from 'chai';
import { Client } from 'pg';
import { QueryTypes } from 'sequelize';
import { WAKE_LOCKS } from '../lib/db/wake-locks';
import type { App } from '../models/app';
import { registerCallbacks } from '../models/callbacks';
import { openApp } from '../dev/example-app';
import { exampleAppPerTest } from './support/example-app-per-test';
import { listenTo } from './support/notifications';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../dev/eventually';

describe('wake-ups', () => {
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const count = async (table: string) => (await t.app.sequelize.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`, { type: QueryTypes.SELECT }))[0].n;

  const t = exampleAppPerTest();

  it('sends one NOTIFY per transaction and channel, at commit', async () => {
    const listener = await listenTo(t.db.url, ['author_created', 'media_changed']);
    try {
      const transaction = await t.app.sequelize.transaction();
      await t.app.Author.create({ name: 'a' }, { transaction });
      await t.app.Author.bulkCreate([{ name: 'b' }, { name: 'c' }], { transaction });
      await t.app.Media.create({ key: 'm', name: 'm' }, { transaction });
      expect(await listener.settle(200), 'nothing before commit').to.deep.equal([]);
      await transaction.commit();
      await listener.waitFor(2);
      expect((await listener.settle()).map((m) => m.channel).sort()).to.deep.equal(['author_created', 'media_changed']);
      const rolledBack = await t.app.sequelize.transaction();
      await t.app.Author.create({ name: 'never' }, { transaction: rolledBack });
      await rolledBack.rollback();
      expect(await listener.settle()).to.have.length(2);
    } finally {
      await listener.close();
    }
  });

  it("skips the NOTIFY while a listener holds the channel's drain lock, not for other channels, and again after it lets go", async () => {
    const listener = await listenTo(t.db.url, ['author_created', 'media_changed']);
    const busy = new Client({ connectionString: t.db.url });
    await busy.connect();
    try {
      await busy.query(`SELECT pg_advisory_lock(${WAKE_LOCKS.draining}, hashtext('author_created'))`);
      // A listener draining also says so (roles without UPDATE on the beat sequence cannot).
      await busy.query("SELECT setval('pgpubsub.drain_beat', (extract(epoch FROM clock_timestamp()) * 1000)::bigint)");
      await t.app.Author.create({ name: 'while busy' });
      await t.app.Media.create({ key: 'k', name: 'other channel' });
      const [message] = await listener.waitFor(1);
      expect(message.channel).to.equal('media_changed');
      expect(await listener.settle(300)).to.have.length(1);
      await busy.query(`SELECT pg_advisory_unlock(${WAKE_LOCKS.draining}, hashtext('author_created'))`);
      await t.app.Author.create({ name: 'after the lock' });
      await listener.waitFor(2);
      expect(listener.received[1].channel).to.equal('author_created');
      expect(await count('pgpubsub.notification')).to.equal(3);
    } finally {
      await busy.end();
      await listener.close();
    }
  });

  it('skips the NOTIFY when nobody listens on the channel, and sends it once someone does', async () => {
    const bystander = await listenTo(t.db.url, ['author_created'], { asListener: false });
    try {
      await t.app.Author.create({ name: 'nobody listening' });
      expect(await bystander.settle(300)).to.deep.equal([]);
      const listener = await listenTo(t.db.url, ['author_created']);
      try {
        await t.app.Author.create({ name: 'someone listening' });
        await bystander.waitFor(1);
        await listener.waitFor(1);
      } finally {
        await listener.close();
      }
      expect(await count('pgpubsub.notification')).to.equal(2);
    } finally {
      await bystander.close();
    }
  });

  it('a starting listener waits for a producer that skipped its NOTIFY to commit, then processes its row without the heartbeat', async () => {
    registerCallbacks(t.app);
    const producer = openApp(t.db.url);
    const transaction = await producer.sequelize.transaction();
    try {
      await producer.Author.create({ name: 'open while nobody listens' }, { transaction });
      const listener = await t.app.sequelize.pgpubsub.listen({ logger: quiet });
      try {
        await sleep(300);
        expect(listener.stats.processed, 'nothing to see before the commit').to.equal(0);
        await transaction.commit();
        await eventually(async () => (await count('posts')) === 1, 'the post, long before the 60 s heartbeat', 5000, 20);
        expect(listener.stats.processed).to.equal(1);
      } finally {
        await listener.stop();
      }
    } finally {
      await producer.sequelize.close();
    }
  });

  it('shares a backlog the producers no longer announce with an idle listener, and hands it over when the draining listener stops', async function () {
    this.timeout(30_000);
    const slow = (target: App) => {
      target.sequelize.pgpubsub.on(target.Author, 'author_created', () => sleep(5).then(() => undefined));
      registerCallbacks(target);
    };
    slow(t.app);
    const first = await t.app.sequelize.pgpubsub.listen({ batchSize: 10, logger: quiet });
    await t.app.Author.bulkCreate(Array.from({ length: 300 }, (_, i) => ({ name: `backlog ${i}` })));
    // The first listener drains full batches, so it holds the drain lock: producers skip their NOTIFYs.
    await eventually(async () => first.stats.processed >= 20, 'the first listener to be draining', 10_000, 10);
    const other = openApp(t.db.url);
    slow(other);
    // No start-up drain: only a wake-up from the first listener can set it to work.
    const second = await other.sequelize.pgpubsub.listen({ batchSize: 10, recover: false, logger: quiet });
    try {
      await t.app.Author.create({ name: 'announced to nobody' });
      await sleep(300);
      await first.stop();
      await eventually(async () => (await count('pgpubsub.notification')) === 0, 'the rest to be processed by the second listener, long before its heartbeat', 15_000, 20);
      expect(await count('posts')).to.equal(301);
      expect(second.stats.processed).to.be.above(0);
      expect(first.stats.processed + second.stats.processed).to.equal(301);
    } finally {
      await second.stop();
      await other.sequelize.close();
    }
  });

  it('strands no row while producers skip their NOTIFYs for a draining listener', async function () {
    this.timeout(60_000);
    registerCallbacks(t.app);
    // The default heartbeat (60 s) cannot be what finds the rows: only the drain-lock hand-over can.
    const listener = await t.app.sequelize.pgpubsub.listen({ batchSize: 10, logger: quiet });
    const wakeups = await listenTo(t.db.url, ['author_created']);
    let transactions = 0;
    try {
      const producers = Array.from({ length: 4 }, async (_, p) => {
        const producer = openApp(t.db.url);
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
      await eventually(async () => (await count('pgpubsub.notification')) === 0, 'every notification to be processed', 30_000, 20);
      const drainedAfter = Date.now() - lastCommit;
      expect(await count('posts')).to.equal(transactions);
      expect(await count('authors')).to.equal(transactions);
      const notifies = (await wakeups.settle()).length;
      expect(notifies, `${notifies} NOTIFYs for ${transactions} producing transactions`).to.be.below(transactions / 2);
      expect(drainedAfter).to.be.below(30_000);
      const drainLocks = `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid::int = ${WAKE_LOCKS.draining}`;
      await eventually(async () => (await t.app.sequelize.query<{ n: number }>(drainLocks, { type: QueryTypes.SELECT }))[0].n === 0, 'the drain locks to be let go');
      expect(listener.stats.processed).to.equal(transactions);
    } finally {
      await wakeups.close();
      await listener.stop();
    }
  });
});
