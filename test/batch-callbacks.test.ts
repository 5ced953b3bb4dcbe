/**
 * Batch callbacks (onBatch): all of a claim's messages on a channel at once, in one transaction;
 * a throw runs them again one at a time so that only the bad ones are charged; a timeout splits
 * the group from the start; the refusals.
 */
import { expect } from 'chai';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { type CustomMessage, channel } from '../lib';
import { exampleAppPerTest } from './support/example-app-per-test';

describe('batch callbacks (onBatch)', function () {
  this.timeout(30_000);
  const test = exampleAppPerTest();
  const { listen, count } = test;

  it("gets a claim's messages at once and writes their posts in one bulkCreate, each exactly once", async () => {
    const sizes: number[] = [];
    test.app.sequelize.pgpubsub.onBatch(test.app.Author, 'author_created', async (messages, { transaction, attempts }) => {
      sizes.push(messages.length);
      expect(attempts).to.deep.equal(messages.map(() => 1));
      await test.app.Post.bulkCreate(messages.map(({ new: author }) => ({ authorId: author!.id, content: `welcome ${author!.name}` })), { transaction });
    });
    await test.app.Author.bulkCreate(Array.from({ length: 250 }, (_, i) => ({ name: `a${i}` })));
    await listen({ batchSize: 100 });
    await eventually(async () => (await count('posts')) === 250, 'a post per author');
    expect(await count('(SELECT DISTINCT author_id FROM posts) AS p')).to.equal(250);
    expect(await count('pgpubsub.notification')).to.equal(0);
    expect(sizes.reduce((a, b) => a + b, 0)).to.equal(250);
    expect(Math.max(...sizes)).to.equal(100);
  });

  for (const savepoints of ['on-failure', 'always'] as const) {
    it(`with savepoints '${savepoints}', charges only the message a throwing batch callback fails on, and commits the others' writes once`, async () => {
      const Orders = channel<{ n: number }>('batch_orders', { retry: { maxAttempts: 1 } });
      const calls: number[][] = [];
      test.app.sequelize.pgpubsub.onBatch(Orders, async (messages: CustomMessage<{ n: number }>[], { transaction }) => {
        calls.push(messages.map((m) => m.payload.n));
        await test.app.Author.bulkCreate(messages.map((m) => ({ name: `order ${m.payload.n}` })), { transaction });
        if (messages.some((m) => m.payload.n === 4)) throw new Error('order 4 is bad');
      });
      for (let n = 1; n <= 6; n++) await test.app.sequelize.pgpubsub.notify(Orders, { n });
      await listen({ recover: true, savepoints });
      await eventually(async () => (await count("pgpubsub.notification WHERE channel = 'batch_orders' AND failed_at IS NULL")) === 0, 'the batch to settle');
      expect((await test.app.Author.findAll({ order: [['id', 'ASC']] })).map((a) => a.name)).to.deep.equal(['order 1', 'order 2', 'order 3', 'order 5', 'order 6']);
      const [failed] = await test.app.sequelize.query<{ payload: { payload: { n: number } }; last_error: string }>(
        "SELECT payload, last_error FROM pgpubsub.notification WHERE channel = 'batch_orders'", { type: QueryTypes.SELECT });
      expect(failed.payload.payload.n).to.equal(4);
      expect(failed.last_error).to.match(/^Error: order 4 is bad/);
      // All at once, (on-failure: then all at once again with savepoints,) then one at a time.
      const all = [1, 2, 3, 4, 5, 6];
      const singles = all.map((n) => [n]);
      expect(calls).to.deep.equal(savepoints === 'always' ? [all, ...singles] : [all, all, ...singles]);
    });
  }

  it('splits a group whose batch callback times out, so that only the message that hangs is charged', async () => {
    const Slow = channel<{ n: number }>('batch_slow', { timeoutMs: 300, retry: { maxAttempts: 1 } });
    test.app.sequelize.pgpubsub.onBatch(Slow, async (messages: CustomMessage<{ n: number }>[], { signal }) => {
      if (messages.some((m) => m.payload.n === 2)) await new Promise((resolve) => signal.addEventListener('abort', resolve));
    });
    for (let n = 1; n <= 3; n++) await test.app.sequelize.pgpubsub.notify(Slow, { n });
    const listener = await listen({ recover: true });
    await eventually(async () => (await count("pgpubsub.notification WHERE channel = 'batch_slow' AND failed_at IS NULL")) === 0, 'the batch to settle');
    const left = await test.app.sequelize.query<{ n: number; last_error: string }>(
      "SELECT (payload -> 'payload' ->> 'n')::int AS n, last_error FROM pgpubsub.notification WHERE channel = 'batch_slow'", { type: QueryTypes.SELECT });
    expect(left.map((row) => row.n)).to.deep.equal([2]);
    expect(left[0].last_error).to.match(/^CallbackTimeoutError/);
    expect(listener.stats.processed).to.equal(2);
  });

  it('refuses onBatch on a broadcast channel, and mixing on() and onBatch() on one channel', () => {
    const Live = channel<{ n: number }>('batch_live', { durable: false });
    expect(() => test.app.sequelize.pgpubsub.onBatch(Live, () => {})).to.throw(/onBatch\('batch_live'\): a broadcast channel's messages come one at a time/);
    test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', () => {});
    expect(() => test.app.sequelize.pgpubsub.onBatch(test.app.Author, 'author_created', () => {})).to.throw(/already has on\(\) callbacks; a channel takes one kind/);
  });
});
