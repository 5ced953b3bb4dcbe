/**
 * Exactly once end to end, through faults: producers write to database A while `pgpubsub relay`
 * moves the notifications into an R3 stream on a three-server JetStream cluster and
 * `pgpubsub listen --from-nats` runs a callback that appends to a ledger in database B. Meanwhile:
 * kill -9 of one NATS server of three; all NATS servers stopped for 20 s; kill -9 of the relay and
 * of the inbox. Every committed author lands in B's ledger exactly once; rolled-back writes never do.
 */
import { expect } from 'chai';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { type NatsServer, natsCluster, natsServerProblem } from '../dev/nats';
import { BIN, type ChildProcessHandle, ROOT, spawnProcess } from '../dev/processes';
import type { App } from '../models/app';
import { type TestDatabase, testDatabase } from './support/hooks';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('exactly once from database A through a JetStream cluster to database B, through faults', function () {
  this.timeout(300_000);
  let cluster: NatsServer[] = [];
  let a: TestDatabase;
  let b: TestDatabase;
  let producer: App;
  let consumer: App;
  const children: ChildProcessHandle[] = [];

  before(async function () {
    const problem = natsServerProblem();
    if (problem) throw new Error(problem);
    cluster = await natsCluster('chaos');
    a = await testDatabase('chaos producer');
    b = await testDatabase('chaos consumer');
    producer = openApp(a.url);
    consumer = openApp(b.url);
    await consumer.sequelize.query('CREATE TABLE ledger (author_id integer NOT NULL, name text NOT NULL, attempt integer NOT NULL)');
  });
  after(async function () {
    for (const child of children) if (!child.exit) child.kill('SIGKILL');
    await producer?.sequelize.close();
    await consumer?.sequelize.close();
    await Promise.all(cluster.map((server) => server.destroy()));
  });

  it('loses and duplicates nothing: kill -9 of a NATS server, all of them down for 20 s, kill -9 of the relay and of the inbox', async () => {
    const urls = cluster.map((server) => server.url).join(',');
    const relayArgs = ['relay', '--worker', '--nats', urls, '--channels', 'author_created', '--stream', 'CHAOS', '--subject-prefix', 'chaos', '--replicas', '3', '--identity', 'a', '--log-format', 'json'];
    const inboxArgs = ['listen', '--worker', '--app', path.join('test', 'fixtures', 'inbox-app.ts'), '--from-nats', urls, '--stream', 'CHAOS', '--subject-prefix', 'chaos', '--consumer', 'chaos',
      '--callback-concurrency', '4', '--timeout-ms', '2000', '--log-format', 'json'];
    const relay = () => {
      const child = spawnProcess(BIN, relayArgs, { DATABASE_URL: a.url }, ROOT);
      children.push(child);
      return child;
    };
    const inbox = () => {
      const child = spawnProcess(BIN, inboxArgs, { DATABASE_URL: b.url, SLOW_MS: '5' }, ROOT);
      children.push(child);
      return child;
    };
    const count = async (app: App, sql: string) => (await app.sequelize.query<{ n: number }>(sql, { type: QueryTypes.SELECT }))[0].n;
    const ledger = () => count(consumer, 'SELECT count(*)::int AS n FROM ledger');

    // Producers: 20 authors a statement, every 50 ms, and now and then a statement rolled back.
    let writing = true;
    let statements = 0;
    const writes = (async () => {
      while (writing) {
        statements++;
        if (statements % 10 === 0) {
          await producer.sequelize.transaction(async (transaction) => {
            await producer.sequelize.query("INSERT INTO authors (name) SELECT 'rolled back' FROM generate_series(1, 5)", { transaction });
            throw new Error('rolled back on purpose');
          }).catch(() => undefined);
        } else {
          await producer.sequelize.query(`INSERT INTO authors (name) SELECT 'author ${statements}.' || i FROM generate_series(1, 20) AS i`);
        }
        await sleep(50);
      }
    })();

    let relaying = relay();
    await relaying.event('relaying', 60_000);
    let consuming = inbox();
    await eventually(async () => (await ledger()) >= 200, () => `the first effects in B: ${consuming.describe()}`, 60_000);

    // kill -9 of one NATS server of three: the R3 stream keeps its quorum.
    await cluster[0].stop('SIGKILL');
    const before = await ledger();
    await eventually(async () => (await ledger()) >= before + 300, () => `effects go on with two NATS servers of three: ${relaying.describe()}`, 60_000);
    await cluster[0].start();

    // kill -9 of the relay and of the inbox, mid-work; new ones take over.
    relaying.kill('SIGKILL');
    consuming.kill('SIGKILL');
    await Promise.all([relaying.exited, consuming.exited]);
    relaying = relay();
    consuming = inbox();
    const afterKill = await ledger();
    await eventually(async () => (await ledger()) >= afterKill + 300, () => `effects go on after the kills: ${consuming.describe()}`, 60_000);

    // Every NATS server down for 20 s while the producers write: the rows wait in A.
    await Promise.all(cluster.map((server) => server.stop()));
    await sleep(20_000);
    await Promise.all(cluster.map((server) => server.start()));

    await sleep(2000);
    writing = false;
    await writes;
    const committed = await count(producer, "SELECT count(*)::int AS n FROM authors WHERE name <> 'rolled back'");
    expect(await count(producer, "SELECT count(*)::int AS n FROM authors WHERE name = 'rolled back'"), 'no rolled-back write is visible').to.equal(0);
    await eventually(async () => (await ledger()) >= committed, () => `every effect in B (${committed}):\n${relaying.describe()}\n${consuming.describe()}`, 120_000);
    await sleep(3000);
    for (const child of [relaying, consuming]) {
      const stopped = await child.stop(20_000);
      expect(stopped.code, child.describe()).to.equal(0);
    }

    const ids = (await producer.sequelize.query<{ id: number }>('SELECT id FROM authors ORDER BY id', { type: QueryTypes.SELECT })).map((row) => row.id);
    const effects = (await consumer.sequelize.query<{ author_id: number }>('SELECT author_id FROM ledger ORDER BY author_id', { type: QueryTypes.SELECT })).map((row) => row.author_id);
    expect(effects.length, 'as many effects as committed authors').to.equal(ids.length);
    expect(effects, 'each committed author exactly once').to.deep.equal(ids);
    expect(await count(producer, 'SELECT count(*)::int AS n FROM pgpubsub.notification'), 'nothing left in the outbox').to.equal(0);
    await a.drop();
    await b.drop();
  });
});
