/**
 * Start and stop in a tight loop while messages flow (what pg-boss and graphile-worker test as
 * start/stop stress): listeners with their metrics, in this process, and `pgpubsub listen` under
 * the supervisor with its metrics port. No row lost or run twice, no connection or timer left.
 */
import { expect } from 'chai';
import { QueryTypes } from 'sequelize';
import { setTimeout as sleep } from 'node:timers/promises';
import { LISTENER_APPLICATION_NAME } from '../lib/listener/options';
import { WELCOME } from '../models/callbacks';
import { eventually } from '../dev/eventually';
import { ROOT, startListen } from '../dev/processes';
import { exampleAppPerTest } from './support/example-app-per-test';
import path from 'node:path';

const EXAMPLE_APP = path.join(ROOT, 'test', 'fixtures', 'example-app.ts');
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe('start/stop stress', function () {
  this.timeout(180_000);
  const t = exampleAppPerTest();

  /** Inserts authors in small transactions until stopped; resolves to how many. */
  const produce = () => {
    let going = true;
    let made = 0;
    const done = (async () => {
      while (going) {
        await t.app.Author.bulkCreate(Array.from({ length: 5 }, (_, i) => ({ name: `a ${made + i}` })));
        made += 5;
        await sleep(10);
      }
      return made;
    })();
    return { stop: async () => { going = false; return done; } };
  };
  const processedOnce = async (authors: number) => {
    await eventually(async () => (await t.app.Post.count()) >= authors, `the ${authors} authors' posts`, 60_000, 100);
    const twice = await t.app.sequelize.query('SELECT author_id FROM posts GROUP BY 1 HAVING count(*) > 1', { type: QueryTypes.SELECT });
    expect(twice, 'no author processed twice').to.deep.equal([]);
    expect(await t.app.Post.count()).to.equal(authors);
  };
  const listenerConnections = async () => (await t.app.sequelize.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', { bind: [LISTENER_APPLICATION_NAME], type: QueryTypes.SELECT },
  ))[0].n;
  const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;

  it('starts and stops a listener with its metrics 30 times while rows flow: each processed once, nothing left open', async () => {
    t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', async ({ new: author }, { transaction }) => {
      await t.app.Post.create({ authorId: author!.id, content: WELCOME }, { transaction });
    });
    const timersBefore = timers();
    const producer = produce();
    for (let round = 0; round < 30; round++) {
      const metrics = t.app.sequelize.pgpubsub.metrics();
      const listener = await t.app.sequelize.pgpubsub.listen({ logger: quiet, concurrency: 1 + (round % 3) });
      const unobserve = metrics.observe(listener);
      await sleep(Math.random() * 60);
      unobserve();
      await listener.stop();
    }
    const authors = await producer.stop();
    expect(await listenerConnections(), 'LISTEN connections left open').to.equal(0);
    const last = await t.app.sequelize.pgpubsub.listen({ logger: quiet });
    try {
      await processedOnce(authors);
    } finally {
      await last.stop();
    }
    expect(timers() - timersBefore, 'timers left running').to.be.at.most(2);
  });

  it('starts and stops pgpubsub listen with two workers and a metrics port 5 times while rows flow: each processed once, each exit 0', async () => {
    const producer = produce();
    for (let round = 0; round < 5; round++) {
      const listener = startListen(t.db.url, ['--processes', '2', '--metrics-port', '0', '--app', EXAMPLE_APP]);
      await eventually(() => listener.listeningWorkers().length >= 1, 'a worker to listen', 60_000);
      await sleep(Math.random() * 500);
      listener.kill('SIGTERM');
      expect((await listener.exited).code, listener.describe()).to.equal(0);
    }
    const authors = await producer.stop();
    await eventually(async () => (await listenerConnections()) === 0, 'no LISTEN connection left', 10_000);
    const last = startListen(t.db.url, ['--worker', '--app', EXAMPLE_APP]);
    try {
      await processedOnce(authors);
    } finally {
      last.kill('SIGTERM');
      await last.exited;
    }
  });
});
