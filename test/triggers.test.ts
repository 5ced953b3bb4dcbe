import { expect } from 'chai';
import { DataTypes, QueryTypes, type Sequelize } from 'sequelize';
import pgpubsub, { type ModelChannelOptions, type TriggerState, migrations } from '../lib';
import { type TestDatabase, emptyDatabase } from './support/hooks';
import { connect } from '../dev/example-app';
import { listenTo, storedNotifications } from './support/notifications';
import { managedFunctionSql } from '../lib/db/catalog';

/** A fresh app on the test database whose Widget model declares `channels`. */
function widgetApp(url: string, channels: Record<string, ModelChannelOptions>) {
  const sequelize = connect(url).use(pgpubsub);
  const Widget = sequelize.define('Widget', {
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    label: { type: DataTypes.TEXT },
  }, { tableName: 'widgets', timestamps: false, pgpubsub: { channels } });
  return { sequelize, Widget };
}

const summary = (states: TriggerState[]) => states.map((s) => `${s.status} ${s.channel}:${s.event}`).sort();

async function managedObjects(sequelize: Sequelize) {
  const triggers = await sequelize.query<{ name: string }>(
    "SELECT tgname AS name FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = to_regclass('widgets') ORDER BY 1",
    { type: QueryTypes.SELECT },
  );
  const functions = await sequelize.query<{ name: string }>(
    `SELECT proname AS name FROM pg_proc p WHERE ${managedFunctionSql('p')} ORDER BY 1`,
    { type: QueryTypes.SELECT },
  );
  return { triggers: triggers.map((t) => t.name), functions: functions.map((f) => f.name) };
}

describe('trigger sync', () => {
  let db: TestDatabase;
  const open: Sequelize[] = [];
  const app = (channels: Record<string, ModelChannelOptions>) => {
    const made = widgetApp(db.url, channels);
    open.push(made.sequelize);
    return made;
  };

  beforeEach(async function () {
    db = await emptyDatabase(this.currentTest?.title.slice(0, 20) ?? 'triggers');
    const admin = connect(db.url);
    try {
      for (const migration of migrations) await migration.up({ context: admin.getQueryInterface() });
      await admin.query('CREATE TABLE widgets (id serial PRIMARY KEY, label text)');
      // A trigger this library does not manage, on the same table: every sync must leave it alone.
      await admin.query(`CREATE FUNCTION widget_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.label := coalesce(NEW.label, 'audited'); RETURN NEW; END $$;
        CREATE TRIGGER pgpubsub_lookalike BEFORE INSERT ON widgets FOR EACH ROW EXECUTE FUNCTION widget_audit();`);
    } finally {
      await admin.close();
    }
  });
  afterEach(async function () {
    await Promise.all(open.splice(0).map((s) => s.close()));
    // A failed test keeps its database for inspection.
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('lists every trigger UNINSTALLED on a fresh database, INSTALLED after sync, and check passes', async () => {
    const { sequelize } = app({ widget_changed: { events: ['insert', 'update', 'delete'] } });
    expect(summary(await sequelize.pgpubsub.triggers.ls())).to.deep.equal([
      'UNINSTALLED widget_changed:delete', 'UNINSTALLED widget_changed:insert', 'UNINSTALLED widget_changed:update',
    ]);
    expect((await sequelize.pgpubsub.triggers.check()).ok).to.equal(false);
    const result = await sequelize.pgpubsub.triggers.sync();
    expect(result.installed).to.have.length(3);
    expect(summary(await sequelize.pgpubsub.triggers.ls())).to.deep.equal([
      'INSTALLED widget_changed:delete', 'INSTALLED widget_changed:insert', 'INSTALLED widget_changed:update',
    ]);
    expect(await sequelize.pgpubsub.triggers.check()).to.deep.equal({ ok: true, drift: [] });
  });

  it("warns about what a channel's trigger would run as the library's owner that another role owns: a column's type, a cast from it, a function when.sql calls", async () => {
    const role = `pgpubsub_writer_${process.pid}`;
    const { sequelize } = app({ widget_mood: { events: ['insert'], when: { sql: 'public.is_vip(new.id) AND pg_catalog.length(new.label) > 0' } } });
    await sequelize.query(`DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} NOLOGIN`);
    try {
      // The reproduction's set-up: a writer that owns an enum of a channel table, a cast from it to
      // json (to_jsonb() calls it), and a function a condition calls; each would run as the owner.
      await sequelize.query(`
        CREATE TYPE mood AS ENUM ('ok', 'sad');
        ALTER TABLE widgets ADD COLUMN mood mood;
        CREATE FUNCTION public.mood_json(mood) RETURNS json LANGUAGE sql AS 'SELECT to_json($1::text)';
        CREATE CAST (mood AS json) WITH FUNCTION public.mood_json(mood);
        CREATE FUNCTION public.is_vip(integer) RETURNS boolean LANGUAGE sql AS 'SELECT true';
        ALTER TYPE mood OWNER TO ${role};
        ALTER FUNCTION public.mood_json(mood) OWNER TO ${role};
        ALTER FUNCTION public.is_vip(integer) OWNER TO ${role};`);
      const risks = await sequelize.pgpubsub.triggers.risks();
      expect(risks.map((r) => `${r.kind} ${r.object} ${r.owner}`)).to.deep.equal([
        `cast mood AS json WITH FUNCTION mood_json(mood) ${role}`, `type mood ${role}`, `function is_vip(integer) ${role}`,
      ]);
      expect(risks[1].message).to.contain(`column mood of "public"."widgets" is of type mood, owned by role ${role}`).and.to.contain("exclude: ['mood']");
      expect(risks[2].message).to.contain("channel 'widget_mood''s when.sql calls is_vip(integer)");
      // Owned by the library's owner: nothing to say.
      await sequelize.query(`ALTER TYPE mood OWNER TO CURRENT_USER; ALTER FUNCTION public.mood_json(mood) OWNER TO CURRENT_USER; ALTER FUNCTION public.is_vip(integer) OWNER TO CURRENT_USER`);
      expect(await sequelize.pgpubsub.triggers.risks()).to.deep.equal([]);
    } finally {
      await sequelize.query(`REASSIGN OWNED BY ${role} TO CURRENT_USER; DROP OWNED BY ${role}; DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('refuses to sync on a database without the library, whose triggers would fail every write, naming the migrations', async () => {
    const { sequelize } = app({ widget_changed: { events: ['insert'] } });
    await sequelize.query('DROP SCHEMA pgpubsub CASCADE');
    const error = await sequelize.pgpubsub.triggers.sync().catch((e: Error) => e);
    expect(String(error)).to.contain("triggers sync: the library's objects (schema pgpubsub) are not installed in this database")
      .and.to.contain('00000000000001-pgpubsub-baseline.js');
    expect(summary(await sequelize.pgpubsub.triggers.ls())).to.deep.equal(['UNINSTALLED widget_changed:insert']);
    await sequelize.query("INSERT INTO widgets (label) VALUES ('still writable')");
  });

  it('is a no-op when synced twice', async () => {
    const { sequelize } = app({ widget_created: { events: ['insert'] } });
    await sequelize.pgpubsub.triggers.sync();
    const before = await managedObjects(sequelize);
    expect(await sequelize.pgpubsub.triggers.sync()).to.deep.equal({ installed: [], replaced: [], pruned: [] });
    expect(await managedObjects(sequelize)).to.deep.equal(before);
  });

  it('marks a changed definition OUTDATED, fails check, and replaces it on sync', async () => {
    await app({ widget_created: { events: ['insert'] } }).sequelize.pgpubsub.triggers.sync();
    const { sequelize } = app({ widget_created: { events: ['insert'], durable: false } });
    expect(summary(await sequelize.pgpubsub.triggers.ls())).to.deep.equal(['OUTDATED widget_created:insert']);
    expect((await sequelize.pgpubsub.triggers.check()).ok).to.equal(false);
    expect((await sequelize.pgpubsub.triggers.sync()).replaced).to.have.length(1);
    expect(summary(await sequelize.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_created:insert']);
  });

  it('marks a hand-edited trigger function OUTDATED', async () => {
    const { sequelize } = app({ widget_created: { events: ['insert'] } });
    await sequelize.pgpubsub.triggers.sync();
    const [{ name }] = await sequelize.pgpubsub.triggers.ls();
    await sequelize.query(`CREATE OR REPLACE FUNCTION "${name}"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`);
    expect(summary(await sequelize.pgpubsub.triggers.ls())).to.deep.equal(['OUTDATED widget_created:insert']);
    await sequelize.pgpubsub.triggers.sync();
    await sequelize.query("INSERT INTO widgets (label) VALUES ('back')");
    expect(await storedNotifications(sequelize)).to.have.length(1);
  });

  it('marks a removed channel PRUNE, and prune drops its trigger and function but nothing unmanaged', async () => {
    await app({ widget_created: { events: ['insert'] }, widget_deleted: { events: ['delete'] } }).sequelize.pgpubsub.triggers.sync();
    const { sequelize } = app({ widget_created: { events: ['insert'] } });
    expect(summary(await sequelize.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_created:insert', 'PRUNE widget_deleted:delete']);
    expect((await sequelize.pgpubsub.triggers.check()).ok).to.equal(false);
    const result = await sequelize.pgpubsub.triggers.prune();
    expect(result.pruned).to.have.length(1);
    expect(summary(await sequelize.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_created:insert']);
    const objects = await managedObjects(sequelize);
    expect(objects.triggers.filter((t) => t.includes('widget_deleted'))).to.deep.equal([]);
    expect(objects.functions.filter((f) => f.includes('widget_deleted'))).to.deep.equal([]);
    expect(objects.triggers).to.include('pgpubsub_lookalike');
  });

  it('never touches a trigger it does not manage, even one with the same name prefix', async () => {
    const { sequelize } = app({ widget_created: { events: ['insert'] } });
    await sequelize.pgpubsub.triggers.sync();
    await app({}).sequelize.pgpubsub.triggers.sync();
    const objects = await managedObjects(sequelize);
    expect(objects.triggers).to.deep.equal(['pgpubsub_lookalike']);
    expect(objects.functions).to.deep.equal([]);
    await sequelize.query('INSERT INTO widgets DEFAULT VALUES');
    const [row] = await sequelize.query<{ label: string }>('SELECT label FROM widgets', { type: QueryTypes.SELECT });
    expect(row.label).to.equal('audited');
  });

  it('drops an orphaned managed function whose table is gone', async () => {
    const { sequelize } = app({ widget_created: { events: ['insert'] } });
    await sequelize.pgpubsub.triggers.sync();
    await sequelize.query('DROP TABLE widgets');
    const other = app({});
    const states = await other.sequelize.pgpubsub.triggers.ls();
    expect(states.map((s) => [s.status, s.channel])).to.deep.equal([['PRUNE', 'widget_created']]);
    await other.sequelize.pgpubsub.triggers.sync();
    expect((await managedObjects(other.sequelize)).functions).to.deep.equal([]);
  });

  it('explains that the tables must exist before triggers can be synced', async () => {
    const { sequelize } = app({ widget_created: { events: ['insert'] } });
    await sequelize.query('DROP TABLE widgets');
    let failure: Error | undefined;
    await sequelize.pgpubsub.triggers.sync().catch((error: Error) => { failure = error; });
    expect(failure?.message).to.contain(`channel 'widget_created' on model Widget: table "public"."widgets" does not exist`);
    expect(failure?.message).to.contain('run your migrations');
  });

  it('lets two concurrent syncs both succeed, one after the other', async () => {
    const first = app({ widget_created: { events: ['insert', 'update'] } });
    const second = app({ widget_created: { events: ['insert', 'update'] } });
    const results = await Promise.all([first.sequelize.pgpubsub.triggers.sync(), second.sequelize.pgpubsub.triggers.sync()]);
    expect(results.map((r) => r.installed.length).sort()).to.deep.equal([0, 2]);
    expect((await first.sequelize.pgpubsub.triggers.check()).ok).to.equal(true);
  });

  it('names the Umzug trigger step by content, so it changes exactly when a definition does', () => {
    const a = app({ widget_created: { events: ['insert'] } }).sequelize.pgpubsub.triggers.migration().name;
    const b = app({ widget_created: { events: ['insert'] } }).sequelize.pgpubsub.triggers.migration().name;
    const c = app({ widget_created: { events: ['insert', 'delete'] } }).sequelize.pgpubsub.triggers.migration().name;
    expect(a).to.match(/^pgpubsub-triggers-[0-9a-f]{12}$/);
    expect(a).to.equal(b);
    expect(c).not.to.equal(a);
  });

  describe('a broadcast (not durable) channel', () => {
    it("sends only each row's primary key in its NOTIFY unless the channel asks for full rows, and stores nothing", async () => {
      const { sequelize } = app({ widget_seen: { events: ['insert', 'delete'], durable: false } });
      await sequelize.pgpubsub.triggers.sync();
      const listener = await listenTo(db.url, ['widget_seen']);
      try {
        await sequelize.query("INSERT INTO widgets (label) VALUES ('a')");
        await sequelize.query("DELETE FROM widgets WHERE label = 'a'");
        const payloads = (await listener.waitFor(2)).map((m) => JSON.parse(m.payload!));
        expect(payloads.map((p) => [p.op, p.new, p.old])).to.deep.equal([['INSERT', { id: 1 }, null], ['DELETE', null, { id: 1 }]]);
        expect(payloads[0]).to.not.have.property('truncated');
        expect(await storedNotifications(sequelize)).to.deep.equal([]);
      } finally {
        await listener.close();
      }
    });

    it('sends each row in its NOTIFY with fullRows, and stores nothing', async () => {
      const { sequelize } = app({ widget_seen: { events: ['insert', 'delete'], durable: false, fullRows: true } });
      await sequelize.pgpubsub.triggers.sync();
      const listener = await listenTo(db.url, ['widget_seen']);
      try {
        await sequelize.query("INSERT INTO widgets (label) VALUES ('a'), ('b')");
        await sequelize.query("DELETE FROM widgets WHERE label = 'a'");
        const received = await listener.waitFor(3);
        const payloads = received.map((m) => JSON.parse(m.payload!));
        expect(payloads.map((p) => [p.op, p.new?.label ?? null, p.old?.label ?? null])).to.deep.equal([
          ['INSERT', 'a', null], ['INSERT', 'b', null], ['DELETE', null, 'a'],
        ]);
        expect(await storedNotifications(sequelize)).to.deep.equal([]);
      } finally {
        await listener.close();
      }
    });

    it('never fails the write of a row too large for NOTIFY: it sends the primary key, marked truncated', async () => {
      const { sequelize } = app({ widget_seen: { events: ['insert'], durable: false, fullRows: true } });
      await sequelize.pgpubsub.triggers.sync();
      const listener = await listenTo(db.url, ['widget_seen']);
      try {
        await sequelize.query('INSERT INTO widgets (label) VALUES (:label)', { replacements: { label: 'y'.repeat(100_000) } });
        const [message] = await listener.waitFor(1);
        const payload = JSON.parse(message.payload!);
        expect(payload).to.deep.include({ op: 'INSERT', truncated: true, old: null, new: { id: 1 }, model: 'Widget' });
      } finally {
        await listener.close();
      }
    });
  });
});
