/**
 * The inbox (lib/relay/inbox.ts): database A's notifications, relayed into a real nats-server's
 * JetStream, run the callbacks of an app on database B exactly once: each effect once, a failing
 * callback retried by JetStream, a message that can never succeed recorded as failed and
 * terminated, and every message delivered again (a second consumer replays the stream) acknowledged
 * without running; the ids of messages that ran forgotten after the retention.
 */
import { expect } from 'chai';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import type { NatsServer } from '../dev/nats';
import { natsServerPerSuite } from './support/nats-per-suite';
import { BIN, ROOT, spawnProcess } from '../dev/processes';
import { NonRetryableError } from '../lib';
import type { Inbox } from '../lib/relay/inbox';
import { startInbox } from '../lib/relay/start-inbox';
import { type Relay, startRelay } from '../lib/relay/relay';
import type { App } from '../models/app';
import { type TestDatabase, testDatabase } from './support/hooks';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe('the inbox: callbacks on another database, fed from JetStream', function () {
  this.timeout(120_000);
  let nats: NatsServer;
  let a: TestDatabase;
  let b: TestDatabase;
  let producer: App;
  let consumer: App;
  const stops: Array<{ stop(): Promise<void> }> = [];

  const suite = natsServerPerSuite();
  beforeEach(async () => {
    nats = suite.server;
    a = await testDatabase('inbox producer');
    b = await testDatabase('inbox consumer');
    producer = openApp(a.url);
    consumer = openApp(b.url);
    await consumer.sequelize.query('CREATE TABLE ledger (author_id integer NOT NULL, name text NOT NULL, attempt integer NOT NULL)');
  });
  afterEach(async function () {
    for (const running of stops.splice(0).reverse()) await running.stop();
    await producer.sequelize.close();
    await consumer.sequelize.close();
    if (this.currentTest?.state === 'passed') {
      await a.drop();
      await b.drop();
    }
  });

  const rows = <T extends object>(app: App, sql: string) => app.sequelize.query<T>(sql, { type: QueryTypes.SELECT });

  it('runs each message once in B, retries a failing one, terminates one that can never succeed, and acknowledges a redelivered one without running it', async () => {
    consumer.sequelize.pgpubsub.on(consumer.Author, 'author_created', async ({ new: created }, { transaction, attempt }) => {
      const author = created!;
      if (author.name === 'poison') throw new NonRetryableError('this author can never be welcomed');
      if (author.name === 'flaky' && attempt === 1) throw new Error('the first try fails');
      await consumer.sequelize.query('INSERT INTO ledger (author_id, name, attempt) VALUES ($1, $2, $3)', { bind: [author.id, author.name, attempt], transaction });
    });
    const relay: Relay = await startRelay(producer.sequelize.pgpubsub, { nats: { servers: nats.url }, channels: ['author_created'], stream: 'INBOX1', subjectPrefix: 'inbox1', identity: 'a', logger: quiet });
    stops.push(relay);
    const lines: Array<{ event?: unknown; processed?: unknown }> = [];
    const capture = { ...quiet, debug: (_message: string, fields: Record<string, unknown> = {}) => lines.push(fields) };
    const inbox: Inbox = await startInbox(consumer.sequelize.pgpubsub, { nats: { servers: nats.url }, stream: 'INBOX1', subjectPrefix: 'inbox1', consumer: 'first', channels: ['author_created'], logger: capture });
    stops.push(inbox);

    await producer.sequelize.query("INSERT INTO authors (name) SELECT 'author ' || i FROM generate_series(1, 200) AS i");
    await producer.Author.create({ name: 'flaky' });
    await producer.Author.create({ name: 'poison' });
    await eventually(async () => (await rows<{ n: number }>(consumer, 'SELECT count(*)::int AS n FROM ledger'))[0].n === 201, 'every effect in B', 60_000);
    await eventually(async () => (await rows<{ n: number }>(consumer, 'SELECT count(*)::int AS n FROM pgpubsub.inbox WHERE failed_at IS NOT NULL'))[0].n === 1, 'the poison recorded', 30_000);

    const ids = (await rows<{ id: number }>(producer, "SELECT id FROM authors WHERE name <> 'poison' ORDER BY id")).map((row) => row.id);
    const ledger = await rows<{ author_id: number; name: string; attempt: number }>(consumer, 'SELECT author_id, name, attempt FROM ledger ORDER BY author_id');
    expect(ledger.map((row) => row.author_id), 'each effect once').to.deep.equal(ids);
    expect(ledger.find((row) => row.name === 'flaky')?.attempt, 'flaky ran on its second delivery').to.equal(2);
    const [failed] = await rows<{ channel: string; last_error: string; message_id: string }>(consumer, 'SELECT channel, last_error, message_id FROM pgpubsub.inbox WHERE failed_at IS NOT NULL');
    expect(failed.channel).to.equal('author_created');
    expect(failed.last_error).to.contain('this author can never be welcomed');
    expect(failed.message_id).to.match(/^a:pgpubsub:\d+$/);
    expect(inbox.stats.processed).to.equal(201);
    // The 200 delivered together ran in batches (one transaction each), not one at a time.
    expect(lines.filter((line) => line.event === 'batch').some((line) => Number(line.processed) > 1), JSON.stringify(lines.slice(0, 5))).to.equal(true);
    const status = await consumer.sequelize.pgpubsub.admin.status();
    expect(status.channels.find((c) => c.channel === 'author_created')).to.include({ inboxFailed: 1 });

    // A second consumer replays the whole stream: every message is one the inbox has, so nothing runs again.
    const replay = await startInbox(consumer.sequelize.pgpubsub, { nats: { servers: nats.url }, stream: 'INBOX1', subjectPrefix: 'inbox1', consumer: 'replay', channels: ['author_created'], logger: quiet });
    stops.push(replay);
    await eventually(() => replay.duplicates === 202, () => `every message acknowledged as a duplicate (${replay.duplicates})`, 30_000);
    expect(replay.stats.processed).to.equal(0);
    expect((await rows<{ n: number }>(consumer, 'SELECT count(*)::int AS n FROM ledger'))[0].n).to.equal(201);
  });

  it('kill -9 of `pgpubsub listen --from-nats` mid-callback, then a new one: each effect exactly once', async () => {
    const relay = await startRelay(producer.sequelize.pgpubsub, { nats: { servers: nats.url }, channels: ['author_created'], stream: 'INBOX2', subjectPrefix: 'inbox2', identity: 'a', logger: quiet });
    stops.push(relay);
    await producer.sequelize.query("INSERT INTO authors (name) SELECT 'author ' || i FROM generate_series(1, 1000) AS i");
    // Small batches (each commits 10 effects at once), so that the kill lands between commits and inside batches.
    const args = ['listen', '--worker', '--app', path.join('test', 'fixtures', 'inbox-app.ts'), '--from-nats', nats.url, '--stream', 'INBOX2', '--subject-prefix', 'inbox2',
      '--batch-size', '10', '--callback-concurrency', '4', '--timeout-ms', '1000', '--log-format', 'json'];
    const count = async () => (await rows<{ n: number }>(consumer, 'SELECT count(*)::int AS n FROM ledger'))[0].n;
    const first = spawnProcess(BIN, args, { DATABASE_URL: b.url, SLOW_MS: '20' }, ROOT);
    try {
      await eventually(async () => (await count()) >= 200, () => `the first inbox under way: ${first.describe()}`, 60_000);
    } finally {
      first.kill('SIGKILL');
      await first.exited;
    }
    expect(await count(), 'killed mid-stream').to.be.below(1000);
    const second = spawnProcess(BIN, args, { DATABASE_URL: b.url, SLOW_MS: '0' }, ROOT);
    try {
      await eventually(async () => (await count()) === 1000, () => `the second inbox finishing: ${second.describe()}`, 90_000);
      // Settled: what the killed process held was redelivered (after the ack wait) and ran once.
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } finally {
      const stopped = await second.stop(15_000);
      expect(stopped.code, second.describe()).to.equal(0);
    }
    const ids = (await rows<{ id: number }>(producer, 'SELECT id FROM authors ORDER BY id')).map((row) => row.id);
    const ledger = (await rows<{ author_id: number }>(consumer, 'SELECT author_id FROM ledger ORDER BY author_id')).map((row) => row.author_id);
    expect(ledger, 'each effect exactly once').to.deep.equal(ids);
  });

  it('forgets the ids of messages that ran longer ago than retentionMs, and keeps younger ones and failed ones', async () => {
    consumer.sequelize.pgpubsub.on(consumer.Author, 'author_created', async ({ new: created }, { transaction }) => {
      await consumer.sequelize.query('INSERT INTO ledger (author_id, name, attempt) VALUES ($1, $2, 1)', { bind: [created!.id, created!.name], transaction });
    });
    await consumer.sequelize.query(`INSERT INTO pgpubsub.inbox (message_id, channel, stream_seq, processed_at, failed_at, attempts, last_error) VALUES
      ('old:ran', 'author_created', 1, now() - interval '1 hour', NULL, 0, NULL),
      ('old:failed', 'author_created', 2, NULL, now() - interval '1 hour', 5, 'gave up'),
      ('young:ran', 'author_created', 3, now() + interval '1 hour', NULL, 0, NULL)`);
    const relay = await startRelay(producer.sequelize.pgpubsub, { nats: { servers: nats.url }, channels: ['author_created'], stream: 'INBOX3', subjectPrefix: 'inbox3', identity: 'a', logger: quiet });
    stops.push(relay);
    // Pruned every min(retentionMs, 1 hour): every 1.5 s here.
    const inbox = await startInbox(consumer.sequelize.pgpubsub, {
      nats: { servers: nats.url }, stream: 'INBOX3', subjectPrefix: 'inbox3', consumer: 'pruned', channels: ['author_created'], logger: quiet, retentionMs: 1500,
    });
    stops.push(inbox);
    await producer.sequelize.query("INSERT INTO authors (name) SELECT 'author ' || i FROM generate_series(1, 3) AS i");
    const ids = async () => (await rows<{ message_id: string }>(consumer, 'SELECT message_id FROM pgpubsub.inbox ORDER BY message_id')).map((row) => row.message_id);
    await eventually(async () => (await rows<{ n: number }>(consumer, 'SELECT count(*)::int AS n FROM ledger'))[0].n === 3, 'the three effects in B', 30_000);
    await eventually(async () => (await ids()).length === 2, async () => `the old id and the three that ran forgotten: ${(await ids()).join(', ')}`, 30_000);
    expect(await ids()).to.deep.equal(['old:failed', 'young:ran']);
  });
});
