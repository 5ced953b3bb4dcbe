/**
 * The listener's typed events (message:start/done with durations, drain:start/end, processed,
 * failed, reconnected), and the context filter meaning jsonb containment for stored notifications
 * and broadcasts alike.
 */
import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { type DrainEnd, type MessageDone, type MessageStart, channel } from '../lib';
import { jsonContains } from '../lib/listener/broadcasts';
import { installedObjects } from '../lib/db/catalog';
import { exampleAppPerTest } from './support/example-app-per-test';

describe('listener events', function () {
  this.timeout(30_000);
  const test = exampleAppPerTest();
  const { listen } = test;

  it('tells when each message starts and is done, with its duration and outcome, and when drains start and end', async () => {
    const Slow = channel<{ n: number }>('slow_events', { retry: { maxAttempts: 1 } });
    test.app.sequelize.pgpubsub.on(Slow, async ({ payload }) => {
      await sleep(20);
      if (payload.n === 2) throw new Error('two fails');
    });
    for (const n of [1, 2, 3]) await test.app.sequelize.pgpubsub.notify(Slow, { n });
    const listener = await listen({ recover: false, savepoints: 'always' });
    const starts: MessageStart[] = [];
    const dones: MessageDone[] = [];
    const drains: DrainEnd[] = [];
    let drainStarts = 0;
    const processed: string[] = [];
    listener.on('message:start', (message) => starts.push(message));
    listener.on('message:done', (message) => dones.push(message));
    listener.on('drain:start', () => { drainStarts++; });
    listener.on('drain:end', (drain) => drains.push(drain));
    listener.on('processed', (ids) => processed.push(...ids));
    // A handler that throws is logged, and never counts as the message's failure.
    listener.on('message:start', () => { throw new Error('a careless handler'); });
    await test.app.sequelize.pgpubsub.recover();
    await eventually(() => drains.some((drain) => drain.claimed === 3), 'the drain of the three');

    expect(starts.map((s) => s.attempt)).to.deep.equal([1, 1, 1]);
    expect(dones.map((d) => [d.ok, (d.error as Error | undefined)?.message])).to.deep.equal([[true, undefined], [false, 'two fails'], [true, undefined]]);
    for (const done of dones) {
      expect(done.channel).to.equal('slow_events');
      expect(done.id).to.match(/^\d+$/);
      expect(done.durationMs).to.be.at.least(19);
    }
    expect(processed).to.deep.equal([dones[0].id, dones[2].id]);
    expect(drainStarts).to.be.at.least(1);
    expect(drains.find((drain) => drain.claimed === 3)).to.include({ processed: 2, failed: 1 }).and.have.property('durationMs').above(50);

    if (Math.random() > 2) {
      // Typechecked, never run: event names and arguments are typed.
      // @ts-expect-error no such event
      listener.on('failde', () => {});
      // @ts-expect-error 'processed' gives ids, not a number
      listener.on('processed', (count: number) => count);
    }
  });

  it('gives each message its lag: from the producing transaction to its callbacks, by the server clock (null for a broadcast)', async () => {
    const Lagged = channel<{ n: number }>('lagged_events');
    const Live = channel<{ n: number }>('live_lag', { durable: false });
    test.app.sequelize.pgpubsub.on(Lagged, () => {});
    test.app.sequelize.pgpubsub.on(Live, () => {});
    const listener = await listen();
    const starts: MessageStart[] = [];
    listener.on('message:start', (message) => starts.push(message));
    // The producing transaction takes 400 ms to commit: the lag counts from its start.
    await test.app.sequelize.transaction(async (transaction) => {
      await test.app.sequelize.pgpubsub.notify(Lagged, { n: 1 }, { transaction });
      await sleep(400);
    });
    await test.app.sequelize.pgpubsub.notify(Live, { n: 2 });
    await eventually(() => starts.length === 2, 'both messages started');
    const stored = starts.find((start) => start.channel === 'lagged_events')!;
    expect(stored.lagMs).to.be.a('number').within(400, 5000);
    expect(starts.find((start) => start.channel === 'live_lag')!.lagMs).to.equal(null);
  });

  it('warns at start of each durable channel without a callback here, unless listen({ channels }) chose its channels', async () => {
    test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', () => {});
    const warned: unknown[] = [];
    const logger = { debug() {}, info() {}, warn: (_message: string, fields?: { event?: string; channel?: string }) => { if (fields?.event === 'no-callback') warned.push(fields.channel); }, error() {} };
    await listen({ logger });
    // post_reads is a broadcast: nothing stored waits for it.
    expect(warned.sort()).to.deep.equal(['child_changed', 'media_changed', 'post_deleted']);
    warned.length = 0;
    await listen({ logger, channels: ['author_created'] });
    expect(warned).to.deep.equal([]);
  });

  it('warns at start of each model channel it has a callback for but no installed trigger sends on, naming the commands that install it', async () => {
    test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', () => {});
    test.app.sequelize.pgpubsub.on(test.app.Post, 'post_deleted', () => {});
    // The library migrated, author_created's trigger not (dropped here): its inserts would never be recorded.
    for (const object of await installedObjects(test.app.sequelize)) {
      if (object.label?.channel === 'author_created' && object.table) await test.app.sequelize.query(`DROP TRIGGER "${object.name}" ON "${object.schema}"."${object.table}"`);
    }
    const warned: Array<{ message: string; channel?: string }> = [];
    const logger = { debug() {}, info() {}, warn: (message: string, fields?: { event?: string; channel?: string }) => { if (fields?.event === 'no-trigger') warned.push({ message, channel: fields.channel }); }, error() {} };
    await listen({ logger });
    expect(warned.map((w) => w.channel)).to.deep.equal(['author_created']);
    expect(warned[0].message).to.contain('npx pgpubsub migration:generate, then npx sequelize-cli db:migrate').and.to.contain('(public.authors)');
  });

  it('tells the reconnect attempt', async () => {
    test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', () => {});
    const listener = await listen({ reconnect: { minDelayMs: 10, maxDelayMs: 50 } });
    const reconnected = new Promise<{ attempt: number }>((resolve) => listener.once('reconnected', resolve));
    await test.app.sequelize.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgpubsub-listener' AND datname = current_database()", { type: QueryTypes.SELECT });
    expect((await reconnected).attempt).to.be.a('number').and.at.least(1);
  });

  it('filters broadcasts by jsonb containment, as it filters stored notifications', async () => {
    const Live = channel<{ n: number }>('live_filtered', { durable: false });
    const Stored = channel<{ n: number }>('stored_filtered');
    const seen: string[] = [];
    test.app.sequelize.pgpubsub.on(Live, ({ payload }) => { seen.push(`live ${payload.n}`); });
    test.app.sequelize.pgpubsub.on(Stored, ({ payload }) => { seen.push(`stored ${payload.n}`); });
    const contextFilter = { user: { id: 1 }, tags: ['b'] };
    await listen({ contextFilter });
    const contexts = [
      { user: { id: 1, role: 'admin' }, tags: ['a', 'b'], more: true }, // contains the filter
      { user: { id: 2 }, tags: ['b'] }, // another user
      { user: { id: 1 }, tags: ['a'] }, // no tag b
    ];
    for (const [n, context] of contexts.entries()) {
      for (const target of [Live, Stored]) {
        await test.app.sequelize.pgpubsub.withContext(context, (transaction) => test.app.sequelize.pgpubsub.notify(target, { n }, { transaction }));
      }
    }
    await eventually(() => seen.length >= 2, 'the matching notifications');
    await sleep(200);
    expect(seen.sort()).to.deep.equal(['live 0', 'stored 0']);
  });

  it('has jsonContains agree with PostgreSQL on what @> means', async () => {
    const cases: Array<[unknown, unknown]> = [
      [{ a: 1, b: { c: [1, 2, 3] } }, { b: { c: [3, 1] } }],
      [{ a: 1 }, { a: 1, b: null }],
      [{ a: null }, { a: null }],
      [{ a: [{ x: 1, y: 2 }, { x: 3 }] }, { a: [{ x: 3 }] }],
      [{ a: [1, 2] }, { a: [] }],
      [{ a: '1' }, { a: 1 }],
      [{ a: { b: 1 } }, { a: [] }],
      [{ a: 1.0 }, { a: 1 }],
      [{ a: true }, { a: true }],
      [{}, {}],
    ];
    for (const [value, pattern] of cases) {
      const [{ contains }] = await test.app.sequelize.query<{ contains: boolean }>('SELECT $1::jsonb @> $2::jsonb AS contains', {
        bind: [JSON.stringify(value), JSON.stringify(pattern)], type: QueryTypes.SELECT,
      });
      expect(jsonContains(value, pattern), `${JSON.stringify(value)} @> ${JSON.stringify(pattern)}`).to.equal(contains);
    }
  });
});
