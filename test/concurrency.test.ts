/**
 * concurrency: several claim transactions at once in one listener, each on its own pool
 * connection, every notification still processed exactly once; the pool checked for room.
 */
import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { type Listener, channel } from '../lib';
import type { App } from '../models/app';
import { type TestDatabase, testDatabase } from './support/hooks';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe('concurrency', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  const apps: App[] = [];
  const listeners: Listener[] = [];
  const open = (options: Parameters<typeof openApp>[1] = {}) => {
    const app = openApp(db.url, options);
    apps.push(app);
    return app;
  };

  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
  });
  afterEach(async function () {
    await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
    for (const app of apps.splice(0)) await app.sequelize.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('runs callbacks that wait on the network in several claim transactions at once, each notification once', async () => {
    const app = open({ pool: { max: 6 } });
    const Calls = channel<{ n: number }>('remote_calls');
    let inFlight = 0;
    let most = 0;
    const seen: number[] = [];
    app.sequelize.pgpubsub.on(Calls, async ({ payload }, { transaction }) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await sleep(30); // an HTTP call
      await app.Author.create({ name: `call ${payload.n}` }, { transaction });
      seen.push(payload.n);
      inFlight--;
    });
    await app.sequelize.transaction(async (transaction) => {
      for (let n = 0; n < 60; n++) await app.sequelize.pgpubsub.notify(Calls, { n }, { transaction });
    });
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet, concurrency: 4, batchSize: 5 });
    listeners.push(listener);
    await eventually(async () => seen.length === 60 && listener.stats.processed === 60, 'every call', 30_000);
    expect(most, 'callbacks in flight at once').to.equal(4);
    expect([...new Set(seen)].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 60 }, (_, n) => n));
    const [{ authors, stored }] = await app.sequelize.query<{ authors: number; stored: number }>(
      "SELECT (SELECT count(DISTINCT name) FROM authors)::int AS authors, (SELECT count(*) FROM pgpubsub.notification WHERE channel = 'remote_calls')::int AS stored",
      { type: QueryTypes.SELECT });
    expect({ authors, stored }).to.deep.equal({ authors: 60, stored: 0 });
  });

  it('keeps a failing message to itself with concurrency: the others commit once, it is retried', async () => {
    const app = open({ pool: { max: 4 } });
    const Jobs = channel<{ n: number }>('concurrent_jobs', { retry: { maxAttempts: 2, backoffMs: 20, maxBackoffMs: 20 } });
    const runs = new Map<number, number>();
    app.sequelize.pgpubsub.on(Jobs, async ({ payload }, { transaction, attempt }) => {
      runs.set(payload.n, (runs.get(payload.n) ?? 0) + 1);
      await app.Author.create({ name: `job ${payload.n} attempt ${attempt}` }, { transaction });
      if (payload.n === 7 && attempt === 1) throw new Error('job 7 fails once');
    });
    for (let n = 0; n < 20; n++) await app.sequelize.pgpubsub.notify(Jobs, { n });
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet, concurrency: 3, batchSize: 2, savepoints: 'always' });
    listeners.push(listener);
    await eventually(async () => listener.stats.processed === 20, 'every job');
    const names = (await app.Author.findAll()).map((author) => author.name).sort();
    expect(names).to.have.length(20);
    expect(names).to.include('job 7 attempt 2').and.not.include('job 7 attempt 1');
    expect(runs.get(7)).to.equal(2);
  });

  it("runs a batch's callbacks at once with callbackConcurrency, and redoes the batch one at a time when one throws", async () => {
    const app = open();
    const Calls = channel<{ n: number }>('batch_calls', { retry: { maxAttempts: 2, backoffMs: 10, maxBackoffMs: 10 } });
    let inFlight = 0;
    let most = 0;
    const hooks: number[] = [];
    app.sequelize.pgpubsub.on(Calls, async ({ payload }, { transaction, attempt, afterCommit }) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await sleep(30);
      inFlight--;
      await app.Author.create({ name: `call ${payload.n} attempt ${attempt}` }, { transaction });
      afterCommit(() => { hooks.push(payload.n); });
      if (payload.n === 13 && attempt === 1) throw new Error('13 fails once');
    });
    await app.sequelize.transaction(async (transaction) => {
      for (let n = 0; n < 40; n++) await app.sequelize.pgpubsub.notify(Calls, { n }, { transaction });
    });
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet, batchSize: 20, callbackConcurrency: 10 });
    listeners.push(listener);
    await eventually(async () => listener.stats.processed === 40, 'every call', 30_000);
    expect(most, 'callbacks in flight at once').to.equal(10);
    const names = (await app.Author.findAll()).map((author) => author.name);
    expect(names).to.have.length(40);
    expect(names).to.include('call 13 attempt 2').and.not.include('call 13 attempt 1');
    expect(hooks.sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 40 }, (_, n) => n));
    const refused = await app.sequelize.pgpubsub.listen({ logger: quiet, callbackConcurrency: 5, savepoints: 'always' }).then(() => null, (error: Error) => error);
    expect(refused?.message).to.match(/callbackConcurrency runs a batch's callbacks at once only without savepoints/);
  });

  it('refuses a concurrency its Sequelize pool has no room for, saying what to set', async () => {
    const app = open({ pool: { max: 3 } });
    app.sequelize.pgpubsub.on(app.Author, 'author_created', () => {});
    const refused = await app.sequelize.pgpubsub.listen({ logger: quiet, concurrency: 3 }).then(() => null, (error: Error) => error);
    expect(refused?.message).to.equal("listen: concurrency 3 needs a Sequelize pool of at least 4 connections (one per claim transaction, and one for the listener's other queries), "
      + "but this one's pool.max is 3. Set pool: { max: 4 } or more in the Sequelize options, or lower concurrency");
    // Every problem at once, typos included, with the problems listed on the error.
    const many = await app.sequelize.pgpubsub.listen({ logger: quiet, batchsize: 10, savepoints: 'sometimes', heartbeatMs: 0 } as never)
      .then(() => null, (error: Error & { problems?: string[] }) => error);
    expect(many?.message).to.match(/^listen: 3 invalid options:\n {2}- /);
    expect(many?.problems).to.deep.equal([
      "listen: unknown option 'batchsize' (known: channels, batchSize, concurrency, callbackConcurrency, recover, contextFilter, heartbeatMs, savepoints, timeoutMs, reconnect, listenConnection, logger, beforeRunningAlone, failedRetentionMs, cleanupWarnAfterMs)",
      'heartbeatMs must be a positive integer (milliseconds), got 0',
      "savepoints must be 'on-failure' or 'always', got \"sometimes\"",
    ]);
    for (const concurrency of [0, 1.5, -1]) {
      const bad = await app.sequelize.pgpubsub.listen({ logger: quiet, concurrency }).then(() => null, (error: Error) => error);
      expect(bad?.message, String(concurrency)).to.match(/concurrency must be a positive integer/);
    }
  });
});
