import { expect } from 'chai';
import { Client } from 'pg';
import { QueryTypes } from 'sequelize';
import type { App } from '../models/app';
import { type TestDatabase, testDatabase } from './support/hooks';
import { openApp } from '../dev/example-app';
import { listenTo, storedNotifications } from './support/notifications';

describe('stored notifications from table writes', () => {
  let db: TestDatabase;
  let app: App;

  before(async () => {
    db = await testDatabase('payloads');
    app = openApp(db.url);
  });
  after(async () => {
    await app?.sequelize.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await app.sequelize.query('TRUNCATE pgpubsub.notification, authors, posts, media, post_media, parents, children RESTART IDENTITY CASCADE');
  });

  it('stores exactly one notification per inserted author, with op INSERT, old null and new keyed by column', async () => {
    const author = await app.Author.create({ name: "O'Brien", alternativeName: 'Bob', profilePictureId: 'pic-1', userId: 7 });
    const rows = await storedNotifications(app.sequelize);
    expect(rows).to.have.length(1);
    expect(rows[0].channel).to.equal('author_created');
    const { payload } = rows[0];
    expect(payload).to.include({ op: 'INSERT', schema: 'public', table: 'authors', model: 'Author', old: null });
    expect(payload.context).to.deep.equal({});
    expect(payload.new).to.deep.equal({
      id: author.id, user_id: 7, name: "O'Brien", age: null, active: true, picture: 'pic-1', other: 'Bob',
    });
  });

  it('stores nothing for a model write whose channel does not listen to that event', async () => {
    const author = await app.Author.create({ name: 'a' });
    await app.sequelize.query('DELETE FROM pgpubsub.notification');
    await app.Post.create({ content: 'hello', authorId: author.id });
    await app.Author.update({ age: 40 }, { where: { id: author.id } });
    expect(await storedNotifications(app.sequelize)).to.have.length(0);
  });

  it('stores nothing when the transaction rolls back', async () => {
    const failure = new Error('roll back');
    await app.sequelize.transaction(async (transaction) => {
      await app.Author.create({ name: 'never' }, { transaction });
      throw failure;
    }).catch((error) => expect(error).to.equal(failure));
    expect(await storedNotifications(app.sequelize)).to.have.length(0);
    expect(await app.Author.count()).to.equal(0);
  });

  it('stores one notification per row of a bulk insert of 1,000 authors, in insertion order', async () => {
    const names = Array.from({ length: 1000 }, (_, i) => `author ${i}`);
    const authors = await app.Author.bulkCreate(names.map((name) => ({ name })));
    const rows = await storedNotifications(app.sequelize, 'author_created');
    expect(rows).to.have.length(1000);
    expect(rows.map((row) => row.payload.new.name)).to.deep.equal(names);
    expect(rows.map((row) => row.payload.new.id)).to.deep.equal(authors.map((author) => author.id));
    expect(rows.every((row) => row.payload.op === 'INSERT' && row.payload.old === null)).to.equal(true);
  });

  it('stores old and new on update, pairing them even when the update changes the primary key', async () => {
    await app.Media.bulkCreate([
      { key: 'a', name: 'first', size: '9007199254740993', storeId: 's1' },
      { key: 'b', name: 'second', size: '2', storeId: 's2' },
    ]);
    await app.sequelize.query("UPDATE media SET key = key || '-moved', name = upper(name)");
    const updates = (await storedNotifications(app.sequelize, 'media_changed')).filter((row) => row.payload.op === 'UPDATE');
    expect(updates).to.have.length(2);
    for (const { payload } of updates) {
      expect(payload.new.key).to.equal(`${payload.old.key}-moved`);
      expect(payload.new.name).to.equal(payload.old.name.toUpperCase());
      expect(payload.new.store_id).to.equal(payload.old.store_id);
    }
  });

  it('stores old with the row as it was and new null on delete, timestamps to the microsecond', async () => {
    const author = await app.Author.create({ name: 'writer' });
    await app.sequelize.query("INSERT INTO posts (content, date, author_id, rating) VALUES ('p', '2024-02-29 12:34:56.123456+00', :id, 1.1)", { replacements: { id: author.id } });
    const [post] = await app.sequelize.query<{ id: number }>('SELECT id FROM posts', { type: QueryTypes.SELECT });
    await app.Post.destroy({ where: { id: post.id } });
    const [deleted] = await storedNotifications(app.sequelize, 'post_deleted');
    expect(deleted.payload).to.include({ op: 'DELETE', new: null, model: 'Post' });
    expect(deleted.payload.old).to.include({ id: post.id, author_id: author.id, content: 'p' });
    expect(new Date(deleted.payload.old.date).toISOString()).to.equal('2024-02-29T12:34:56.123Z');
    expect(deleted.payload.old.date).to.match(/^2024-02-29T12:34:56\.123456/);
  });

  it('keeps a DECIMAL(40,20) value exact in the stored payload', async () => {
    await app.Post.create({ content: 'rated', rating: '1.1' });
    await app.Post.destroy({ where: {} });
    const [row] = await app.sequelize.query<{ rating: string }>(
      "SELECT payload->'old'->>'rating' AS rating FROM pgpubsub.notification WHERE channel = 'post_deleted'",
      { type: QueryTypes.SELECT },
    );
    expect(row.rating).to.equal('1.10000000000000000000');
  });

  it("stores the child model's shared primary key", async () => {
    const parent = await app.Parent.create({ name: 'p' });
    await app.Child.create({ parentId: parent.id, nickname: 'c' });
    await app.Child.update({ nickname: 'renamed' }, { where: { parentId: parent.id } });
    const rows = await storedNotifications(app.sequelize, 'child_changed');
    expect(rows.map((row) => row.payload.op)).to.deep.equal(['INSERT', 'UPDATE']);
    expect(rows[0].payload.new).to.deep.equal({ parent_id: parent.id, nickname: 'c' });
    expect(rows[1].payload.new).to.deep.equal({ parent_id: parent.id, nickname: 'renamed' });
  });

  it('stores a 1 MB row whole', async () => {
    const big = 'x'.repeat(1024 * 1024);
    await app.Author.create({ name: big });
    const [row] = await storedNotifications(app.sequelize);
    expect(row.payload.new.name).to.have.length(big.length);
    expect(row.payload.new.name).to.equal(big);
  });

  it('stores two notifications for two identical writes in one transaction', async () => {
    const media = await app.Media.create({ key: 'm', name: 'same' });
    await app.sequelize.query('DELETE FROM pgpubsub.notification');
    await app.sequelize.transaction(async (transaction) => {
      await app.Media.update({ name: 'same' }, { where: { key: media.key }, transaction });
      await app.Media.update({ name: 'same' }, { where: { key: media.key }, transaction });
    });
    const rows = await storedNotifications(app.sequelize);
    expect(rows).to.have.length(2);
    expect(rows[0].payload).to.deep.equal(rows[1].payload);
  });

  it('stores nothing for a statement that touches no rows', async () => {
    await app.Media.update({ name: 'x' }, { where: { key: 'missing' } });
    await app.Post.destroy({ where: { id: -1 } });
    expect(await storedNotifications(app.sequelize)).to.have.length(0);
  });

  it('records a creation time not before the transaction began and the newest migration as db_version', async () => {
    const began = await app.sequelize.transaction(async (transaction) => {
      const [{ now }] = await app.sequelize.query<{ now: Date }>('SELECT now() AS now', { type: QueryTypes.SELECT, transaction });
      await app.Author.create({ name: 'timed' }, { transaction });
      return now;
    });
    const [newest] = await app.sequelize.query<{ name: string }>(
      'SELECT name FROM "SequelizeMeta" ORDER BY name DESC LIMIT 1',
      { type: QueryTypes.SELECT },
    );
    const [row] = await storedNotifications(app.sequelize);
    // now() is the transaction's start: the row is stamped with exactly that instant, not earlier.
    expect(row.created_at.getTime()).to.equal(began.getTime());
    expect(row.db_version).to.equal(newest.name);
    expect(row.attempts).to.equal(0);
    expect(row.failed_at).to.equal(null);
  });

  it('stamps writes of an open session with a migration recorded by another session once it commits, and with the previous one once it is undone', async () => {
    const writer = new Client({ connectionString: db.url });
    await writer.connect();
    const stamp = async (name: string) => {
      await writer.query('INSERT INTO authors (name) VALUES ($1)', [name]);
      const { rows } = await writer.query<{ v: string | null }>("SELECT db_version AS v FROM pgpubsub.notification WHERE payload -> 'new' ->> 'name' = $1", [name]);
      return rows[0].v;
    };
    const later = '29990101000000-later.js';
    try {
      const before = await stamp('before');
      const migration = await app.sequelize.transaction();
      await app.sequelize.query('INSERT INTO "SequelizeMeta" (name) VALUES ($1)', { bind: [later], transaction: migration });
      expect(await stamp('while the migration is open')).to.equal(before);
      await migration.commit();
      expect(await stamp('after it commits')).to.equal(later);
      await app.sequelize.query('DELETE FROM "SequelizeMeta" WHERE name = $1', { bind: [later] });
      expect(await stamp('after it is undone')).to.equal(before);
    } finally {
      await app.sequelize.query('DELETE FROM "SequelizeMeta" WHERE name = $1', { bind: [later] });
      await writer.end();
    }
  });

  it('wakes listeners with one small NOTIFY per transaction, not one per row', async () => {
    const listener = await listenTo(db.url, ['author_created', 'post_deleted']);
    try {
      await app.Author.bulkCreate(Array.from({ length: 500 }, (_, i) => ({ name: `n${i}` })));
      const received = await listener.waitFor(1);
      expect(received[0].channel).to.equal('author_created');
      expect(received[0].payload).to.equal('');
      expect(await listener.settle()).to.have.length(1);
    } finally {
      await listener.close();
    }
  });
});
