/**
 * sequelize.pgpubsub.admin: the status of channels and listeners read from the database, and the
 * failed notifications looked at, retried (processed by a running listener) and purged.
 */
import { expect } from 'chai';
import os from 'node:os';
import { QueryTypes } from 'sequelize';
import { AdminUsageError, type Listener, NonRetryableError, channel } from '../lib';
import { eventually } from '../dev/eventually';
import { WELCOME } from '../models/callbacks';
import { exampleAppPerTest } from './support/example-app-per-test';
import { setTimeout as sleep } from 'node:timers/promises';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const Charge = channel<{ n: number }>('card_charge', { retry: { maxAttempts: 1 } });

describe('admin', function () {
  this.timeout(60_000);
  const listeners: Listener[] = [];
  /** Authors named 'bad…' and charges of n < 0 fail for good while `broken` holds. */
  let broken = true;
  const listen = async () => {
    const listener = await t.app.sequelize.pgpubsub.listen({ logger: quiet });
    listeners.push(listener);
    return listener;
  };
  const stored = async () => (await t.app.sequelize.query<{ id: string }>('SELECT id::text AS id FROM pgpubsub.notification ORDER BY id', { type: QueryTypes.SELECT })).map((row) => row.id);

  const t = exampleAppPerTest({
    async setup() {
      broken = true;
      t.app.sequelize.pgpubsub.register(Charge);
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', async ({ new: author }, { transaction }) => {
        if (broken && author!.name.startsWith('bad')) throw new NonRetryableError(`no e-mail for ${author!.name}`);
        await t.app.Post.create({ authorId: author!.id, content: WELCOME }, { transaction });
      });
      t.app.sequelize.pgpubsub.on(Charge, ({ payload }) => {
        if (broken && payload.n < 0) throw new Error(`card declined: ${payload.n}`);
      });
    },
    async cleanup() {
      await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
    },
  });

  it('tells per channel what is due, waiting and failed, rows on channels no code defines, and the live listeners', async () => {
    const { admin } = t.app.sequelize.pgpubsub;
    await t.app.Author.bulkCreate([{ name: 'Ann' }, { name: 'Bo' }]);
    await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload) VALUES ('renamed_away', '{}'), ('renamed_away', '{}')`);
    await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, available_at) VALUES ('card_charge', '{"op":"NOTIFY","payload":{"n":1},"context":{}}', now() + interval '1 hour')`);
    const before = await admin.status();
    expect(before.listeners).to.deep.equal([]);
    const byName = new Map(before.channels.map((c) => [c.channel, c]));
    expect(byName.get('author_created')).to.include({ defined: true, due: 2, waiting: 0, failed: 0, listeners: 0, draining: false });
    expect(byName.get('author_created')!.oldestDueAgeMs).to.be.a('number').and.at.least(0);
    expect(byName.get('renamed_away')).to.include({ defined: false, due: 2, listeners: 0 });
    expect(byName.get('card_charge')).to.include({ defined: true, due: 0, waiting: 1, oldestDueAgeMs: null });
    expect(byName.get('media_changed')).to.include({ defined: true, due: 0, waiting: 0, failed: 0 });

    const listener = await listen();
    await eventually(async () => (await t.app.Post.count()) === 2, 'the two posts');
    const during = await admin.status();
    expect(during.listeners).to.have.length(1);
    const [live] = during.listeners;
    // The channels it has callbacks for.
    expect(live.channels).to.deep.equal(['author_created', 'card_charge']);
    expect(live.holders).to.have.length(1);
    expect(live.since).to.be.instanceOf(Date);
    const [{ pid }] = await t.app.sequelize.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgpubsub-listener' AND datname = current_database()", { type: QueryTypes.SELECT });
    expect(live.backendPid).to.equal(pid);
    // What it reports of itself: this process; and, within a report interval (5 s), the lag of what it processed.
    expect(live).to.include({ host: os.hostname(), pid: process.pid });
    expect(live.startedAt).to.be.instanceOf(Date);
    expect(byName.get('author_created')!.recentLagMs).to.equal(null);
    await eventually(async () => typeof (await admin.status()).channels.find((c) => c.channel === 'author_created')!.recentLagMs === 'number', 'the reported lag', 15_000);
    expect(during.channels.find((c) => c.channel === 'author_created')).to.include({ due: 0, listeners: 1 });
    expect(during.channels.find((c) => c.channel === 'renamed_away')).to.include({ due: 2, listeners: 0 });

    await listener.stop();
    listeners.splice(0);
    expect((await admin.status()).listeners).to.deep.equal([]);
  });

  it('lists and shows failed notifications, retries them into a running listener, and purges them', async () => {
    const { admin } = t.app.sequelize.pgpubsub;
    await listen();
    await t.app.Author.bulkCreate([{ name: 'good' }, { name: 'bad Bea', userId: 7 }]);
    await t.app.sequelize.pgpubsub.notify(Charge, { n: -5 });
    await t.app.sequelize.pgpubsub.notify(Charge, { n: 3 });
    await eventually(async () => (await admin.failed()).length === 2, 'two failed notifications');

    const failed = await admin.failed();
    expect(failed.map((f) => f.channel).sort()).to.deep.equal(['author_created', 'card_charge']);
    expect(await admin.failed({ channel: 'card_charge' })).to.have.length(1);
    expect(await admin.failed({ since: new Date(Date.now() + 60_000) })).to.deep.equal([]);
    const bea = failed.find((f) => f.channel === 'author_created')!;
    expect(bea).to.include({ attempts: 1 });
    expect(bea.lastError).to.contain('no e-mail for bad Bea');
    expect(bea.failedAt).to.be.instanceOf(Date);

    const detail = (await admin.failedOne(bea.id))!;
    expect(detail).to.include({ op: 'INSERT', old: null, decodeError: null });
    // By attribute name, as the model has them (user_id is userId).
    expect(detail.new).to.include({ name: 'bad Bea', userId: 7 });
    const charge = (await admin.failedOne(failed.find((f) => f.channel === 'card_charge')!.id))!;
    expect(charge).to.include({ op: 'NOTIFY', new: null });
    expect(charge.payload).to.deep.equal({ n: -5 });
    expect(await admin.failedOne('999999')).to.equal(null);

    // Fixed: a retry makes it due with fresh attempts and wakes the listener, which processes it.
    broken = false;
    expect(await admin.retry({ ids: [bea.id] })).to.deep.equal([bea.id]);
    await eventually(async () => (await t.app.Post.count()) === 2, "Bea's post, after the retry");
    expect(await stored()).to.deep.equal([charge.id]);

    expect(await admin.purge({ failedBefore: new Date(Date.now() + 1000) })).to.deep.equal([charge.id]);
    expect(await stored()).to.deep.equal([]);
    expect(await admin.retry({ all: true })).to.deep.equal([]);
    const refused = await admin.purge({ ids: ['12; DROP TABLE authors'] }).then(() => null, (e: Error) => e);
    expect(refused).to.be.instanceOf(AdminUsageError);
    expect(refused!.message).to.contain('12; DROP TABLE authors');
  });

  it('pauses a channel for every listener, through a restart, and drains it on resume', async () => {
    const { admin } = t.app.sequelize.pgpubsub;
    const first = await listen();
    expect(await admin.pause('author_created')).to.equal(true);
    expect(await admin.pause('author_created'), 'paused already').to.equal(false);
    await t.app.Author.bulkCreate([{ name: 'A' }, { name: 'B' }, { name: 'C' }]);
    await t.app.sequelize.pgpubsub.notify(Charge, { n: 1 });
    // The other channel goes on.
    await eventually(async () => (await admin.status()).channels.find((c) => c.channel === 'card_charge')!.due === 0, 'the charge processed');
    await sleep(1500);
    expect(await t.app.Post.count(), 'nothing claimed while paused').to.equal(0);
    expect((await admin.status()).channels.find((c) => c.channel === 'author_created')).to.include({ paused: true, due: 3, listeners: 1 });

    // A listener started later reads the pause from the database.
    await first.stop();
    listeners.splice(0);
    await listen();
    await sleep(1500);
    expect(await t.app.Post.count(), 'nothing claimed after a restart either').to.equal(0);

    expect(await admin.resume('author_created')).to.equal(true);
    await eventually(async () => (await t.app.Post.count()) === 3, 'the three posts after the resume', 5_000);
    expect(await admin.resume('author_created'), 'not paused').to.equal(false);
    expect((await admin.status()).channels.find((c) => c.channel === 'author_created')).to.include({ paused: false, due: 0 });
    const refused = await admin.pause('').then(() => null, (e: Error) => e);
    expect(refused).to.be.instanceOf(AdminUsageError);
  });

  it('purges failures older than failedRetentionMs when a listener starts, keeping the recent ones', async () => {
    await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at)
      SELECT 'card_charge', '{"op":"NOTIFY","payload":{"n":-1},"context":{}}', 1, 'Error: old', now() - interval '2 days' FROM generate_series(1, 2500)`);
    await t.app.sequelize.pgpubsub.notify(Charge, { n: -2 });
    const lines: Array<Record<string, unknown>> = [];
    const logger = { ...quiet, info: (_: string, fields?: Record<string, unknown>) => { if (fields) lines.push(fields); } };
    listeners.push(await t.app.sequelize.pgpubsub.listen({ logger, failedRetentionMs: 86_400_000 }));
    await eventually(async () => (await t.app.sequelize.pgpubsub.admin.failed({ limit: 5000 })).length === 1, 'only the recent failure left');
    const [left] = await t.app.sequelize.pgpubsub.admin.failed();
    expect(left.lastError).to.contain('card declined: -2');
    await eventually(() => lines.some((fields) => fields.event === 'failed-purged'), 'the purge logged');
    expect(lines.find((fields) => fields.event === 'failed-purged')).to.include({ count: 2500 });
    const refused = await t.app.sequelize.pgpubsub.listen({ logger: quiet, failedRetentionMs: -1 }).then(() => null, (e: Error) => e);
    expect(refused?.message).to.contain('failedRetentionMs must be a positive integer');
  });
});
