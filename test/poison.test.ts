/**
 * Poison-proof listeners, in one process: callbacks that fail like a remote service, hang, or hit
 * the database wrongly; payloads that can never succeed; roles that hold the wake-up locks. Each
 * costs only its own notification, and the others are processed.
 */
import { expect } from 'chai';
import { Client } from 'pg';
import { DataTypes, QueryTypes, Sequelize } from 'sequelize';
import pgpubsub, { type Listener, type Logger, PgPubSubError } from '../lib';
import { WAKE_LOCKS } from '../lib/db/wake-locks';
import { HOLDER_LOCK } from '../lib/db/protocol';
import type { App } from '../models/app';
import { WELCOME } from '../models/callbacks';
import { connect } from '../dev/example-app';
import { exampleAppPerTest } from './support/example-app-per-test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../dev/eventually';

interface Row { id: string; channel: string; attempts: number; last_error: string | null; failed_at: Date | null; name: string | null }

/** A logger that keeps every line, to read what the listener said. */
function capturing() {
  const lines: Array<{ level: string; message: string; fields?: Record<string, unknown> }> = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) => { lines.push({ level, message, fields }); };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, lines };
}

describe('poison-proof listeners', function () {
  this.timeout(60_000);
  const listeners: Listener[] = [];
  const quiet = capturing().logger;
  const listen = async (options: Parameters<App['sequelize']['pgpubsub']['listen']>[0] = {}) => {
    const listener = await t.app.sequelize.pgpubsub.listen({ logger: quiet, ...options });
    listeners.push(listener);
    return listener;
  };
  const stored = () => t.app.sequelize.query<Row>(
    `SELECT id::text, channel, attempts, last_error, failed_at, payload->'new'->>'name' AS name FROM pgpubsub.notification ORDER BY id`,
    { type: QueryTypes.SELECT },
  );
  const posts = () => t.app.Post.count();
  /** The example's callback, except for authors whose name says how to misbehave. */
  const onAuthor = (misbehave: (name: string, transaction: import('sequelize').Transaction, signal: AbortSignal) => Promise<void> | void) => {
    t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', async ({ new: author }, { transaction, signal }) => {
      if (author!.name.startsWith('bad')) await misbehave(author!.name, transaction, signal);
      await t.app.Post.create({ authorId: author!.id, content: WELCOME }, { transaction });
    });
  };
  /** Records each run of author_created (name and attempt) as it writes its post, and stores one author: its notification's id, and the runs. */
  const oneRecordedAuthor = async (name: string) => {
    const runs: Array<{ name: string; attempt: number }> = [];
    t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', async ({ new: author }, { transaction, attempt }) => {
      runs.push({ name: author!.name, attempt });
      await t.app.Post.create({ authorId: author!.id, content: WELCOME }, { transaction });
    });
    await t.app.Author.create({ name });
    const [{ id }] = await stored();
    return { id, runs };
  };
  const fiveGoodOneBad = () => t.app.Author.bulkCreate(['good 1', 'good 2', 'bad', 'good 3', 'good 4', 'good 5'].map((name) => ({ name })));

  const t = exampleAppPerTest({
    async cleanup() {
      await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
    },
  });

  describe('callback errors', () => {
    it('charges an attempt to a callback that throws a network error (ECONNREFUSED), and processes the rest of its statement', async () => {
      onAuthor(() => { throw Object.assign(new Error('connect ECONNREFUSED 10.9.9.9:443'), { code: 'ECONNREFUSED', errno: -111, syscall: 'connect' }); });
      await listen();
      await fiveGoodOneBad();
      await eventually(async () => (await posts()) === 5 && (await stored()).every((row) => row.attempts > 0), 'five posts and the bad row charged');
      const [bad] = await stored();
      expect(bad.name).to.equal('bad');
      expect(bad.attempts).to.equal(1);
      expect(bad.last_error).to.match(/^Error: connect ECONNREFUSED 10\.9\.9\.9:443 \(code ECONNREFUSED\)\n\s+at /);
    });

    it("stores and logs the database's own message and SQL state, before the stack", async () => {
      onAuthor(async (_, transaction) => { await t.app.sequelize.query('SELECT * FROM no_such_table', { transaction }); });
      const { logger, lines } = capturing();
      await listen({ logger });
      await fiveGoodOneBad();
      await eventually(async () => (await posts()) === 5 && (await stored()).every((row) => row.attempts > 0), 'five posts and the bad row charged');
      const [bad] = await stored();
      expect(bad.last_error).to.match(/^SequelizeDatabaseError: relation "no_such_table" does not exist \(SQLSTATE 42P01\)\n\s+at /);
      const logged = lines.find((line) => line.message.includes('failed for notification'));
      expect(logged?.fields?.error).to.equal('SequelizeDatabaseError: relation "no_such_table" does not exist (SQLSTATE 42P01)');
      expect(logged?.message).to.contain('kept for retry');
    });
  });

  describe('timeouts', () => {
    it('aborts a callback that never settles after timeoutMs, rolls its work back, charges a timeout, and goes on', async () => {
      let aborted: unknown = null;
      onAuthor(async (_, transaction, signal) => {
        const author = await t.app.Author.findOne({ where: { name: 'bad' }, transaction });
        await t.app.Post.create({ authorId: author!.id, content: 'half done' }, { transaction });
        signal.addEventListener('abort', () => { aborted = signal.reason; });
        await new Promise(() => undefined);
      });
      await listen({ timeoutMs: 300 });
      await fiveGoodOneBad();
      await eventually(async () => (await posts()) === 5 && (await stored()).every((row) => row.attempts > 0), 'five posts and the hanging row charged');
      const [bad] = await stored();
      expect(bad.last_error).to.match(/^CallbackTimeoutError: callback on 'author_created' for notification \d+ did not settle within 300 ms/);
      expect(aborted).to.be.instanceOf(PgPubSubError);
      expect(await t.app.Post.count({ where: { content: 'half done' } }), 'the timed-out work was rolled back').to.equal(0);
    });

    it('makes a callback\'s signal only when it is read: none for callbacks that never read it, an aborted one for a read after the time is up', async () => {
      let made = 0;
      const Counted = class extends AbortController { constructor() { super(); made++; } };
      const own = globalThis.AbortController;
      let late: AbortSignal | null = null;
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', async ({ new: author }, context) => {
        if (author!.name === 'bad') {
          await sleep(500);
          late = context.signal; // first read, after its 300 ms are up
          return;
        }
        await t.app.Post.create({ authorId: author!.id, content: WELCOME }, { transaction: context.transaction });
      });
      globalThis.AbortController = Counted;
      try {
        await listen({ timeoutMs: 300 });
        await fiveGoodOneBad();
        await eventually(async () => late !== null && (await posts()) === 5, 'five posts and the late read');
      } finally {
        globalThis.AbortController = own;
      }
      expect(made, 'one AbortController: the late read\'s').to.equal(1);
      expect(late!.aborted).to.equal(true);
      expect(late!.reason).to.be.instanceOf(PgPubSubError);
      expect((late!.reason as Error).name).to.equal('CallbackTimeoutError');
    });

    it("bounds a callback's query on the server: a pg_sleep past a channel's timeoutMs is cancelled and charged", async () => {
      const { sequelize } = t.app;
      onAuthor(async (_, transaction) => { await sequelize.query('SELECT pg_sleep(60)', { transaction }); });
      await listen({ timeoutMs: 500, savepoints: 'always' });
      const started = Date.now();
      await fiveGoodOneBad();
      await eventually(async () => (await posts()) === 5 && (await stored()).every((row) => row.attempts > 0), 'five posts and the sleeping row charged', 20_000);
      expect(Date.now() - started).to.be.below(10_000);
      const [bad] = await stored();
      expect(bad.last_error).to.match(/^CallbackTimeoutError|canceling statement due to statement timeout/);
    });

    it('keeps a batch of slow callbacks that never query alive past the server-side idle bound', async () => {
      const { sequelize } = t.app;
      let ran = 0;
      sequelize.pgpubsub.on(t.app.Author, 'author_created', async () => { ran++; await sleep(300); });
      // 20 × 300 ms idle in one transaction: longer than timeoutMs + 5 s, the bound the claim sets.
      const listener = await listen({ timeoutMs: 400, batchSize: 20 });
      await t.app.Author.bulkCreate(Array.from({ length: 20 }, (_, i) => ({ name: `slow ${i}` })));
      await eventually(async () => (await stored()).length === 0, 'the batch to commit', 20_000, 100);
      expect(ran, 'each callback ran once: the batch was not killed and redone').to.equal(20);
      expect(listener.stats.processed).to.equal(20);
    });

    it('takes the time limit of a channel over the listener default', async () => {
      const sequelize = connect(t.db.url).use(pgpubsub);
      try {
        const Slow = sequelize.define('Slow', { name: DataTypes.TEXT }, { tableName: 'slows', timestamps: false, pgpubsub: { channels: { slow_made: { events: ['insert'], timeoutMs: 200 } } } });
        await Slow.sync();
        await sequelize.pgpubsub.triggers.sync();
        sequelize.pgpubsub.on(Slow, 'slow_made', () => new Promise(() => undefined));
        const listener = await sequelize.pgpubsub.listen({ logger: quiet, timeoutMs: 600_000 });
        listeners.push(listener);
        await Slow.create({ name: 'never settles' });
        await eventually(async () => (await stored()).some((row) => row.attempts > 0), 'the row to be charged', 5000);
        expect((await stored())[0].last_error).to.contain('did not settle within 200 ms');
        await listener.stop();
      } finally {
        await sequelize.close();
      }
    });

    it('rejects a timeoutMs that is not a positive integer, on listen() and on a channel', async () => {
      onAuthor(() => undefined);
      expect(String(await t.app.sequelize.pgpubsub.listen({ timeoutMs: 0 }).catch((error: Error) => error))).to.match(/timeoutMs must be a positive integer/);
      const sequelize = new Sequelize('postgres://nobody@127.0.0.1:1/none', { logging: false }).use(pgpubsub);
      sequelize.define('Odd', { name: DataTypes.TEXT }, { pgpubsub: { channels: { odd_made: { events: ['insert'], timeoutMs: -1 } } } });
      expect(() => sequelize.pgpubsub.channels()).to.throw("channel 'odd_made' on model Odd: 'timeoutMs' must be a positive integer (milliseconds), got -1");
    });

    it('rejects reconnect bounds that are out of order, and makes the longest wait at least the shortest', async () => {
      onAuthor(() => undefined);
      expect(String(await t.app.sequelize.pgpubsub.listen({ reconnect: { minDelayMs: 500, maxDelayMs: 100 } }).catch((error: Error) => error)))
        .to.contain('listen: reconnect needs 0 <= minDelayMs <= maxDelayMs, got {"minDelayMs":500,"maxDelayMs":100}');
      const listener = await t.app.sequelize.pgpubsub.listen({ reconnect: { minDelayMs: 20_000 }, logger: quiet });
      await listener.stop();
    });
  });

  describe('payloads that can never succeed', () => {
    it('fails them at once, without retries, saying why and that it is for good', async () => {
      onAuthor(() => undefined);
      // The last: a row nested 10,000 deep, which PostgreSQL and JSON.parse take, and a recursive walk does not.
      await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload) VALUES
        ('author_created', '[1, 2]'), ('author_created', '{"op": "MERGE", "old": null, "new": null}'), ('author_created', '"not json"'),
        ('author_created', ('{"op": "INSERT", "old": null, "new": {"id": 1, "name": ' || repeat('[', 10000) || repeat(']', 10000) || '}}')::jsonb)`);
      const { logger, lines } = capturing();
      await listen({ logger });
      await eventually(async () => (await stored()).every((row) => row.failed_at !== null), 'all four to fail');
      const rows = await stored();
      expect(rows.map((row) => row.attempts)).to.deep.equal([1, 1, 1, 1]);
      expect(rows[0].last_error).to.contain('expected a JSON object, got [1,2]');
      expect(rows[1].last_error).to.contain("'op' must be INSERT, UPDATE, DELETE, TRUNCATE, SOFT_DELETE or RESTORE, got \"MERGE\"");
      expect(rows[2].last_error).to.contain('expected a JSON object, got text that is not JSON');
      expect(rows[3].last_error).to.contain('expected a message, got one nested too deep to decode');
      const finals = lines.filter((line) => line.level === 'error' && line.message.includes('failed for good'));
      expect(finals).to.have.length(4);
      expect(lines.some((line) => line.message.includes('kept for retry'))).to.equal(false);
    });
  });

  describe('identity and strays', () => {
    it('processes rows stored under a model name since renamed in code: a channel is its name', async () => {
      const sequelize = connect(t.db.url).use(pgpubsub);
      try {
        const Writer = sequelize.define('Writer', { name: DataTypes.TEXT }, { tableName: 'authors', pgpubsub: { channels: { author_created: { events: ['insert'] } } } });
        const seen: string[] = [];
        sequelize.pgpubsub.on(Writer, 'author_created', ({ new: writer }) => { seen.push(writer!.get('name') as string); });
        await t.app.Author.create({ name: 'stored as an Author' });
        const listener = await sequelize.pgpubsub.listen({ logger: quiet });
        listeners.push(listener);
        await eventually(() => seen.length === 1, 'the Writer callback to run');
        expect(seen).to.deep.equal(['stored as an Author']);
        await listener.stop();
      } finally {
        await sequelize.close();
      }
    });

    it('reports at start, with their count, stored rows on channels it does not handle', async () => {
      onAuthor(() => undefined);
      await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload) VALUES ('gone_channel', '{}'), ('gone_channel', '{}'), ('post_deleted', '{}')`);
      const { logger, lines } = capturing();
      await listen({ logger, channels: ['author_created'] });
      const warned = lines.filter((line) => line.level === 'warn').map((line) => line.message);
      expect(warned).to.include("2 stored notification(s) on channel 'gone_channel' wait for a listener: no channel of that name is defined in this app (renamed or removed?)");
      expect(warned).to.include("1 stored notification(s) on channel 'post_deleted' wait for a listener: it has no callback here");
    });

    for (const [label, value] of [['undefined', undefined], ['a BigInt', 7n], ['a function', () => 1], ['NaN', Number.NaN], ['a Date', new Date()]] as const) {
      it(`refuses a contextFilter holding ${label}`, async () => {
        onAuthor(() => undefined);
        const error = await t.app.sequelize.pgpubsub.listen({ logger: quiet, contextFilter: { tenant: value as never } }).catch((e: unknown) => e);
        expect(error).to.be.instanceOf(PgPubSubError);
        expect((error as Error).message).to.match(/^listen: contextFilter\.tenant/);
      });
    }
  });

  describe('broadcasts', () => {
    it('never fails the write of a broadcast model channel, whatever the size of the context', async () => {
      const sequelize = connect(t.db.url).use(pgpubsub);
      try {
        const Ping = sequelize.define('Ping', { note: DataTypes.TEXT }, { tableName: 'pings', timestamps: false, pgpubsub: { channels: { ping_made: { events: ['insert'], durable: false, fullRows: true } } } });
        await Ping.sync();
        await sequelize.pgpubsub.triggers.sync();
        const seen: Array<{ truncated: boolean; context: unknown; id: unknown }> = [];
        sequelize.pgpubsub.on(Ping, 'ping_made', ({ new: ping, truncated, context }) => { seen.push({ truncated, context, id: ping!.get('id') }); });
        const listener = await sequelize.pgpubsub.listen({ logger: quiet });
        listeners.push(listener);
        const ping = await sequelize.pgpubsub.withContext({ blob: 'x'.repeat(20_000) }, (transaction) => Ping.create({ note: 'y'.repeat(9000) }, { transaction }));
        await eventually(() => seen.length === 1, 'the broadcast to arrive');
        expect(seen[0]).to.deep.equal({ truncated: true, context: { truncated: true }, id: ping.get('id') });
        await listener.stop();
      } finally {
        await sequelize.close();
      }
    });
  });

  describe("what a dead listener held", () => {
    it('runs it alone at its charged attempt, even while a claim that met it too still holds its row', async () => {
      const { id, runs } = await oneRecordedAuthor('held by a dead listener');
      // The marker of a listener gone for a minute (nobody holds its key) names that notification.
      await t.app.sequelize.query(
        `INSERT INTO pgpubsub.inflight (holder, ids, suspected_at) VALUES (424242, ARRAY[$1::bigint], now() - interval '1 minute')`, { bind: [id] });
      // Another listener's claim met it as a suspect too, just before this one charged it: that claim
      // holds the row until its own batch ends, a second here.
      const other = new Client({ connectionString: t.db.url });
      await other.connect();
      let released: Promise<unknown> = Promise.resolve();
      const listener = await listen({
        beforeRunningAlone: async () => {
          await other.query('BEGIN');
          await other.query('SELECT id FROM pgpubsub.notification WHERE id = $1 FOR UPDATE', [id]);
          released = sleep(1000).then(() => other.query('COMMIT'));
        },
      });
      try {
        await eventually(async () => (await posts()) === 1 && (await stored()).length === 0, 'the notification run and deleted', 15_000);
      } finally {
        await released;
        await other.end();
      }
      expect(runs, 'run once, alone, at the attempt charged before it ran').to.deep.equal([{ name: 'held by a dead listener', attempt: 1 }]);
      expect(listener.stats.ranAlone).to.equal(1);
    });
  });

  describe('a live listener', () => {
    it('never looks gone: its markers name its LISTEN connection to the microsecond', async () => {
      onAuthor(() => undefined);
      const listener = await listen({ concurrency: 2 });
      await fiveGoodOneBad();
      await eventually(async () => (await posts()) === 6, 'the six posts');
      const markers = await t.app.sequelize.query<{ gone: boolean }>(
        'SELECT pgpubsub.listener_gone(holder, backend_pid, backend_role, backend_start) AS gone FROM pgpubsub.inflight', { type: QueryTypes.SELECT });
      expect(markers.length, 'its markers').to.be.greaterThan(0);
      expect(markers.map((m) => m.gone)).to.deep.equal(markers.map(() => false));
      await listener.stop();
    });
  });

  describe('what a dying listener held', () => {
    it("leaves alone the batch whose claim died while its process still holds its key, then runs it alone once the key is let go", async () => {
      const { id, runs } = await oneRecordedAuthor('held by a dying listener');
      // A process dying: its server has ended the claiming transaction (its row locks gone), but not
      // yet the connection that holds its holder key.
      const dying = new Client({ connectionString: t.db.url });
      await dying.connect();
      try {
        await dying.query('SELECT pg_advisory_lock($1, 434343)', [HOLDER_LOCK]);
        await dying.query('BEGIN');
        const { rows: [{ xact }] } = await dying.query<{ xact: string }>('SELECT pg_current_xact_id()::text AS xact');
        await dying.query('ROLLBACK');
        await t.app.sequelize.query('INSERT INTO pgpubsub.inflight (holder, ids, xact) VALUES (434343, ARRAY[$1::bigint], $2::xid8)', { bind: [id, xact] });
        const listener = await listen();
        await t.app.Author.create({ name: 'good' });
        await eventually(async () => (await posts()) === 1, 'the good one processed');
        expect(runs, 'not run in a batch while the dying process holds its key').to.deep.equal([{ name: 'good', attempt: 1 }]);
        await dying.end();
        await eventually(async () => (await posts()) === 2 && (await stored()).length === 0, 'the held one run alone', 20_000);
        expect(runs).to.deep.equal([{ name: 'good', attempt: 1 }, { name: 'held by a dying listener', attempt: 1 }]);
        expect(listener.stats.ranAlone).to.equal(1);
      } finally {
        await dying.end().catch(() => undefined);
      }
    });
  });

  describe("a claim that locked a live listener's marker", () => {
    it("makes that listener's marker write give up within its lock timeout, not wait for the claim's batch; the row is processed once the claim ends", async () => {
      const { runs } = await oneRecordedAuthor('first');
      const { logger, lines } = capturing();
      await listen({ logger });
      await eventually(async () => (await posts()) === 1, 'the first one processed');
      const [{ holder }] = await t.app.sequelize.query<{ holder: number }>('SELECT holder FROM pgpubsub.inflight', { type: QueryTypes.SELECT });
      // Its last claim aborted (a failed pass, a restart): another listener's claim takes its marker
      // for a dying one's and locks it (to note since when) until its own batch commits.
      const other = new Client({ connectionString: t.db.url });
      await other.connect();
      try {
        await other.query('BEGIN');
        const { rows: [{ xact }] } = await other.query<{ xact: string }>('SELECT pg_current_xact_id()::text AS xact');
        await other.query('ROLLBACK');
        await t.app.sequelize.query('UPDATE pgpubsub.inflight SET xact = $1::xid8, suspected_at = NULL WHERE holder = $2', { bind: [xact, holder] });
        await other.query('BEGIN');
        await other.query("SELECT * FROM pgpubsub.claim(ARRAY['nothing'], NULL, 1, 0, NULL, NULL, NULL)");
        const { rows: [noted] } = await other.query<{ noted: boolean }>('SELECT suspected_at IS NOT NULL AS noted FROM pgpubsub.inflight WHERE holder = $1', [holder]);
        expect(noted.noted, 'the other claim noted the marker').to.equal(true);
        await t.app.Author.create({ name: 'second' });
        // Each of two listeners whose claims locked the other's marker would wait for the other for
        // ever (the server sees no deadlock): the write gives up, the drain rolls back and tries again.
        await eventually(() => lines.some((line) => line.fields?.event === 'drain-failed' && String(line.fields.error).includes('lock timeout')), 'a marker write to give up', 10_000);
        expect(await posts()).to.equal(1);
        await other.query('ROLLBACK');
        await eventually(async () => (await posts()) === 2 && (await stored()).length === 0, 'the second one processed', 10_000);
        expect(runs).to.deep.equal([{ name: 'first', attempt: 1 }, { name: 'second', attempt: 1 }]);
      } finally {
        await other.end();
      }
    });
  });

  describe('a role that can only connect', () => {
    const role = `pgpubsub_hostile_${process.pid}`;
    let hostile: Client;
    beforeEach(async () => {
      await t.app.sequelize.query(`DROP ROLE IF EXISTS ${role}`);
      // A password: the embedded server asks for one (scram), a trust server ignores it.
      await t.app.sequelize.query(`CREATE ROLE ${role} LOGIN PASSWORD 'hostile'`);
      const url = new URL(t.db.url);
      url.username = role;
      url.password = 'hostile';
      hostile = new Client({ connectionString: url.toString() });
      await hostile.connect();
    });
    afterEach(async () => {
      await hostile.end();
      await t.app.sequelize.query(`DROP ROLE IF EXISTS ${role}`);
    });

    /** Milliseconds from an author's commit to its post. */
    const latency = async () => {
      const before = await posts();
      const started = Date.now();
      await t.app.Author.create({ name: `timed ${started}` });
      await eventually(async () => (await posts()) === before + 1, 'the post', 10_000, 10);
      return Date.now() - started;
    };

    it('holding the listening lock neither stops a listener from starting nor delays processing', async () => {
      onAuthor(() => undefined);
      await hostile.query(`SELECT pg_advisory_lock(${WAKE_LOCKS.listening}, hashtext('author_created'))`);
      const listener = await Promise.race([listen(), sleep(5000).then(() => null)]);
      expect(listener, 'listen() resolved').to.not.equal(null);
      expect(await latency()).to.be.below(2000);
      await hostile.query('SELECT pg_advisory_unlock_all()');
      // Let go: the listener takes the lock within a second, and producers count on it again.
      await sleep(1500);
      expect(await latency()).to.be.below(2000);
    });

    it("holding a dead listener's holder key does not make its batch look alive: it is run alone, charged", async () => {
      const { id, runs } = await oneRecordedAuthor('held by a dead listener');
      // The dead listener's LISTEN connection, gone; the role takes its key as soon as it is free.
      const gone = new Client({ connectionString: t.db.url });
      await gone.connect();
      const { rows: [backend] } = await gone.query<{ pid: number; role: string; start: string }>(
        'SELECT pid, usesysid::text AS role, backend_start::text AS start FROM pg_stat_get_activity(pg_backend_pid())');
      await gone.end();
      await hostile.query('SELECT pg_advisory_lock($1, 525252)', [HOLDER_LOCK]);
      await t.app.sequelize.query(
        `INSERT INTO pgpubsub.inflight (holder, ids, suspected_at, backend_pid, backend_role, backend_start)
         VALUES (525252, ARRAY[$1::bigint], now() - interval '1 minute', $2, $3::oid, $4)`, { bind: [id, backend.pid, backend.role, backend.start] });
      const listener = await listen();
      await eventually(async () => (await posts()) === 1 && (await stored()).length === 0, 'the notification run and deleted', 15_000);
      expect(runs, 'run once, alone, at the attempt charged before it ran').to.deep.equal([{ name: 'held by a dead listener', attempt: 1 }]);
      expect(listener.stats.ranAlone).to.equal(1);
    });

    it('holding the drain lock does not make producers skip their wake-ups', async () => {
      onAuthor(() => undefined);
      await listen({ heartbeatMs: 60_000 });
      await hostile.query(`SELECT pg_advisory_lock(${WAKE_LOCKS.draining}, hashtext('author_created'))`);
      for (let i = 0; i < 3; i++) expect(await latency()).to.be.below(2000);
    });

    it('cannot write the drain beat', async () => {
      const error = await hostile.query("SELECT setval('pgpubsub.drain_beat', 1)").catch((e: Error) => e);
      expect(String(error)).to.contain('permission denied');
    });
  });
});
