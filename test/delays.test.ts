/**
 * Delays: notify()'s delayMs and runAt, a channel's delayMs (custom and model channels). A delayed
 * notification is stored at once, processed no earlier than asked and on time (the listener sets
 * a timer for it rather than polling), and survives a listener's restart.
 */
import { expect } from 'chai';
import { DataTypes } from 'sequelize';
import { ChannelDefinitionError, NotifyPayloadError, channel } from '../lib';
import { eventually } from '../dev/eventually';
import { exampleAppPerTest } from './support/example-app-per-test';

describe('delays', function () {
  this.timeout(30_000);
  const test = exampleAppPerTest();

  it("processes notify()'s delayMs and runAt no earlier than asked and on time, waking once rather than polling", async () => {
    const Reminder = channel<{ n: number }>('reminder');
    const { pubsub } = { pubsub: test.app.sequelize.pgpubsub };
    pubsub.register(Reminder);
    const seen = new Map<number, number>();
    pubsub.on(Reminder, ({ payload }) => { seen.set(payload.n, Date.now()); });
    const listener = await test.listen({ recover: false });
    let drains = 0;
    listener.on('drain:start', () => { drains++; });
    const sent = Date.now();
    await pubsub.notify(Reminder, { n: 1 }, { delayMs: 1500 });
    await pubsub.notify(Reminder, { n: 2 }, { runAt: new Date(sent + 1000) });
    await pubsub.notify(Reminder, { n: 3 });
    await eventually(() => seen.size === 3, 'all three processed', 10_000);
    expect(seen.get(3)! - sent).to.be.below(1000);
    expect(seen.get(2)! - sent).to.be.within(950, 2500);
    expect(seen.get(1)! - sent).to.be.within(1450, 3000);
    // The three wake-ups and the two timers, not a poll every few ms.
    expect(drains).to.be.at.most(8);
  });

  it("applies a channel's delayMs (notify()'s own wins), and keeps a delayed notification through a listener's restart", async () => {
    const Digest = channel<{ n: number }>('digest', { delayMs: 1200 });
    const pubsub = test.app.sequelize.pgpubsub;
    pubsub.register(Digest);
    const seen = new Map<number, number>();
    pubsub.on(Digest, ({ payload }) => { seen.set(payload.n, Date.now()); });
    const sent = Date.now();
    await pubsub.notify(Digest, { n: 1 });
    await pubsub.notify(Digest, { n: 2 }, { delayMs: 0 });
    const first = await test.listen();
    await eventually(() => seen.has(2), 'the undelayed one');
    expect(seen.has(1)).to.equal(false);
    await first.stop();
    await test.listen();
    await eventually(() => seen.has(1), 'the delayed one, by the new listener', 10_000);
    expect(seen.get(1)! - sent).to.be.at.least(1150);
  });

  it("delays a model channel's notifications by its delayMs", async () => {
    const { sequelize } = test.app;
    const Invoice = sequelize.define('DelayedInvoice', { id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, total: DataTypes.INTEGER }, {
      tableName: 'delayed_invoices', timestamps: false,
      pgpubsub: { channels: { invoice_due: { events: ['insert'], delayMs: 1000 } } },
    });
    await Invoice.sync();
    await sequelize.pgpubsub.triggers.sync();
    const seen: number[] = [];
    sequelize.pgpubsub.on(Invoice, 'invoice_due', () => { seen.push(Date.now()); });
    await test.listen();
    const sent = Date.now();
    await Invoice.create({ total: 5 });
    await eventually(() => seen.length === 1, 'the invoice, a second later', 10_000);
    expect(seen[0] - sent).to.be.within(950, 3000);
  });

  it('says what is wrong with a delay', async () => {
    const pubsub = test.app.sequelize.pgpubsub;
    const Live = channel<{ n: number }>('live_delay', { durable: false });
    const Stored = channel<{ n: number }>('stored_delay');
    pubsub.register(Live, Stored);
    const refused = async (work: Promise<unknown>, message: string) => {
      const error = await work.then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(NotifyPayloadError).and.to.have.property('code', 'PGPUBSUB_DELAY');
      expect((error as Error).message).to.contain(message);
    };
    await refused(pubsub.notify(Live, { n: 1 }, { delayMs: 10 }), "notify('live_delay'): a broadcast channel cannot be delayed");
    await refused(pubsub.notify(Stored, { n: 1 }, { delayMs: 10, runAt: new Date() }), 'give delayMs or runAt, not both');
    await refused(pubsub.notify(Stored, { n: 1 }, { delayMs: -1 }), 'delayMs must be an integer from 0 to 2147483647');
    await refused(pubsub.notify(Stored, { n: 1 }, { runAt: new Date('nope') }), 'runAt must be a valid Date no later than 9999-12-31T23:59:59.999Z, got Invalid Date');
    // Past PostgreSQL's own reading of ISO text: still this error, not the database's.
    await refused(pubsub.notify(Stored, { n: 1 }, { runAt: new Date(Date.UTC(10000, 0, 1)) }), 'runAt must be a valid Date no later than 9999-12-31T23:59:59.999Z, got +010000-01-01T00:00:00.000Z');
    await refused(pubsub.notify(Stored, { n: 1 }, { delayMs: Number.NaN }), 'got NaN');
    await refused(pubsub.notify(Stored, { n: 1 }, { delayMs: Number.POSITIVE_INFINITY }), 'got Infinity');
    expect(() => channel('bad_delay', { durable: false, delayMs: 5 })).to.throw(ChannelDefinitionError, "'delayMs' is for durable channels");
    expect(() => channel('bad_delay', { delayMs: 1.5 })).to.throw(ChannelDefinitionError, "'delayMs' must be an integer");
    expect(() => channel('bad_delay', { delayMs: Number.NaN })).to.throw(ChannelDefinitionError, 'got NaN');
  });

  it("refuses an infinite due time in send(), takes a time before 1970 as due at once, and counts down to no infinite one", async () => {
    const pubsub = test.app.sequelize.pgpubsub;
    const Stored = channel<{ n: number }>('stored_delay');
    pubsub.register(Stored);
    const seen: number[] = [];
    pubsub.on(Stored, ({ payload }) => { seen.push(payload.n); });
    // Any role granted send() (docs/security.md's writer grants) could stop every listener's timers with one.
    for (const time of ['infinity', '-infinity', '10000-01-01']) {
      const error = await test.app.sequelize.query(`SELECT pgpubsub.send('stored_delay', '{"n": 0}', true, '${time}')`).then(() => null, (e: unknown) => e as Error);
      expect(error?.message, time).to.match(/^pgpubsub send: available_at must be a finite time no later than 9999-12-31T23:59:59\.999Z, got /);
    }
    // Stored another way (the owner's own INSERT): one at infinity is never due, one at -infinity is
    // due at once; neither troubles a listener.
    await test.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, available_at) VALUES ('stored_delay', '{"op": "NOTIFY", "payload": {"n": 9}}', 'infinity'),
      ('stored_delay', '{"op": "NOTIFY", "payload": {"n": 0}}', '-infinity')`);
    const errors: string[] = [];
    const listener = await pubsub.listen({ logger: { debug() {}, info() {}, warn() {}, error: (m) => { errors.push(m); } } });
    try {
      await pubsub.notify(Stored, { n: 1 }, { runAt: new Date(Date.UTC(1900, 0, 1)) });
      await pubsub.notify(Stored, { n: 2 }, { delayMs: 300 });
      await eventually(() => seen.length === 3, 'the three due processed', 10_000);
      // A drain that failed would be retried a second later, logging each time.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(seen.sort()).to.deep.equal([0, 1, 2]);
      expect(errors).to.deep.equal([]);
    } finally {
      await listener.stop();
    }
  });
});
