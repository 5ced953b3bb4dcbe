/**
 * The relay (lib/relay/relay.ts) against a real nats-server with JetStream: every stored
 * notification reaches the stream once, with its de-duplication id and headers; rolled-back writes
 * publish nothing; a relay killed with kill -9 mid-drain and started again leaves the stream with
 * each notification exactly once (the republished copies dropped by the duplicate window); NATS
 * stopped while producers write loses nothing and charges nothing: the rows wait in PostgreSQL.
 */
import { expect } from 'chai';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import net from 'node:net';
import path from 'node:path';
import { DataTypes, QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import type { NatsServer } from '../dev/nats';
import { natsServerPerSuite } from './support/nats-per-suite';
import { BIN, type ChildProcessHandle, ROOT, spawnProcess } from '../dev/processes';
import { migrateApp, openApp } from '../dev/example-app';
import { createEmptyDatabase, startEmbedded } from '../dev/postgres';
import { sample } from '../dev/prometheus';
import { type Relay, startRelay } from '../lib/relay/relay';
import { emptyDatabase } from './support/hooks';
import { exampleAppPerTest } from './support/example-app-per-test';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

interface Relayed { msgId: string; channel: string; op: string; id: string; body: { op: string; new: { id: number; name: string } } }

/** Every message of `stream`, in stream order. */
async function streamMessages(url: string, stream: string): Promise<Relayed[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const total = (await jsm.streams.info(stream)).state.messages;
    const consumer = await jetstream(nc).consumers.get(stream);
    const seen: Relayed[] = [];
    while (seen.length < total) {
      const batch = await consumer.fetch({ max_messages: Math.min(1000, total - seen.length), expires: 5000 });
      for await (const message of batch) {
        seen.push({
          msgId: message.headers?.get('Nats-Msg-Id') ?? '',
          channel: message.headers?.get('Pgpubsub-Channel') ?? '',
          op: message.headers?.get('Pgpubsub-Op') ?? '',
          id: message.headers?.get('Pgpubsub-Id') ?? '',
          body: message.json(),
        });
      }
    }
    return seen;
  } finally {
    await nc.close();
  }
}

/** Deletes a stream if it is there (the examples use the default one, each from the start). */
async function dropStream(url: string, stream: string): Promise<void> {
  const nc = await connect({ servers: url });
  try {
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => false);
  } finally {
    await nc.close();
  }
}

describe('relay to NATS JetStream', function () {
  this.timeout(120_000);
  let nats: NatsServer;
  const t = exampleAppPerTest();
  const relays: Relay[] = [];
  const suite = natsServerPerSuite();
  beforeEach(() => {
    nats = suite.server;
  });
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
    if (!nats.running) await nats.start();
  });

  const stored = async () => (await t.app.sequelize.query<{ n: number }>("SELECT count(*)::int AS n FROM pgpubsub.notification WHERE channel = 'author_created'", { type: QueryTypes.SELECT }))[0].n;
  const authorIds = async () => (await t.app.sequelize.query<{ id: number }>('SELECT id FROM authors ORDER BY id', { type: QueryTypes.SELECT })).map((row) => row.id);
  const insertAuthors = (n: number, from = 0) => t.app.sequelize.query(
    `INSERT INTO authors (name) SELECT 'author ' || (i + ${from}) FROM generate_series(1, ${n}) AS i`);

  it('publishes every stored notification once, with its id, headers and payload, and nothing of a rolled-back write', async () => {
    const stream = 'RELAY_ONE';
    const relay = await startRelay(t.app.sequelize.pgpubsub, { nats: { servers: nats.url }, channels: ['author_created'], stream, subjectPrefix: 'one', identity: 'db1', logger: quiet });
    relays.push(relay);
    expect(relay.stream).to.include({ name: stream });
    await insertAuthors(300);
    await t.app.sequelize.transaction(async (transaction) => {
      await t.app.Author.create({ name: 'never' }, { transaction });
      await transaction.rollback();
    }).catch(() => undefined);
    await eventually(async () => (await stored()) === 0, 'the notifications relayed and deleted', 30_000);
    const messages = await streamMessages(nats.url, stream);
    const ids = await authorIds();
    expect(messages).to.have.length(300);
    expect(new Set(messages.map((m) => m.msgId)).size).to.equal(300);
    expect(messages.every((m) => m.msgId === `db1:pgpubsub:${m.id}`)).to.equal(true);
    expect(messages.every((m) => m.channel === 'author_created' && m.op === 'INSERT' && m.body.op === 'INSERT')).to.equal(true);
    expect(messages.map((m) => m.body.new.id).sort((a, b) => a - b)).to.deep.equal(ids);
    expect(messages.some((m) => m.body.new.name === 'never')).to.equal(false);
    expect(relay.stats.processed).to.equal(300);
    expect(relay.relayStats.duplicates).to.equal(0);
  });

  it('charges a message the stream refuses for its size, as a failing callback is, and relays the rest; status lists the relay', async () => {
    const stream = 'RELAY_BIG';
    const relay = await startRelay(t.app.sequelize.pgpubsub, {
      nats: { servers: nats.url }, channels: ['author_created'], stream, subjectPrefix: 'big', identity: 'db1', logger: quiet,
    });
    relays.push(relay);
    const status = await t.app.sequelize.pgpubsub.admin.status();
    expect(status.listeners.map((listener) => listener.channels)).to.deep.include(['author_created']);
    await t.app.sequelize.query("INSERT INTO authors (name) SELECT CASE WHEN i = 3 THEN repeat('x', 1100000) ELSE 'small ' || i END FROM generate_series(1, 5) AS i");
    await eventually(async () => (await stored()) === 1, 'the four small ones relayed', 30_000);
    const [big] = await t.app.sequelize.query<{ attempts: number; last_error: string }>('SELECT attempts, last_error FROM pgpubsub.notification', { type: QueryTypes.SELECT });
    expect(big.attempts).to.equal(1);
    expect(big.last_error).to.contain('max_payload size exceeded');
    const messages = await streamMessages(nats.url, stream);
    expect(messages.map((m) => m.body.new.name).sort()).to.deep.equal(['small 1', 'small 2', 'small 4', 'small 5']);
  });

  it("charges a message the stream itself refuses (over its max_msg_size), and relays the rest; refuses a coalescing channel", async () => {
    const nc = await connect({ servers: nats.url });
    try {
      await (await jetstreamManager(nc)).streams.add({ name: 'RELAY_SMALL', subjects: ['small.>'], max_msg_size: 2000 });
    } finally {
      await nc.close();
    }
    const relay = await startRelay(t.app.sequelize.pgpubsub, { nats: { servers: nats.url }, channels: ['author_created'], stream: 'RELAY_SMALL', subjectPrefix: 'small', identity: 'db1', logger: quiet });
    relays.push(relay);
    await t.app.sequelize.query("INSERT INTO authors (name) SELECT CASE WHEN i = 2 THEN repeat('y', 3000) ELSE 'fits ' || i END FROM generate_series(1, 4) AS i");
    await eventually(async () => (await stored()) === 1, 'the three that fit relayed', 30_000);
    const [refused] = await t.app.sequelize.query<{ attempts: number; last_error: string }>('SELECT attempts, last_error FROM pgpubsub.notification', { type: QueryTypes.SELECT });
    expect(refused.attempts).to.equal(1);
    expect(refused.last_error).to.contain('JetStreamApiError');
    expect((await streamMessages(nats.url, 'RELAY_SMALL')).map((m) => m.body.new.name).sort()).to.deep.equal(['fits 1', 'fits 3', 'fits 4']);

    t.app.sequelize.define('Folded', { id: { type: DataTypes.INTEGER, primaryKey: true } }, {
      tableName: 'folded', timestamps: false, pgpubsub: { channels: { folded_changed: { events: ['update'], ordering: 'row', coalesce: true } } },
    });
    const error = await startRelay(t.app.sequelize.pgpubsub, { nats: { servers: nats.url }, channels: ['folded_changed'], logger: quiet }).catch((e: Error) => e);
    expect(String(error)).to.contain("relay: channel 'folded_changed' coalesces updates");
  });

  it('republishes a batch whose commit failed after JetStream took it, and the stream drops the copies', async () => {
    const stream = 'RELAY_COMMIT';
    // The first commit that deletes relayed rows fails (a sequence is not rolled back with it, so only the first).
    await t.app.sequelize.query(`
      CREATE SEQUENCE fail_once;
      CREATE FUNCTION fail_commit_once() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('public.fail_once') = 1 THEN RAISE EXCEPTION 'the first commit fails'; END IF;
        RETURN NULL;
      END $$;
      CREATE CONSTRAINT TRIGGER fail_commit_once AFTER DELETE ON pgpubsub.notification DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION fail_commit_once();`);
    await insertAuthors(100);
    const relay = await startRelay(t.app.sequelize.pgpubsub, {
      nats: { servers: nats.url }, channels: ['author_created'], stream, subjectPrefix: 'commit', identity: 'db1', logger: quiet, batchSize: 100,
    });
    relays.push(relay);
    const metrics = t.app.sequelize.pgpubsub.metrics({ database: false });
    metrics.observe(relay);
    await eventually(async () => (await stored()) === 0, 'relayed after the failed commit', 30_000);
    expect(relay.relayStats.duplicates, 'the batch published twice').to.equal(100);
    const text = await metrics.text();
    expect(sample(text, 'pgpubsub_relay_duplicates_total'), text).to.equal(100);
    expect(sample(text, 'pgpubsub_relay_nats_connected'), text).to.equal(1);
    const messages = await streamMessages(nats.url, stream);
    expect(messages.map((m) => m.body.new.id).sort((a, b) => a - b)).to.deep.equal(await authorIds());
    const charged = await t.app.sequelize.query<{ n: number }>('SELECT count(*)::int AS n FROM pgpubsub.notification', { type: QueryTypes.SELECT });
    expect(charged[0].n).to.equal(0);
  });

  it("never charges a slow acknowledgement: a relay's time limit is at least its publish timeout, whatever the listen option or the channel says", async () => {
    // NATS behind a proxy that holds every byte it sends back for 1.5 s while `slow` is set.
    let slow = false;
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(new URL(nats.url).port), '127.0.0.1');
      sockets.add(client).add(upstream);
      client.on('data', (chunk) => upstream.write(chunk));
      upstream.on('data', (chunk) => (slow ? setTimeout(() => client.destroyed || client.write(chunk), 1500) : client.write(chunk)));
      const close = () => { client.destroy(); upstream.destroy(); };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const relay = await startRelay(t.app.sequelize.pgpubsub, {
        nats: { servers: `nats://127.0.0.1:${(proxy.address() as net.AddressInfo).port}` }, channels: ['author_created'], stream: 'RELAY_SLOW', subjectPrefix: 'slow',
        identity: 'db1', logger: quiet, timeoutMs: 300, publishTimeoutMs: 4000,
      });
      relays.push(relay);
      slow = true;
      await insertAuthors(20);
      await eventually(async () => (await stored()) === 0, 'relayed through the slow acknowledgements', 30_000);
      expect(relay.stats.failed, 'no message charged for NATS being slow').to.equal(0);
      expect(relay.stats.processed).to.equal(20);
      expect((await streamMessages(nats.url, 'RELAY_SLOW')).map((m) => m.body.new.id).sort((a, b) => a - b)).to.deep.equal(await authorIds());
    } finally {
      for (const socket of sockets) socket.destroy();
      proxy.close();
    }
  });

  it("keeps each row's order on the stream for a channel ordered by row, with two relays claiming at once", async () => {
    const stream = 'RELAY_ORDER';
    for (let i = 0; i < 2; i++) {
      relays.push(await startRelay(t.app.sequelize.pgpubsub, {
        nats: { servers: nats.url }, channels: ['media_changed'], stream, subjectPrefix: 'order', identity: 'db1', logger: quiet, batchSize: 7,
      }));
    }
    await t.app.sequelize.query("INSERT INTO media (key, name) SELECT 'k' || i, 'k' || i || ' v0' FROM generate_series(1, 20) AS i");
    for (let version = 1; version < 10; version++) {
      await t.app.sequelize.query(`UPDATE media SET name = key || ' v${version}'`);
    }
    const storedMedia = async () => (await t.app.sequelize.query<{ n: number }>("SELECT count(*)::int AS n FROM pgpubsub.notification WHERE channel = 'media_changed'", { type: QueryTypes.SELECT }))[0].n;
    await eventually(async () => (await storedMedia()) === 0, 'every change relayed', 30_000);
    const messages = await streamMessages(nats.url, stream);
    expect(messages).to.have.length(200);
    const byKey = new Map<string, string[]>();
    for (const message of messages) {
      const row = (message.body as unknown as { new: { key: string; name: string } }).new;
      byKey.set(row.key, [...(byKey.get(row.key) ?? []), row.name]);
    }
    expect(byKey.size).to.equal(20);
    for (const [key, names] of byKey) expect(names, key).to.deep.equal(Array.from({ length: 10 }, (_, v) => `${key} v${v}`));
  });

  it('keeps the rows in PostgreSQL, uncharged, while NATS is down, and relays them once it is back', async () => {
    const stream = 'RELAY_DOWN';
    const relay = await startRelay(t.app.sequelize.pgpubsub, {
      nats: { servers: nats.url }, channels: ['author_created'], stream, subjectPrefix: 'down', identity: 'db1', logger: quiet, publishTimeoutMs: 1000,
    });
    relays.push(relay);
    await insertAuthors(50);
    await eventually(async () => (await stored()) === 0, 'the first rows relayed', 30_000);
    await nats.stop();
    await insertAuthors(200, 50);
    // A few drains fail meanwhile, each rolled back: nothing is charged.
    await eventually(() => relay.drainFailures >= 2, 'drains failing while NATS is down', 30_000);
    expect(await stored()).to.equal(200);
    const charged = await t.app.sequelize.query<{ n: number }>('SELECT count(*)::int AS n FROM pgpubsub.notification WHERE attempts > 0 OR failed_at IS NOT NULL', { type: QueryTypes.SELECT });
    expect(charged[0].n).to.equal(0);
    await nats.start();
    await eventually(async () => (await stored()) === 0, 'the rows relayed once NATS is back', 60_000);
    const messages = await streamMessages(nats.url, stream);
    expect(messages.map((m) => m.body.new.id).sort((a, b) => a - b)).to.deep.equal(await authorIds());
  });

  it('kill -9 of `pgpubsub relay` mid-drain, then a new one: each notification in the stream exactly once', async () => {
    const stream = 'RELAY_KILLED';
    await insertAuthors(20_000);
    const args = ['relay', '--worker', '--nats', nats.url, '--channels', 'author_created', '--stream', stream, '--subject-prefix', 'killed', '--identity', 'db1', '--log-format', 'json', '--batch-size', '200'];
    const first = spawnProcess(BIN, args, { DATABASE_URL: t.db.url }, ROOT);
    try {
      await eventually(async () => (await stored()) < 15_000, () => `the first relay under way: ${first.describe()}`, 60_000);
    } finally {
      first.kill('SIGKILL');
      await first.exited;
    }
    const left = await stored();
    expect(left, 'killed mid-drain').to.be.greaterThan(0);
    const second = spawnProcess(BIN, args, { DATABASE_URL: t.db.url }, ROOT);
    try {
      await eventually(async () => (await stored()) === 0, () => `the second relay finishing: ${second.describe()}`, 90_000);
    } finally {
      const stopped = await second.stop(15_000);
      expect(stopped.code, second.describe()).to.equal(0);
    }
    const messages = await streamMessages(nats.url, stream);
    const ids = await authorIds();
    expect(new Set(messages.map((m) => m.msgId)).size, 'no message twice').to.equal(messages.length);
    expect(messages.map((m) => m.body.new.id).sort((a, b) => a - b), 'every author once').to.deep.equal(ids);
  });

  it('survives a PostgreSQL restart mid-drain (`pgpubsub relay --processes 2`): each notification in the stream exactly once; its metrics say so', async () => {
    // Its own embedded server, whatever DATABASE_URL says: this test stops and starts it.
    const server = await startEmbedded();
    const url = await createEmptyDatabase(server.url, 'relay_restart');
    const local = openApp(url);
    const stream = 'RELAY_RESTART';
    const count = async () => (await local.sequelize.query<{ n: number }>('SELECT count(*)::int AS n FROM pgpubsub.notification', { type: QueryTypes.SELECT }))[0].n;
    let relay: ChildProcessHandle | null = null;
    try {
      await migrateApp(url);
      await local.sequelize.query("INSERT INTO authors (name) SELECT 'author ' || i FROM generate_series(1, 20000) AS i");
      relay = spawnProcess(BIN, ['relay', '--processes', '2', '--nats', nats.url, '--channels', 'author_created', '--stream', stream, '--subject-prefix', 'restart',
        '--identity', 'db1', '--log-format', 'json', '--batch-size', '100', '--metrics-port', '0'], { DATABASE_URL: url }, ROOT);
      const port = Number((await relay.event('http-listening', 60_000)).port);
      await eventually(async () => (await count()) < 17_000, () => `the relays under way: ${relay!.describe()}`, 60_000);
      await server.restart!();
      expect(await count(), 'the restart came mid-drain').to.be.greaterThan(0);
      await eventually(async () => (await count()) === 0, () => `the relays finishing after the restart: ${relay!.describe()}`, 90_000, 250);
      expect(relay.all('reconnected').map((e) => e.worker).sort(), relay.describe()).to.deep.equal([1, 2]);
      expect(relay.all('worker-died'), relay.describe()).to.deep.equal([]);
      const messages = await streamMessages(nats.url, stream);
      const ids = (await local.sequelize.query<{ id: number }>('SELECT id FROM authors ORDER BY id', { type: QueryTypes.SELECT })).map((row) => row.id);
      expect(new Set(messages.map((m) => m.msgId)).size, 'no message twice').to.equal(messages.length);
      expect(messages.map((m) => m.body.new.id).sort((a, b) => a - b), 'every author once').to.deep.equal(ids);
      // The primary's endpoint: both relays' figures summed. A batch whose commit the restart cut
      // off is counted when it commits again (its copies are the duplicates); one whose commit
      // landed but whose answer was lost is not counted: at most one batch per relay.
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(sample(text, 'pgpubsub_processed_total', { channel: 'author_created' }), text).to.be.within(20_000 - 2 * 100, 20_000);
      expect(sample(text, 'pgpubsub_relay_nats_connected'), text).to.equal(2);
      expect(sample(text, 'pgpubsub_relay_duplicates_total'), text).to.be.at.least(0);
      expect(sample(text, 'pgpubsub_workers', { state: 'listening' }), text).to.equal(2);
      expect((await relay.stop(30_000)).code, relay.describe()).to.equal(0);
    } finally {
      relay?.kill('SIGKILL');
      await relay?.exited;
      await local.sequelize.close();
      await server.stop();
    }
  });

  /** Runs examples/relay/<file> on a database of its own, from the default stream's start; resolves its output lines. */
  const runExample = async (file: string): Promise<string[]> => {
    await dropStream(nats.url, 'PGPUBSUB');
    const db = await emptyDatabase(`example ${file}`);
    const example = spawnProcess(path.join(ROOT, 'examples', 'relay', file), [], { DATABASE_URL: db.url, NATS_URL: nats.url, PGPUBSUB_LOG_LEVEL: 'silent' }, ROOT, { esm: true });
    const exit = await example.exited;
    expect(exit.code, example.describe()).to.equal(0);
    await db.drop();
    return example.output;
  };

  it('runs the example of docs/scaling-out.md (examples/relay/relay.ts)', async () => {
    const output = await runExample('relay.ts');
    expect(output.join('\n')).to.match(/^pgpubsub\.author_created \d+\.[^:]+:pgpubsub:\d+: INSERT Ursula$/m);
    expect(output.at(-1)).to.equal('relay example ok');
  });

  it('runs the inbox example of docs/scaling-out.md (examples/relay/inbox.ts)', async () => {
    expect(await runExample('inbox.ts')).to.deep.equal(['Welcome, Ursula!', 'inbox example ok']);
  });
});
