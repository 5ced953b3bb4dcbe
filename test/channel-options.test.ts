/**
 * What a model channel records, chosen in its definition: `columns` and `exclude` (what goes into
 * the stored payload and broadcasts), `when.changed` and `when.sql` (which row changes count), the
 * `truncate` event, and a paranoid model's `soft_delete` and `restore`. Real triggers installed by
 * triggers.sync() on real tables, real commits, and a listener's messages.
 */
import { expect } from 'chai';
import { DataTypes, type ModelStatic, type Model, type Sequelize } from 'sequelize';
import pgpubsub, { ChannelDefinitionError, type ModelChannelOptions, type ModelMessage } from '../lib';
import { connect } from '../dev/example-app';
import { eventually } from '../dev/eventually';
import { type TestDatabase, libraryDatabase } from './support/hooks';
import { listenTo, storedNotifications } from './support/notifications';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe('model channel options', function () {
  this.timeout(30_000);
  let db: TestDatabase;
  const open: Sequelize[] = [];

  /** A fresh app whose Account model (paranoid when asked) declares `channels`, its table created and its triggers installed. */
  async function accounts(channels: Record<string, ModelChannelOptions>, options: { paranoid?: boolean } = {}) {
    const sequelize = connect(db.url).use(pgpubsub);
    open.push(sequelize);
    const Account = sequelize.define('Account', {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      email: { type: DataTypes.TEXT },
      passwordHash: { type: DataTypes.TEXT, field: 'password_hash' },
      status: { type: DataTypes.TEXT, defaultValue: 'pending' },
      bio: { type: DataTypes.TEXT },
    }, { tableName: 'accounts', timestamps: Boolean(options.paranoid), paranoid: Boolean(options.paranoid), pgpubsub: { channels } });
    await Account.sync({ force: true });
    await sequelize.pgpubsub.triggers.sync();
    return { sequelize, Account: Account as ModelStatic<Model & Record<string, any>> };
  }
  const stored = async (sequelize: Sequelize, channel: string) => (await storedNotifications(sequelize, channel)).map((row) => row.payload);

  beforeEach(async function () {
    db = await libraryDatabase(this.currentTest?.title.slice(0, 20) ?? 'options');
  });
  afterEach(async function () {
    await Promise.all(open.splice(0).map((s) => s.close()));
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('stores only the chosen columns (and the key), or all but the excluded ones, in payloads and broadcasts', async () => {
    const { sequelize, Account } = await accounts({
      account_emails: { events: ['insert', 'update'], columns: ['email'] },
      account_safe: { events: ['insert'], exclude: ['passwordHash', 'bio'] },
      account_live: { events: ['insert'], durable: false, fullRows: true, exclude: ['passwordHash'] },
    });
    const live = await listenTo(db.url, ['account_live']);
    try {
      const account = await Account.create({ email: 'a@example.com', passwordHash: 'secret-hash', bio: 'long text' });
      await account.update({ email: 'b@example.com' });
      const emails = await stored(sequelize, 'account_emails');
      expect(emails.map((p: any) => [p.op, p.old, p.new])).to.deep.equal([
        ['INSERT', null, { id: account.get('id'), email: 'a@example.com' }],
        ['UPDATE', { id: account.get('id'), email: 'a@example.com' }, { id: account.get('id'), email: 'b@example.com' }],
      ]);
      const [safe] = await stored(sequelize, 'account_safe');
      expect(Object.keys(safe.new).sort()).to.deep.equal(['email', 'id', 'status']);
      await eventually(() => live.received.length === 1, 'the broadcast');
      expect(JSON.parse(live.received[0].payload!).new).to.not.have.property('password_hash');
      expect(JSON.parse(live.received[0].payload!).new).to.include({ email: 'a@example.com', bio: 'long text' });

      // The listener's instances carry what was stored.
      const seen: ModelMessage[] = [];
      sequelize.pgpubsub.on(Account, 'account_safe', (message) => { seen.push(message); });
      const listener = await sequelize.pgpubsub.listen({ channels: ['account_safe'], logger: quiet });
      try {
        await eventually(() => seen.length === 1, 'the stored insert');
        expect(seen[0].new!.get('email')).to.equal('a@example.com');
        expect(seen[0].new!.get('passwordHash')).to.equal(undefined);
      } finally {
        await listener.stop();
      }
    } finally {
      await live.close();
    }
  });

  it("records an update only when a 'when.changed' attribute changed", async () => {
    const { sequelize, Account } = await accounts({ account_contact: { events: ['insert', 'update'], when: { changed: ['email', 'status'] } } });
    const account = await Account.create({ email: 'a@example.com' });
    await account.update({ bio: 'only the bio' });
    await account.update({ status: 'active' });
    await Account.update({ bio: 'all bios' }, { where: {} });
    await Account.update({ email: 'b@example.com', bio: 'both' }, { where: {} });
    expect((await stored(sequelize, 'account_contact')).map((p: any) => [p.op, p.new.status, p.new.email])).to.deep.equal([
      ['INSERT', 'pending', 'a@example.com'], ['UPDATE', 'active', 'a@example.com'], ['UPDATE', 'active', 'b@example.com'],
    ]);
  });

  it("records only the rows a 'when.sql' condition on old and new accepts, and refuses a bad one at install, leaving writes alone", async () => {
    const { sequelize, Account } = await accounts({
      account_paid: { events: ['insert', 'update'], when: { sql: "new.status = 'paid' AND old.status IS DISTINCT FROM 'paid'" } },
    });
    const paidAtOnce = await Account.create({ email: 'a@example.com', status: 'paid' });
    const later = await Account.create({ email: 'b@example.com' });
    await later.update({ status: 'paid' });
    await later.update({ bio: 'still paid' });
    await paidAtOnce.update({ status: 'refunded' });
    expect((await stored(sequelize, 'account_paid')).map((p: any) => [p.op, p.new.email])).to.deep.equal([['INSERT', 'a@example.com'], ['UPDATE', 'b@example.com']]);

    const bad = connect(db.url).use(pgpubsub);
    open.push(bad);
    const Broken = bad.define('Account', { id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, email: DataTypes.TEXT }, {
      tableName: 'accounts', timestamps: false, pgpubsub: { channels: { account_broken: { events: ['update'], when: { sql: 'new.no_such_column > 1' } } } },
    });
    const error = await bad.pgpubsub.triggers.sync().then(() => null, (e: Error) => e);
    expect(String(error)).to.contain('no_such_column');
    await Broken.update({ email: 'c@example.com' }, { where: {} });
    expect(await stored(sequelize, 'account_broken')).to.deep.equal([]);
    expect(() => sequelize.define('Other', { id: { type: DataTypes.INTEGER, primaryKey: true } }, {
      pgpubsub: { channels: { other_bad: { events: ['update'], when: { sql: '1 = 1; DROP TABLE accounts' } } } },
    }) && sequelize.pgpubsub.channels()).to.throw(ChannelDefinitionError, "'when.sql' must be one condition");
    // Breaking out of the parentheses the trigger puts around it, or hiding the closing one.
    for (const [sql, why] of [['false) OR (true', "a ')' that closes more than it opened"], ['(new.id > 1', "a '(' left open"], ['true --', 'no comments'], ["new.email = 'x", 'an unterminated string']]) {
      expect(() => sequelize.define('Other', { id: { type: DataTypes.INTEGER, primaryKey: true } }, {
        pgpubsub: { channels: { other_bad: { events: ['update'], when: { sql } } } },
      }) && sequelize.pgpubsub.channels(), sql).to.throw(ChannelDefinitionError, `'when.sql' must be one condition: ${why}`);
    }
    // Parentheses inside quotes are text.
    expect(() => sequelize.define('Other', { id: { type: DataTypes.INTEGER, primaryKey: true } }, {
      pgpubsub: { channels: { other_ok: { events: ['update'], when: { sql: "new.\"odd)name\" = 'it''s (not' AND (new.id > 1)" } } } },
    }) && sequelize.pgpubsub.channels()).not.to.throw();
  });

  it("sends one notification per TRUNCATE, destroy({ truncate: true }) included, with op 'TRUNCATE'", async () => {
    const { sequelize, Account } = await accounts({ account_wiped: { events: ['truncate'] } });
    await Account.bulkCreate([{ email: 'a' }, { email: 'b' }]);
    await Account.destroy({ truncate: true });
    await sequelize.query('TRUNCATE accounts');
    const payloads = await stored(sequelize, 'account_wiped');
    expect(payloads.map((p: any) => [p.op, p.old, p.new, p.table])).to.deep.equal([['TRUNCATE', null, null, 'accounts'], ['TRUNCATE', null, null, 'accounts']]);
    const seen: ModelMessage[] = [];
    sequelize.pgpubsub.on(Account, 'account_wiped', (message) => { seen.push(message); });
    const listener = await sequelize.pgpubsub.listen({ logger: quiet });
    try {
      await eventually(() => seen.length === 2, 'both truncates');
      expect(seen.map((m) => [m.op, m.old, m.new])).to.deep.equal([['TRUNCATE', null, null], ['TRUNCATE', null, null]]);
    } finally {
      await listener.stop();
    }
  });

  it("tells a paranoid model's soft deletes and restores from its updates", async () => {
    const { sequelize, Account } = await accounts({
      account_updated: { events: ['update'] },
      account_trash: { events: ['soft_delete', 'restore'] },
    }, { paranoid: true });
    const account = await Account.create({ email: 'a@example.com' });
    await account.update({ bio: 'edited' });
    await account.destroy();
    await account.restore();
    expect((await stored(sequelize, 'account_updated')).map((p: any) => [p.op, p.new.bio])).to.deep.equal([['UPDATE', 'edited']]);
    const trash = await stored(sequelize, 'account_trash');
    expect(trash.map((p: any) => p.op)).to.deep.equal(['SOFT_DELETE', 'RESTORE']);
    expect(trash[0].old.deletedAt).to.equal(null);
    expect(trash[0].new.deletedAt).to.be.a('string');

    const plain = connect(db.url).use(pgpubsub);
    open.push(plain);
    plain.define('Plain', { id: { type: DataTypes.INTEGER, primaryKey: true } }, { pgpubsub: { channels: { plain_trash: { events: ['soft_delete'] } } } });
    expect(() => plain.pgpubsub.channels()).to.throw(ChannelDefinitionError, "'soft_delete' need a paranoid model");
  });

  it('says what is wrong with columns, exclude and when', async () => {
    const sequelize = connect(db.url).use(pgpubsub);
    open.push(sequelize);
    const define = (name: string, options: ModelChannelOptions) => sequelize.define(name, {
      id: { type: DataTypes.INTEGER, primaryKey: true }, email: DataTypes.TEXT,
    }, { timestamps: false, pgpubsub: { channels: { [`${name.toLowerCase()}_c`]: options } } });
    define('A', { events: ['insert'], columns: ['emial'] });
    define('B', { events: ['insert'], columns: ['email'], exclude: ['email'] });
    define('C', { events: ['insert'], exclude: ['id'] });
    define('D', { events: ['insert'], when: { changed: ['email'] } });
    let error: unknown;
    try {
      sequelize.pgpubsub.channels();
    } catch (thrown) {
      error = thrown;
    }
    expect(error).to.be.instanceOf(ChannelDefinitionError);
    const message = (error as Error).message;
    expect(message).to.contain("'columns' names 'emial', not attributes of A (attributes: id, email)")
      .and.to.contain("give 'columns' or 'exclude', not both")
      .and.to.contain("'exclude' cannot leave out the primary key (id)")
      .and.to.contain("'when.changed' filters updates, and this channel records none");
  });
});
