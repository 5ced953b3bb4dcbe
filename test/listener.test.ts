import { expect } from 'chai';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { QueryTypes } from 'sequelize';
import { type Listener, type ModelMessage, NonRetryableError, channel } from '../lib';
import type { App } from '../models/app';
import { type ReadCounter, WELCOME, registerCallbacks } from '../models/callbacks';
import { openApp } from '../dev/example-app';
import { exampleAppPerTest } from './support/example-app-per-test';
import { storedNotifications } from './support/notifications';
import { startProxy } from '../dev/proxy';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../dev/eventually';

const execFileAsync = promisify(execFile);
const today = () => new Date().toISOString().slice(0, 10);

describe('listener: exactly-once processing', () => {
  let reads: ReadCounter;
  const listeners: Listener[] = [];
  const listen = async (options: Parameters<App['sequelize']['pgpubsub']['listen']>[0] = {}) => {
    const listener = await t.app.sequelize.pgpubsub.listen({ logger: quiet, ...options });
    listeners.push(listener);
    return listener;
  };
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const count = (sql: string) => t.app.sequelize.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, { type: QueryTypes.SELECT }).then(([row]) => row.n);
  const emptied = () => eventually(async () => (await count('pgpubsub.notification')) === 0, 'the notification table to empty');

  const t = exampleAppPerTest({
    async setup() {
      ({ reads } = registerCallbacks(t.app));
    },
    async cleanup() {
      await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
    },
  });

  describe('core flow', () => {
    it('stores one notification per author, none per post or PostReads, and processes them all', async () => {
      await listen();
      const author = await t.app.Author.create({ name: 'Ann' });
      expect(await storedNotifications(t.app.sequelize, 'author_created')).to.have.length.at.most(1);
      await emptied();
      const [post] = await t.app.Post.findAll();
      await t.app.sequelize.pgpubsub.notify(t.app.PostReads, { modelId: post.id });
      await eventually(() => reads.get(today())?.[post.id] === 1, 'the read to be counted');
      expect(reads.get(today())).to.deep.equal({ [post.id]: 1 });
      expect(await t.app.Post.count({ where: { authorId: author.id } })).to.equal(1);
      expect(await count('pgpubsub.notification')).to.equal(0);
    });

    it('creates exactly one post for an author created inside a committed transaction', async () => {
      await listen();
      const author = await t.app.sequelize.transaction((transaction) => t.app.Author.create({ name: 'T' }, { transaction }));
      await emptied();
      expect(await t.app.Post.count({ where: { authorId: author.id } })).to.equal(1);
    });

    it('delivers nothing for a transaction that rolls back', async () => {
      await listen();
      const transaction = await t.app.sequelize.transaction();
      await t.app.Author.create({ name: 'ghost' }, { transaction });
      await transaction.rollback();
      await sleep(300);
      expect(await t.app.Author.count()).to.equal(0);
      expect(await t.app.Post.count()).to.equal(0);
      expect(listeners[0].stats.processed).to.equal(0);
    });

    it('processes a bulkCreate of two authors in one transaction in insertion order', async () => {
      const listener = await listen();
      const order: number[] = [];
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', ({ new: author }) => { order.push(author!.id); });
      const authors = await t.app.sequelize.transaction((transaction) => t.app.Author.bulkCreate([{ name: 'one' }, { name: 'two' }], { transaction }));
      await emptied();
      const posts = await t.app.Post.findAll({ order: [['id', 'ASC']] });
      expect(posts.map((p) => p.authorId)).to.deep.equal(authors.map((a) => a.id));
      expect(order).to.deep.equal(authors.map((a) => a.id));
      expect(listener.stats.processed).to.equal(2);
    });
  });

  describe('recovery', () => {
    for (const n of [2, 5]) {
      it(`processes ${n} authors stored while no listener ran once a listener starts with recover`, async () => {
        await t.app.Author.bulkCreate(Array.from({ length: n }, (_, i) => ({ name: `a${i}` })));
        expect(await count('pgpubsub.notification')).to.equal(n);
        await listen({ recover: true });
        await emptied();
        expect(await t.app.Post.count()).to.equal(n);
      });
    }

    it('keeps poison rows (with their error) and processes the good ones around them: 1 good, 1 broken, 1 good', async () => {
      await t.app.Author.create({ name: 'good 1' });
      await t.app.Author.create({ name: 'broken' });
      await t.app.Author.create({ name: 'good 2' });
      await t.app.sequelize.query(`UPDATE pgpubsub.notification SET payload = payload - 'op' WHERE payload->'new'->>'name' = 'broken'`);
      await listen({ recover: true });
      await eventually(async () => (await t.app.Post.count()) === 2, 'two posts');
      await eventually(async () => (await storedNotifications(t.app.sequelize)).every((row) => row.attempts > 0), 'the failure to be recorded');
      const kept = await storedNotifications(t.app.sequelize);
      expect(kept).to.have.length(1);
      expect(kept[0].payload.new.name).to.equal('broken');
      expect((kept[0] as unknown as { last_error: string }).last_error).to.contain("'op' must be INSERT, UPDATE, DELETE, TRUNCATE, SOFT_DELETE or RESTORE, got undefined");
    });

    it('five good and four broken, interleaved: five posts and four rows kept', async () => {
      for (let i = 0; i < 9; i++) await t.app.Author.create({ name: i % 2 ? `broken ${i}` : `good ${i}` });
      await t.app.sequelize.query(`UPDATE pgpubsub.notification SET payload = payload - 'op' WHERE payload->'new'->>'name' LIKE 'broken%'`);
      await listen({ recover: true });
      await eventually(async () => (await t.app.Post.count()) === 5 && (await storedNotifications(t.app.sequelize)).every((r) => r.attempts > 0), 'five posts and four failures');
      const kept = await storedNotifications(t.app.sequelize);
      expect(kept.map((row) => row.payload.new.name)).to.deep.equal(['broken 1', 'broken 3', 'broken 5', 'broken 7']);
    });

    it('processes rows stored in the older format (a JSON string holding the JSON)', async () => {
      await t.app.Author.create({ name: 'old format' });
      await t.app.sequelize.query('UPDATE pgpubsub.notification SET payload = to_jsonb(payload::text)');
      const [{ kind }] = await t.app.sequelize.query<{ kind: string }>('SELECT jsonb_typeof(payload) AS kind FROM pgpubsub.notification', { type: QueryTypes.SELECT });
      expect(kind).to.equal('string');
      await listen({ recover: true });
      await emptied();
      expect(await t.app.Post.count()).to.equal(1);
    });

    it('drains rows stored without a wake-up when recover() is called from outside', async () => {
      await listen({ recover: false });
      await t.app.sequelize.transaction(async (transaction) => {
        await t.app.sequelize.query('SET LOCAL session_replication_role = replica', { transaction });
        await t.app.Author.bulkCreate([{ name: 'x' }, { name: 'y' }], { transaction });
      });
      await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload)
        SELECT 'author_created', jsonb_build_object('op', 'INSERT', 'model', 'Author', 'old', NULL, 'new', to_jsonb(a), 'context', '{}'::jsonb) FROM authors a`);
      await sleep(300);
      expect(await count('pgpubsub.notification')).to.equal(2);
      await t.app.sequelize.pgpubsub.recover();
      await emptied();
      expect(await t.app.Post.count()).to.equal(2);
    });

    it('drains on `npx pgpubsub recover` from another process', async function () {
      this.timeout(30_000);
      await listen({ recover: false });
      await t.app.sequelize.transaction(async (transaction) => {
        await t.app.sequelize.query('SET LOCAL session_replication_role = replica', { transaction });
        await t.app.Author.create({ name: 'cli' }, { transaction });
      });
      await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload)
        SELECT 'author_created', jsonb_build_object('op', 'INSERT', 'model', 'Author', 'old', NULL, 'new', to_jsonb(a), 'context', '{}'::jsonb) FROM authors a`);
      await sleep(300);
      expect(await count('pgpubsub.notification')).to.equal(1);
      await execFileAsync(process.execPath, [path.join(__dirname, '..', 'bin', 'pgpubsub.js'), 'recover'], {
        cwd: path.join(__dirname, '..'), env: { ...process.env, DATABASE_URL: t.db.url },
      });
      await emptied();
      expect(await t.app.Post.count()).to.equal(1);
    });
  });

  describe('payload contents', () => {
    let seen: ModelMessage[];
    beforeEach(() => {
      seen = [];
      for (const [model, name] of [[t.app.Author, 'author_created'], [t.app.Post, 'post_deleted'], [t.app.Media, 'media_changed'], [t.app.Child, 'child_changed']] as const) {
        t.app.sequelize.pgpubsub.on(model as typeof t.app.Author, name, (message) => { seen.push(message as ModelMessage); });
      }
    });
    const seenOn = (name: string, n: number): Promise<ModelMessage[]> => eventually(() => {
      const found = seen.filter((m) => m.channel === name);
      return found.length >= n ? found : null;
    }, `${n} message(s) on ${name}`) as Promise<ModelMessage[]>;

    it("hands callbacks an Author instance with the written values, custom columns mapped back", async () => {
      await listen();
      const author = await t.app.Author.create({ name: 'Ann', alternativeName: 'A.', userId: 3, profilePictureId: 'pic' });
      const [message] = await seenOn('author_created', 1);
      expect(message.op).to.equal('INSERT');
      expect(message.old).to.equal(null);
      expect(message.new).to.be.instanceOf(t.app.Author);
      expect((message.new as InstanceType<typeof t.app.Author>).get({ plain: true })).to.deep.equal(author.get({ plain: true }));
      expect(message.new!.isNewRecord).to.equal(false);
    });

    it('carries the custom primary key, size and store of media on insert and after an update of name', async () => {
      await listen();
      await t.app.Media.create({ key: 'k-1', name: 'before', size: '9007199254740993', storeId: 's-9' });
      await t.app.Media.update({ name: 'after' }, { where: { key: 'k-1' } });
      const [inserted, updated] = await seenOn('media_changed', 2);
      expect(inserted.new!.get({ plain: true })).to.deep.include({ key: 'k-1', size: '9007199254740993', storeId: 's-9', name: 'before' });
      expect(updated.op).to.equal('UPDATE');
      expect(updated.old!.get('name')).to.equal('before');
      expect(updated.new!.get({ plain: true })).to.deep.include({ key: 'k-1', name: 'after', size: '9007199254740993', storeId: 's-9' });
    });

    it('hands out BIGINT values as strings whatever their size, as Sequelize does, and floats as numbers', async () => {
      await listen();
      const stored = await t.app.Media.create({ key: 'small', name: 'n', size: '42', storeId: 's' });
      await t.app.Media.create({ key: 'big', name: 'n', size: '-9223372036854775808', storeId: 's' });
      const [small, big] = await seenOn('media_changed', 2);
      expect(small.new!.get('size')).to.equal('42').and.to.equal((await t.app.Media.findByPk('small'))!.get('size'));
      expect(small.new!.get({ plain: true })).to.deep.equal(stored.get({ plain: true }));
      expect(big.new!.get('size')).to.equal('-9223372036854775808');
    });

    it('carries author, date and id in old when a post is deleted, and new is null', async () => {
      await listen();
      const author = await t.app.Author.create({ name: 'writer' });
      await emptied();
      await t.app.sequelize.query("INSERT INTO posts (id, content, date, author_id, rating) VALUES (1000, 'bye', '2024-02-29 12:34:56.789+00', :id, '1.1')", { replacements: { id: author.id } });
      const loaded = await t.app.Post.findByPk(1000);
      await t.app.Post.destroy({ where: { id: 1000 } });
      const [message] = await seenOn('post_deleted', 1);
      expect(message.new).to.equal(null);
      expect(message.old!.get({ plain: true })).to.deep.equal(loaded!.get({ plain: true }));
      expect((message.old!.get('date') as Date).toISOString()).to.equal('2024-02-29T12:34:56.789Z');
      expect(message.old!.get('rating')).to.equal('1.10000000000000000000');
    });

    it("carries the child model's shared primary key", async () => {
      await listen();
      const parent = await t.app.Parent.create({ name: 'p' });
      await t.app.Child.create({ parentId: parent.id, nickname: 'kid' });
      const [message] = await seenOn('child_changed', 1);
      expect(message.new!.get('parentId')).to.equal(parent.id);
    });

    it('ignores columns the model no longer has, keeps DECIMAL exact and timestamps the same instant', async () => {
      await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload) VALUES ('post_deleted',
        '{"op":"DELETE","model":"Post","new":null,"context":{},"old":{"id":7,"content":"c","date":"2024-01-02T03:04:05.678901+00:00","author_id":null,"rating":1.10000000000000000000,"dropped_column":"gone"}}')`);
      await listen({ recover: true });
      const [message] = await seenOn('post_deleted', 1);
      const values = message.old!.get({ plain: true }) as Record<string, unknown>;
      expect(values).to.not.have.property('dropped_column');
      expect(values.rating).to.equal('1.10000000000000000000');
      expect((values.date as Date).toISOString()).to.equal('2024-01-02T03:04:05.678Z');
      expect(values.id).to.equal(7);
    });
  });

  describe('custom channels', () => {
    it('round-trips strings, numbers, booleans, dates, arrays, nested objects, numeric-keyed records and defaults', async () => {
      const Rich = channel<{ s: string; n: number; big: string; b: boolean; d: Date; a: unknown[]; o: object; r: Record<number, string>; opt?: string }>('rich', { defaults: { opt: 'default' } });
      const got: unknown[] = [];
      t.app.sequelize.pgpubsub.on(Rich, ({ payload }) => { got.push(payload); });
      await listen();
      const sent = { s: "O'Brien ✓", n: 1.5, big: '123456789012345678901234567890', b: true, d: new Date('2020-02-02T02:02:02.002Z'), a: [1, 'x', null], o: { deep: { er: [true] } }, r: { 1: 'one', 22: 'twenty-two' } };
      await t.app.sequelize.pgpubsub.notify(Rich, sent);
      await eventually(() => got.length === 1, 'the rich payload');
      expect(got[0]).to.deep.equal({ ...sent, opt: 'default' });
    });

    it('stores, processes and recovers a durable custom channel like a trigger channel', async () => {
      const Jobs = channel<{ authorName: string }>('jobs');
      t.app.sequelize.pgpubsub.on(Jobs, async ({ payload }, { transaction }) => {
        await t.app.Author.create({ name: payload.authorName }, { transaction });
      });
      await t.app.sequelize.pgpubsub.notify(Jobs, { authorName: 'from a job' });
      expect(await storedNotifications(t.app.sequelize, 'jobs')).to.have.length(1);
      await listen({ recover: true });
      await emptied();
      expect(await t.app.Author.count({ where: { name: 'from a job' } })).to.equal(1);
      expect(await t.app.Post.count()).to.equal(1);
    });
  });

  describe('context and filters', () => {
    it('passes the context to the callback (the first post takes its content from it)', async () => {
      await listen();
      await t.app.sequelize.pgpubsub.withContext({ content: 'Hello from context' }, (transaction) => t.app.Author.create({ name: 'c' }, { transaction }));
      await emptied();
      expect((await t.app.Post.findOne())!.content).to.equal('Hello from context');
    });

    it('claims only notifications whose context matches its filter, live and in recovery; the rest stay stored', async () => {
      const create = (tenant: number, name: string) => t.app.sequelize.pgpubsub.withContext({ tenant }, (transaction) => t.app.Author.create({ name }, { transaction }));
      await create(1, 'stored for 1');
      await create(2, 'stored for 2');
      await listen({ contextFilter: { tenant: 1 }, recover: true });
      await create(1, 'live for 1');
      await create(2, 'live for 2');
      await eventually(async () => (await t.app.Post.count()) === 2, 'the two tenant-1 posts');
      await sleep(200);
      const kept = await storedNotifications(t.app.sequelize);
      expect(kept.map((row) => row.payload.new.name)).to.deep.equal(['stored for 2', 'live for 2']);
      expect(kept.every((row) => row.attempts === 0)).to.equal(true);
    });
  });

  describe('connection loss', () => {
    it('notices a silently dead LISTEN connection by its heartbeat, reconnects and processes what it missed', async function () {
      this.timeout(30_000);
      const proxy = await startProxy(t.db.url);
      const remote = openApp(proxy.via(t.db.url));
      registerCallbacks(remote);
      const listener = await remote.sequelize.pgpubsub.listen({ logger: quiet, heartbeatMs: 300, reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
      try {
        // The LISTEN connection is the first; the second, the check for a transaction pooler, is closed.
        await eventually(() => proxy.connections.filter((c) => !c.upstream.destroyed).length === 1, () => `one open connection, got ${proxy.connections.filter((c) => !c.upstream.destroyed).length}`);
        proxy.blackhole((index) => index === 0);
        await t.app.Author.create({ name: 'sent while the connection was dead' });
        await eventually(() => listener.stats.reconnects === 1, 'the listener to reconnect', 10_000);
        await emptied();
        expect(await t.app.Post.count()).to.equal(1);
      } finally {
        await listener.stop();
        await remote.sequelize.close();
        await proxy.close();
      }
    });
  });

  describe('broadcast channels', () => {
    it('runs the callbacks of every listening process, and stores nothing', async () => {
      const other = openApp(t.db.url);
      const { reads: otherReads } = registerCallbacks(other);
      const otherListener = await other.sequelize.pgpubsub.listen({ logger: quiet });
      try {
        await listen();
        await t.app.sequelize.pgpubsub.notify(t.app.PostReads, { modelId: 42 });
        await eventually(() => reads.get(today())?.[42] === 1 && otherReads.get(today())?.[42] === 1, 'both processes to count the read');
        expect(await count('pgpubsub.notification')).to.equal(0);
      } finally {
        await otherListener.stop();
        await other.sequelize.close();
      }
    });
  });

  describe('callbacks', () => {
    it('runs several callbacks on one channel in registration order, in the same transaction', async () => {
      const calls: Array<[string, unknown]> = [];
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', async (_m, { transaction }) => {
        const [{ id }] = await t.app.sequelize.query<{ id: string }>('SELECT txid_current()::text AS id', { transaction, type: QueryTypes.SELECT });
        calls.push(['second', id]);
      });
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', async (_m, { transaction }) => {
        const [{ id }] = await t.app.sequelize.query<{ id: string }>('SELECT txid_current()::text AS id', { transaction, type: QueryTypes.SELECT });
        calls.push(['third', id]);
      });
      await listen();
      await t.app.Author.create({ name: 'a' });
      await eventually(() => calls.length === 2, 'both extra callbacks');
      expect(calls.map(([name]) => name)).to.deep.equal(['second', 'third']);
      expect(calls[0][1]).to.equal(calls[1][1]);
      // The callbacks ran; their transaction commits after them.
      await emptied();
      expect(await t.app.Post.count()).to.equal(1);
    });

    it('survives a failing callback, keeps the notification with its attempts and error, and retries it with growing delays', async () => {
      const Flaky = channel<{ n: number }>('flaky', { retry: { maxAttempts: 5, backoffMs: 200, maxBackoffMs: 5000 } });
      const attempts: number[] = [];
      t.app.sequelize.pgpubsub.on(Flaky, async ({ payload }, { transaction, attempt }) => {
        attempts.push(Date.now());
        if (attempt <= 2) throw new Error(`failure number ${attempt}`);
        await t.app.Author.create({ name: `done ${payload.n}` }, { transaction });
      });
      const listener = await listen();
      await t.app.sequelize.pgpubsub.notify(Flaky, { n: 1 });
      await eventually(async () => (await storedNotifications(t.app.sequelize, 'flaky'))[0]?.attempts === 1, 'the first failure to be recorded');
      const [failed] = await t.app.sequelize.query<{ attempts: number; last_error: string; due: boolean }>(
        "SELECT attempts, last_error, available_at > now() AS due FROM pgpubsub.notification WHERE channel = 'flaky'", { type: QueryTypes.SELECT },
      );
      expect(failed.attempts).to.equal(1);
      expect(failed.last_error).to.contain('failure number 1');
      await eventually(async () => (await count("pgpubsub.notification WHERE channel = 'flaky'")) === 0, 'the third attempt to succeed', 15_000);
      expect(attempts).to.have.length(3);
      const [first, second] = [attempts[1] - attempts[0], attempts[2] - attempts[1]];
      expect(first).to.be.at.least(100);
      expect(second).to.be.at.least(200);
      expect(await t.app.Author.count({ where: { name: 'done 1' } })).to.equal(1);
      expect(listener.stats.failed).to.equal(2);
      // The listener is alive and still processes new work.
      await t.app.Author.create({ name: 'after failures' });
      await eventually(async () => (await t.app.Post.count()) === 2, 'a post for the later author');
    });

    it('marks a notification failed after maxAttempts, keeps it, and no longer claims it', async () => {
      const Doomed = channel<{ n: number }>('doomed', { retry: { maxAttempts: 2, backoffMs: 10, maxBackoffMs: 10 } });
      let calls = 0;
      t.app.sequelize.pgpubsub.on(Doomed, () => { calls++; throw new Error('always'); });
      await listen();
      await t.app.sequelize.pgpubsub.notify(Doomed, { n: 1 });
      await eventually(async () => (await storedNotifications(t.app.sequelize, 'doomed'))[0]?.failed_at !== null, 'the row to be marked failed');
      await sleep(300);
      expect(calls).to.equal(2);
      const [row] = await storedNotifications(t.app.sequelize, 'doomed');
      expect(row.attempts).to.equal(2);
    });

    it('rolls back a failing callback\'s writes but keeps the other messages of the batch', async () => {
      const Half = channel<{ name: string; fail: boolean }>('half', { retry: { maxAttempts: 1 } });
      t.app.sequelize.pgpubsub.on(Half, async ({ payload }, { transaction }) => {
        await t.app.Author.create({ name: payload.name }, { transaction });
        if (payload.fail) throw new Error('after writing');
      });
      await t.app.sequelize.pgpubsub.notify(Half, { name: 'kept', fail: false });
      await t.app.sequelize.pgpubsub.notify(Half, { name: 'undone', fail: true });
      await t.app.sequelize.pgpubsub.notify(Half, { name: 'kept too', fail: false });
      await listen({ recover: true });
      await eventually(async () => (await count("pgpubsub.notification WHERE channel = 'half' AND failed_at IS NULL")) === 0, 'the batch to settle');
      const names = (await t.app.Author.findAll({ order: [['id', 'ASC']] })).map((a) => a.name);
      expect(names).to.deep.equal(['kept', 'kept too']);
    });

    for (const savepoints of ['on-failure', 'always'] as const) {
      it(`with savepoints '${savepoints}', a failure in a batch keeps only that message and commits the others' writes once`, async () => {
        const Mixed = channel<{ name: string; fail: boolean }>('mixed', { retry: { maxAttempts: 1 } });
        const runs: string[] = [];
        t.app.sequelize.pgpubsub.on(Mixed, async ({ payload }, { transaction }) => {
          runs.push(payload.name);
          await t.app.Author.create({ name: payload.name }, { transaction });
          if (payload.fail) throw new Error('fails after writing');
        });
        for (const [name, fail] of [['first', false], ['second', false], ['bad', true], ['last', false]] as const) {
          await t.app.sequelize.pgpubsub.notify(Mixed, { name, fail });
        }
        await listen({ recover: true, savepoints });
        await eventually(async () => (await count("pgpubsub.notification WHERE channel = 'mixed' AND failed_at IS NULL")) === 0, 'the batch to settle');
        expect((await t.app.Author.findAll({ order: [['id', 'ASC']] })).map((a) => a.name)).to.deep.equal(['first', 'second', 'last']);
        expect(runs.filter((name) => name === 'bad')).to.have.length(1);
        // Without savepoints the batch is redone after the failure, so the callbacks before it run twice.
        expect(runs).to.deep.equal(savepoints === 'always' ? ['first', 'second', 'bad', 'last'] : ['first', 'second', 'bad', 'first', 'second', 'last']);
      });
    }

    for (const savepoints of ['on-failure', 'always'] as const) {
      it(`with savepoints '${savepoints}', runs after-commit hooks after the outer commit, once, and never for a message that failed`, async () => {
        const Hooked = channel<{ name: string; fail: boolean }>('hooked', { retry: { maxAttempts: 1 } });
        const hooks: Array<[string, number]> = [];
        // Read outside the batch's transaction: the callback's row is there only once the batch committed.
        const committed = (name: string) => t.app.Author.count({ where: { name } });
        t.app.sequelize.pgpubsub.on(Hooked, async ({ payload }, { transaction, afterCommit }) => {
          await t.app.Author.create({ name: payload.name }, { transaction });
          const hook = async () => { hooks.push([payload.name, await committed(payload.name)]); };
          // Both ways in: Sequelize's own transaction.afterCommit, and the callback context's.
          if (payload.name === 'first') transaction.afterCommit(hook);
          else afterCommit(hook);
          if (payload.fail) throw new Error('fails after registering its hook');
        });
        for (const [name, fail] of [['first', false], ['second', false], ['bad', true], ['last', false]] as const) {
          await t.app.sequelize.pgpubsub.notify(Hooked, { name, fail });
        }
        await listen({ recover: true, savepoints });
        await eventually(async () => hooks.length >= 3 && (await count("pgpubsub.notification WHERE channel = 'hooked' AND failed_at IS NULL")) === 0, 'the hooks');
        await sleep(100);
        expect(hooks).to.deep.equal([['first', 1], ['second', 1], ['last', 1]]);
      });
    }

    it('fails a notification for good at once when its callback throws NonRetryableError, attempts left or not', async () => {
      const Doomed = channel<{ to: string }>('doomed', { retry: { maxAttempts: 5, backoffMs: 10 } });
      let runs = 0;
      t.app.sequelize.pgpubsub.on(Doomed, ({ payload }) => {
        runs++;
        throw new NonRetryableError(`no such address: ${payload.to}`);
      });
      const listener = await listen();
      const failed: boolean[] = [];
      listener.on('failed', (failure: { failedForGood: boolean }) => failed.push(failure.failedForGood));
      await t.app.sequelize.pgpubsub.notify(Doomed, { to: 'nobody@invalid' });
      await eventually(async () => (await count("pgpubsub.notification WHERE channel = 'doomed' AND failed_at IS NOT NULL")) === 1, 'the failure');
      const [row] = await t.app.sequelize.query<{ attempts: number; last_error: string }>(
        "SELECT attempts, last_error FROM pgpubsub.notification WHERE channel = 'doomed'", { type: QueryTypes.SELECT });
      expect(row.attempts).to.equal(1);
      expect(row.last_error).to.match(/^NonRetryableError: no such address: nobody@invalid/);
      await sleep(200);
      expect(runs).to.equal(1);
      expect(failed).to.deep.equal([true]);
    });

    it('processes promptly a notification sent by a callback to another channel', async () => {
      const First = channel<{ step: number }>('first_step');
      const Second = channel<{ step: number }>('second_step');
      const done: number[] = [];
      t.app.sequelize.pgpubsub.on(First, async ({ payload }, { transaction }) => {
        await t.app.sequelize.pgpubsub.notify(Second, { step: payload.step + 1 }, { transaction });
      });
      t.app.sequelize.pgpubsub.on(Second, ({ payload }) => { done.push(payload.step); });
      await listen();
      const started = Date.now();
      await t.app.sequelize.pgpubsub.notify(First, { step: 1 });
      await eventually(() => done.length === 1, 'the second step', 2000);
      expect(done).to.deep.equal([2]);
      expect(Date.now() - started).to.be.below(1000);
    });

    it('tells which operation happened when one channel listens to several events, and delete does not fire insert-only logic', async () => {
      const ops: string[] = [];
      t.app.sequelize.pgpubsub.on(t.app.Media, 'media_changed', ({ op }) => { ops.push(op); });
      await listen();
      await t.app.Media.create({ key: 'm', name: 'n' });
      await t.app.Media.update({ name: 'n2' }, { where: { key: 'm' } });
      await t.app.Media.destroy({ where: { key: 'm' } });
      await emptied();
      await sleep(100);
      expect(ops).to.deep.equal(['INSERT', 'UPDATE']);
    });

    it('refuses to listen on a durable channel that has no callback, since claiming would drop its notifications', async () => {
      const Orphan = channel('orphan_channel');
      t.app.sequelize.pgpubsub.register(Orphan);
      let failure: Error | undefined;
      await t.app.sequelize.pgpubsub.listen({ channels: ['orphan_channel'] }).catch((error: Error) => { failure = error; });
      expect(failure?.message).to.contain("channel 'orphan_channel' has no callback");
    });

    it('rejects a callback registered for a channel of another model', () => {
      expect(() => t.app.sequelize.pgpubsub.on(t.app.Post, 'author_created', () => undefined)).to.throw("channel 'author_created' belongs to model Author, not to Post");
    });
  });

  describe('claiming', () => {
    it('claims through the partial index on id, so the cost does not grow with stored rows', async () => {
      await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, failed_at)
        SELECT 'author_created', '{}'::jsonb, now() FROM generate_series(1, 20000)`);
      await t.app.sequelize.query("INSERT INTO pgpubsub.notification (channel, payload) SELECT 'author_created', '{}'::jsonb FROM generate_series(1, 20000)");
      // No ANALYZE: right after a bulk insert the planner has no statistics, the case that matters most.
      // The claim runs inside a function, so its plan is not shown, but the buffers it touched are: a walk
      // of the index touches about one per claimed row (~100), a sort of the backlog every page of the
      // table and the index (~450 here). The first call also plans, which reads the catalog: not counted.
      const explained = await t.app.sequelize.transaction(async (transaction) => {
        const claim = "SELECT * FROM pgpubsub.claim('{author_created}', NULL, 100, 0, NULL, NULL, NULL)";
        await t.app.sequelize.query(claim, { transaction });
        const rows = await t.app.sequelize.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, number> }> }>(
          `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${claim}`, { transaction, type: QueryTypes.SELECT },
        );
        return rows[0]['QUERY PLAN'][0].Plan;
      });
      expect(explained['Actual Rows']).to.equal(100);
      const buffers = explained['Shared Hit Blocks'] + explained['Shared Read Blocks'];
      expect(buffers, `${buffers} buffers touched by one claim of 100`).to.be.below(200);
    });

    it('processes in id order, ties broken by id, also past the digits of a text sort', async () => {
      const order: string[] = [];
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', ({ new: author }) => { order.push(author!.name); });
      const names = Array.from({ length: 25 }, (_, i) => `n${i}`);
      await t.app.sequelize.transaction(async (transaction) => {
        for (const name of names) await t.app.Author.create({ name }, { transaction });
      });
      await listen({ recover: true, batchSize: 4 });
      await emptied();
      expect(order).to.deep.equal(names);
    });

    it('processes two identical writes in one transaction twice, leaving nothing behind', async () => {
      const ops: string[] = [];
      t.app.sequelize.pgpubsub.on(t.app.Media, 'media_changed', ({ op }) => { ops.push(op); });
      await t.app.Media.create({ key: 'same', name: 'x' });
      await listen();
      await t.app.sequelize.transaction(async (transaction) => {
        await t.app.Media.update({ name: 'y' }, { where: { key: 'same' }, transaction });
        await t.app.Media.update({ name: 'y' }, { where: { key: 'same' }, transaction });
      });
      await emptied();
      expect(ops).to.deep.equal(['INSERT', 'UPDATE', 'UPDATE']);
    });

    it('processes the full payload of a 1 MB row', async () => {
      let length = 0;
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', ({ new: author }) => { length = author!.name.length; });
      await listen();
      await t.app.Author.create({ name: 'x'.repeat(1024 * 1024) });
      await emptied();
      expect(length).to.equal(1024 * 1024);
    });
  });

  it('keeps WELCOME as the default first post content', async () => {
    await listen();
    await t.app.Author.create({ name: 'plain' });
    await emptied();
    expect((await t.app.Post.findOne())!.content).to.equal(WELCOME);
  });
});
