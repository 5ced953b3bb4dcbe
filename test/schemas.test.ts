/**
 * Schemas: the library in a schema of the app's choosing (two apps, two libraries, one database),
 * db_version() following a migration storage table of any name, models under Sequelize's
 * searchPath, and schema-per-tenant apps (`Model.schema()`, `triggers sync --schemas`).
 */
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Options, QueryTypes, type Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import { eventually } from '../dev/eventually';
import { connect } from '../dev/example-app';
import { ROOT, SEQUELIZE_CLI, pgpubsubCli, run, shown } from '../dev/processes';
import { type ModelMessage, PgPubSubError, channel, libraryMigrations, migrations, pgpubsub } from '../lib';
import { defineThingApp } from './fixtures/thing-app';
import { type TestDatabase, emptyDatabase } from './support/hooks';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

async function rows<R extends object>(sequelize: Sequelize, sql: string): Promise<R[]> {
  return sequelize.query<R>(sql, { type: QueryTypes.SELECT });
}

const thingApp = defineThingApp;

describe('schemas', function () {
  this.timeout(90_000);
  let db: TestDatabase;
  const opened: Sequelize[] = [];
  const track = <T extends { sequelize: Sequelize }>(app: T) => {
    opened.push(app.sequelize);
    return app;
  };

  beforeEach(async function () {
    db = await emptyDatabase(this.currentTest!.title.slice(0, 20));
  });
  afterEach(async function () {
    for (const sequelize of opened.splice(0)) await sequelize.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('runs two apps in one database, each with its library in a schema of its own, neither touching the other', async () => {
    // App A: the default schema, installed the sync() way.
    const a = track(thingApp(db.url, 'a_made'));
    await a.sequelize.sync();
    await a.sequelize.pgpubsub.install();

    // App B: schema app_bus, through Umzug with a storage table of its own.
    const BCustom = channel<{ n: number }>('b_custom');
    const b = track(thingApp(db.url, 'b_made', { schema: 'app_bus', channels: [BCustom] }));
    expect(b.sequelize.pgpubsub.schema).to.equal('app_bus');
    const storage = { tableName: 'b_migrations' };
    await new Umzug({
      migrations: [
        ...libraryMigrations({ schema: 'app_bus', storage }),
        { name: '20260101000000-b-things.js', up: () => b.Thing.sync(), down: () => b.Thing.drop() },
        b.sequelize.pgpubsub.triggers.migration(),
      ],
      context: b.sequelize.getQueryInterface(),
      storage: new SequelizeStorage({ sequelize: b.sequelize, ...storage }),
      logger: undefined,
    }).up();

    const [{ tables }] = await rows<{ tables: string[] }>(a.sequelize,
      "SELECT array_agg(table_name::text ORDER BY table_name) AS tables FROM information_schema.tables WHERE table_schema = 'app_bus'");
    expect(tables).to.deep.equal(['inbox', 'inflight', 'listener', 'notification', 'paused', 'version']);
    // Neither sync pruned the other's trigger.
    expect((await a.sequelize.pgpubsub.triggers.check()).ok).to.equal(true);
    expect((await b.sequelize.pgpubsub.triggers.check()).ok).to.equal(true);
    await b.sequelize.pgpubsub.triggers.sync();
    await a.sequelize.pgpubsub.triggers.sync();
    expect((await b.sequelize.pgpubsub.triggers.ls()).map((s) => `${s.status} ${s.channel}`)).to.deep.equal(['INSTALLED b_made']);

    await b.sequelize.pgpubsub.notify(BCustom, { n: 1 });
    expect(await rows(a.sequelize, 'SELECT channel FROM app_bus.notification')).to.deep.equal([{ channel: 'b_custom' }]);
    await b.sequelize.query("DELETE FROM app_bus.notification WHERE channel = 'b_custom'");
    await b.Thing.create({ name: 'for b' });
    await a.Thing.create({ name: 'for a' });
    // Each row went to its own library, B's stamped with B's newest migration (the trigger step is not a version).
    expect(await rows(a.sequelize, 'SELECT channel, db_version FROM app_bus.notification')).to.deep.equal([
      { channel: 'b_made', db_version: '20260101000000-b-things.js' },
    ]);
    expect(await rows(a.sequelize, 'SELECT channel FROM pgpubsub.notification')).to.deep.equal([{ channel: 'a_made' }]);

    const seen: string[] = [];
    b.sequelize.pgpubsub.on(b.Thing, 'b_made', ({ new: thing }) => { seen.push(`b:${thing!.get('name')}`); });
    a.sequelize.pgpubsub.on(a.Thing, 'a_made', ({ new: thing }) => { seen.push(`a:${thing!.get('name')}`); });
    const listeners = [await b.sequelize.pgpubsub.listen({ logger: quiet }), await a.sequelize.pgpubsub.listen({ logger: quiet })];
    try {
      await eventually(async () => seen.length === 2, 'both notifications');
    } finally {
      for (const listener of listeners) await listener.stop();
    }
    expect(seen.sort()).to.deep.equal(['a:for a', 'b:for b']);
    for (const table of ['app_bus.notification', 'pgpubsub.notification']) {
      expect(await rows(a.sequelize, `SELECT count(*)::int AS n FROM ${table}`), table).to.deep.equal([{ n: 0 }]);
    }
  });

  it('refuses a schema it cannot use, and a listener on a schema without the library names the schemas that have it', async () => {
    for (const schema of ['public', 'pg_bus', 'Bus', 'a-b', '']) {
      expect(() => connect(db.url).use(pgpubsub, { schema }), schema).to.throw(PgPubSubError, /schema/)
        .with.property('code', 'PGPUBSUB_SCHEMA');
    }
    const installed = track(thingApp(db.url, 'c_made', { schema: 'app_bus' }));
    await installed.sequelize.sync();
    await installed.sequelize.pgpubsub.install();
    expect(() => installed.sequelize.use(pgpubsub, { schema: 'other' })).to.throw(/already uses the library in schema 'app_bus'/);

    const misconfigured = track(thingApp(db.url, 'c_made', { schema: 'app_events' }));
    misconfigured.sequelize.pgpubsub.on(misconfigured.Thing, 'c_made', () => {});
    const error = await misconfigured.sequelize.pgpubsub.listen({ logger: quiet }).then(() => null, (e: unknown) => e as PgPubSubError);
    expect(error?.code).to.equal('PGPUBSUB_NOT_INSTALLED');
    expect(error?.message).to.include('(schema app_events)').and.include('this database has it in schema app_bus')
      .and.include("require('sequelize-pgpubsub/migrations/baseline').withOptions({ schema: 'app_events' })");
  });

  it("installs into the schema a sequelize-cli stub names, keeping db_version() current in sequelize-cli's migrationStorageTableName and migrationStorageTableSchema", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-storage-'));
    try {
      fs.mkdirSync(path.join(dir, 'migrations'));
      fs.writeFileSync(path.join(dir, '.sequelizerc'), `require(${JSON.stringify(require.resolve('tsx/cjs'))});\n`);
      fs.mkdirSync(path.join(dir, 'config'));
      fs.writeFileSync(path.join(dir, 'config', 'config.json'), JSON.stringify({
        development: { use_env_variable: 'DATABASE_URL', dialect: 'postgres', logging: false, migrationStorageTableName: 'app_migrations', migrationStorageTableSchema: 'meta' },
      }));
      // docs/security.md's stubs ("Schemas") for a schema of the app's own, requiring this checkout's lib/.
      const stubs = path.join(ROOT, 'examples', 'own-schema', 'migrations');
      for (const file of fs.readdirSync(stubs)) {
        const stub = fs.readFileSync(path.join(stubs, file), 'utf8').replace("require('sequelize-pgpubsub/", `require('${ROOT}/lib/db/`);
        fs.writeFileSync(path.join(dir, 'migrations', file), stub);
      }
      fs.writeFileSync(path.join(dir, 'migrations', '20260301000000-nothing.js'), 'module.exports = { up: async () => {}, down: async () => {} };\n');
      const sequelize = connect(db.url);
      opened.push(sequelize);
      await sequelize.query('CREATE SCHEMA meta');
      const up = await run(SEQUELIZE_CLI, ['db:migrate'], { url: db.url, cwd: dir });
      expect(up.code, shown(up)).to.equal(0);
      expect(await rows(sequelize, 'SELECT app_pubsub.db_version() AS v')).to.deep.equal([{ v: '20260301000000-nothing.js' }]);
      const undo = await run(SEQUELIZE_CLI, ['db:migrate:undo'], { url: db.url, cwd: dir });
      expect(undo.code, shown(undo)).to.equal(0);
      expect(await rows(sequelize, 'SELECT app_pubsub.db_version() AS v')).to.deep.equal([{ v: '00000000000004-pgpubsub-claim-plan.js' }]);
      // No stray table in public (the storage table is where the config says), and no default schema.
      expect(await rows(sequelize, "SELECT to_regclass('public.\"SequelizeMeta\"') AS t, to_regnamespace('pgpubsub') AS s")).to.deep.equal([{ t: null, s: null }]);
      const undoAll = await run(SEQUELIZE_CLI, ['db:migrate:undo:all'], { url: db.url, cwd: dir });
      expect(undoAll.code, shown(undoAll)).to.equal(0);
      expect(await rows(sequelize, "SELECT to_regnamespace('app_pubsub') AS s, to_regclass('public.pgpubsub_notification') AS t")).to.deep.equal([{ s: null, t: null }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("syncs, checks and runs the triggers of a model in Sequelize's searchPath schema", async () => {
    const setup = connect(db.url);
    opened.push(setup);
    await setup.query('CREATE SCHEMA app');
    const app = track(thingApp(db.url, 'sp_made', {}, { searchPath: 'app', dialectOptions: { prependSearchPath: true } } as Options));
    expect(app.sequelize.pgpubsub.modelChannels()[0].schema).to.equal('app');
    for (const migration of migrations) await migration.up({ context: app.sequelize.getQueryInterface() });
    await app.Thing.sync();
    expect(await rows(setup, "SELECT to_regclass('app.sp_made_things') IS NOT NULL AS here")).to.deep.equal([{ here: true }]);
    await app.sequelize.pgpubsub.triggers.sync();
    expect((await app.sequelize.pgpubsub.triggers.check()).ok).to.equal(true);

    const seen: string[] = [];
    app.sequelize.pgpubsub.on(app.Thing, 'sp_made', ({ new: thing, schema, context }) => { seen.push(`${schema}:${thing!.get('name')}:${context.who}`); });
    // Every library query through this Sequelize (which puts SET search_path before each) works: claim, delete, notify.
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet });
    try {
      await app.sequelize.pgpubsub.withContext({ who: 'test' }, (transaction) => app.Thing.create({ name: 'in app' }, { transaction }));
      await eventually(async () => seen.length === 1, 'the notification');
    } finally {
      await listener.stop();
    }
    expect(seen).to.deep.equal(['app:in app:test']);
  });

  it('gives schema-per-tenant apps triggers in every tenant schema, and a tenant sync leaves the others alone', async () => {
    const setup = connect(db.url);
    opened.push(setup);
    for (const tenant of ['tenant1', 'tenant2', 'tenant3']) await setup.query(`CREATE SCHEMA ${tenant}`);
    const app = track(thingApp(db.url, 't_made'));
    // No install(): it would sync the triggers of public.t_made_things, which this app does not have.
    for (const migration of migrations) await migration.up({ context: app.sequelize.getQueryInterface() });
    for (const tenant of ['tenant1', 'tenant2', 'tenant3']) await app.Thing.schema(tenant).sync();

    const cli = (args: string[]) => pgpubsubCli(['triggers', ...args, '--app', path.join(ROOT, 'test', 'fixtures', 'thing-app.ts')], {
      url: db.url, env: { PGPUBSUB_THING_CHANNEL: 't_made' },
    });
    const first = await cli(['sync', '--schemas', 'tenant1,tenant2']);
    expect(first.code, shown(first)).to.equal(0);
    expect(first.stdout).to.include('Installed 2,');
    // A tenant added later is synced alone; the first two are neither checked nor pruned.
    const added = await cli(['sync', '--schemas', 'tenant3']);
    expect(added.stdout, shown(added)).to.include('Installed 1, replaced 0, pruned 0');
    const check = await cli(['check', '--schemas', 'tenant1,tenant2,tenant3']);
    expect(check.code, shown(check)).to.equal(0);
    const ls = await cli(['ls', '--json', '--schemas', 'tenant2']);
    expect((JSON.parse(ls.stdout) as Array<{ schema: string; status: string }>).map((s) => `${s.schema} ${s.status}`)).to.deep.equal(['tenant2 INSTALLED']);

    const seen: Array<{ schema: string; name: unknown; reloaded: unknown }> = [];
    app.sequelize.pgpubsub.on(app.Thing, 't_made', async (message: ModelMessage, { transaction }) => {
      // The instance belongs to the tenant's table: reloading it reads that tenant's row.
      const reloaded = await message.new!.reload({ transaction });
      seen.push({ schema: message.schema, name: message.new!.get('name'), reloaded: reloaded.get('name') });
    });
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet });
    try {
      await app.Thing.schema('tenant2').create({ name: 'second tenant' });
      await app.Thing.schema('tenant3').create({ name: 'third tenant' });
      await eventually(async () => seen.length === 2, 'both tenants');
    } finally {
      await listener.stop();
    }
    expect(seen.sort((x, y) => x.schema.localeCompare(y.schema))).to.deep.equal([
      { schema: 'tenant2', name: 'second tenant', reloaded: 'second tenant' },
      { schema: 'tenant3', name: 'third tenant', reloaded: 'third tenant' },
    ]);
  });
});
