/**
 * Schema migrations end to end: the repo's sequelize-cli migrations run by the real sequelize-cli,
 * generated trigger migrations applied and reverted, and the programmatic Umzug v3 path.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataTypes, QueryTypes, type QueryInterface, Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import pgpubsub, { type LibraryMigration, type ModelChannelOptions, type TriggerState, generateTriggerMigration, migrations } from '../lib';
import { MIGRATIONS_DIR, connect } from '../dev/example-app';
import { type TestDatabase, emptyDatabase } from './support/hooks';
import { run, shown } from '../dev/processes';
import { managedFunctionSql, managedTriggerSql } from '../lib/db/catalog';
import { LIBRARY_TABLES } from '../lib/db/objects';

const ROOT = path.resolve(__dirname, '..');
const SEQUELIZE_CLI = path.join(ROOT, 'node_modules', '.bin', 'sequelize-cli');
const BIN = path.join(ROOT, 'bin', 'pgpubsub.js');
const TRIGGER_STEP_PREFIX = 'pgpubsub-triggers-';
const BASELINE_MIGRATION = '00000000000001-pgpubsub-baseline.js';
const LIBRARY_MIGRATIONS = [BASELINE_MIGRATION, '00000000000002-pgpubsub-claim-by-due.js', '00000000000003-pgpubsub-inbox.js', '00000000000004-pgpubsub-claim-plan.js'];

async function rows<R extends object>(sequelize: Sequelize, sql: string): Promise<R[]> {
  return sequelize.query<R>(sql, { type: QueryTypes.SELECT });
}

/** Every managed trigger and trigger function in the database, with what defines it, for before/after comparisons. */
async function managedObjects(sequelize: Sequelize) {
  const triggers = await rows<{ name: string; table: string; definition: string; comment: string | null }>(sequelize, `
    SELECT t.tgname AS name, t.tgrelid::regclass::text AS "table", pg_get_triggerdef(t.oid) AS definition,
           obj_description(t.oid, 'pg_trigger') AS comment
      FROM pg_trigger t WHERE ${managedTriggerSql('t')} ORDER BY 1`);
  const functions = await rows<{ name: string; body: string; comment: string | null }>(sequelize, `
    SELECT p.proname AS name, p.prosrc AS body, obj_description(p.oid, 'pg_proc') AS comment
      FROM pg_proc p WHERE ${managedFunctionSql('p')} ORDER BY 1`);
  return { triggers, functions };
}

const statuses = (states: TriggerState[]) => states.map((s) => `${s.status} ${s.channel}:${s.event}`).sort();

const WIDGETS_MIGRATION = '20270101000000-create-widgets.js';

/** An app step creating the table the test apps' Widget model lives in. */
const createWidgets: LibraryMigration = {
  name: WIDGETS_MIGRATION,
  up: async (...args: unknown[]) => {
    const { context } = args[0] as { context: QueryInterface };
    await context.createTable('widgets', {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      label: { type: DataTypes.TEXT },
    });
  },
  down: async (...args: unknown[]) => {
    const { context } = args[0] as { context: QueryInterface };
    await context.dropTable('widgets');
  },
};

function umzug(sequelize: Sequelize, steps: LibraryMigration[]) {
  return new Umzug({
    migrations: steps,
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize }),
    logger: undefined,
  });
}

describe('migrations', function () {
  this.timeout(60000);

  let db: TestDatabase;
  const open: Sequelize[] = [];
  const tmpDirs: string[] = [];

  /** A fresh app on the test database whose Widget model declares `channels`. */
  const widgetApp = (channels: Record<string, ModelChannelOptions>) => {
    const sequelize = connect(db.url).use(pgpubsub);
    open.push(sequelize);
    sequelize.define('Widget', {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      label: { type: DataTypes.TEXT },
    }, { tableName: 'widgets', timestamps: false, pgpubsub: { channels } });
    return sequelize;
  };
  const meta = async (sequelize: Sequelize) =>
    (await rows<{ name: string }>(sequelize, 'SELECT name FROM "SequelizeMeta" ORDER BY name')).map((row) => row.name);

  beforeEach(async function () {
    db = await emptyDatabase(this.currentTest?.title.slice(0, 30) ?? 'migrations');
  });

  afterEach(async () => {
    for (const sequelize of open.splice(0)) await sequelize.close();
    for (const dir of tmpDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
    await db.drop();
  });

  describe('sequelize-cli with the repo migrations', () => {
    it('creates the tables, notification table and triggers on an empty database, removes them all on undo:all, and migrates again', async () => {
      const files = fs.readdirSync(MIGRATIONS_DIR).filter((file) => file.endsWith('.js')).sort();
      expect(files).to.include(BASELINE_MIGRATION);
      expect(files.some((file) => file.endsWith('-pgpubsub-triggers.js'))).to.equal(true);

      const up = await run(SEQUELIZE_CLI, ['db:migrate'], { url: db.url });
      expect(up.code, shown(up)).to.equal(0);
      const sequelize = connect(db.url);
      open.push(sequelize);
      expect(await meta(sequelize)).to.deep.equal(files);
      const tables = await rows<{ name: string }>(sequelize,
        "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables WHERE table_schema IN ('public', 'pgpubsub') ORDER BY 1");
      expect(tables.map((t) => t.name)).to.deep.equal([
        ...LIBRARY_TABLES.map((table) => `pgpubsub.${table}`),
        ...['SequelizeMeta', 'authors', 'children', 'media', 'media_history', 'parents', 'post_media', 'posts'].map((table) => `public.${table}`),
      ].sort());
      const installed = await managedObjects(sequelize);
      expect(installed.triggers.map((t) => t.table).sort()).to.deep.equal(['authors', 'children', 'children', 'media', 'media', 'posts']);
      expect(installed.functions.map((f) => f.name)).to.deep.equal(installed.triggers.map((t) => t.name).sort());

      const check = await run(process.execPath, [BIN, 'triggers', 'check'], { url: db.url });
      expect(check.code, shown(check)).to.equal(0);

      const undo = await run(SEQUELIZE_CLI, ['db:migrate:undo:all'], { url: db.url });
      expect(undo.code, shown(undo)).to.equal(0);
      expect(await meta(sequelize)).to.deep.equal([]);
      expect(await rows(sequelize, "SELECT to_regclass('pgpubsub.notification') AS t")).to.deep.equal([{ t: null }]);
      expect(await rows(sequelize,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'SequelizeMeta'")).to.deep.equal([]);
      expect(await rows(sequelize, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'pgpubsub\\_%'")).to.deep.equal([]);
      expect(await rows(sequelize, "SELECT proname FROM pg_proc WHERE proname LIKE 'pgpubsub\\_%'")).to.deep.equal([]);

      const again = await run(SEQUELIZE_CLI, ['db:migrate'], { url: db.url });
      expect(again.code, shown(again)).to.equal(0);
      expect(await meta(sequelize)).to.deep.equal(files);
      await sequelize.query("INSERT INTO authors (name) VALUES ('Ada')");
      const stored = await rows<{ channel: string; db_version: string; payload: { op: string; new: { name: string } } }>(sequelize,
        'SELECT channel, db_version, payload FROM pgpubsub.notification');
      expect(stored).to.have.length(1);
      expect(stored[0]).to.include({ channel: 'author_created', db_version: files.at(-1) });
      expect(stored[0].payload).to.deep.include({ op: 'INSERT' });
      expect(stored[0].payload.new).to.include({ name: 'Ada' });
    });
  });

  describe('generated trigger migrations', () => {
    const tmpDir = () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-migrations-'));
      tmpDirs.push(dir);
      return dir;
    };

    /** Runs a generated migration's up or down as sequelize-cli calls it: (queryInterface, Sequelize). */
    const apply = async (file: string, direction: 'up' | 'down', sequelize: Sequelize) => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- a generated CommonJS migration.
      const migration = require(file) as { up: Function; down: Function };
      await migration[direction](sequelize.getQueryInterface(), Sequelize);
    };

    it('stops with a clear error, installing nothing, on a database without the library', async () => {
      const setup = connect(db.url);
      open.push(setup);
      await setup.query('CREATE TABLE widgets (id serial PRIMARY KEY, label text)');
      const dir = tmpDir();
      const generated = generateTriggerMigration(widgetApp({ widget_saved: { events: ['insert'] } }).pgpubsub, { migrationsPath: dir });
      const error = await apply(generated.file!, 'up', setup).catch((e: Error) => e);
      expect(String(error)).to.contain("pgpubsub trigger migration: the library's objects (schema pgpubsub) are not installed")
        .and.to.contain("00000000000001-pgpubsub-baseline.js (module.exports = require('sequelize-pgpubsub/migrations/baseline'))");
      expect((await managedObjects(setup)).triggers).to.deep.equal([]);
    });

    it('stops naming the file and the fix, installing nothing, when a table migration sorts after it', async () => {
      const setup = connect(db.url);
      open.push(setup);
      for (const migration of migrations) await migration.up(setup.getQueryInterface(), Sequelize);
      const dir = tmpDir();
      // The triggers were generated first; the table's migration, written later, would run after them.
      const generated = generateTriggerMigration(widgetApp({ widget_saved: { events: ['insert'] } }).pgpubsub, { migrationsPath: dir });
      const error = await apply(generated.file!, 'up', setup).catch((e: Error) => e);
      expect(String(error)).to.contain(`pgpubsub trigger migration ${path.basename(generated.file!)}: table public.widgets (channel widget_saved on model Widget) does not exist yet`)
        .and.to.contain('rename this file so that its timestamp sorts after the migration that creates the table');
      expect((await managedObjects(setup)).triggers).to.deep.equal([]);
      await setup.query('CREATE TABLE widgets (id serial PRIMARY KEY, label text)');
      await apply(generated.file!, 'up', setup);
      expect((await managedObjects(setup)).triggers.map((trigger) => trigger.table)).to.deep.equal(['widgets']);
    });

    it('applies and reverts, and a second generation after a change moves between exactly the two states', async () => {
      const setup = connect(db.url);
      open.push(setup);
      for (const migration of migrations) await migration.up(setup.getQueryInterface(), Sequelize);
      await setup.query('CREATE TABLE widgets (id serial PRIMARY KEY, label text)');
      const dir = tmpDir();

      // First definitions: one durable channel on insert.
      const v1 = widgetApp({ widget_saved: { events: ['insert'] } });
      const first = generateTriggerMigration(v1.pgpubsub, { migrationsPath: dir, now: new Date('2027-01-01T00:00:00Z') });
      expect(first).to.include({ file: path.join(dir, '20270101000000-pgpubsub-triggers.js'), previous: null, installs: 1, removes: 0 });
      expect(statuses(await v1.pgpubsub.triggers.ls())).to.deep.equal(['UNINSTALLED widget_saved:insert']);

      await apply(first.file!, 'up', setup);
      expect(statuses(await v1.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_saved:insert']);
      const firstState = await managedObjects(setup);
      expect(firstState.triggers).to.have.length(1);

      await apply(first.file!, 'down', setup);
      expect(statuses(await v1.pgpubsub.triggers.ls())).to.deep.equal(['UNINSTALLED widget_saved:insert']);
      expect(await managedObjects(setup)).to.deep.equal({ triggers: [], functions: [] });

      await apply(first.file!, 'up', setup);
      expect(await managedObjects(setup)).to.deep.equal(firstState);

      // Changed definitions: the channel becomes a broadcast and also records updates.
      const v2 = widgetApp({ widget_saved: { events: ['insert', 'update'], durable: false } });
      const second = generateTriggerMigration(v2.pgpubsub, { migrationsPath: dir, now: new Date('2027-01-02T00:00:00Z') });
      expect(second).to.include({ file: path.join(dir, '20270102000000-pgpubsub-triggers.js'), previous: first.file, installs: 2, removes: 0 });
      expect(fs.readdirSync(dir).sort()).to.deep.equal([path.basename(first.file!), path.basename(second.file!)]);
      expect(statuses(await v2.pgpubsub.triggers.ls())).to.deep.equal(['OUTDATED widget_saved:insert', 'UNINSTALLED widget_saved:update']);

      await apply(second.file!, 'up', setup);
      expect(statuses(await v2.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_saved:insert', 'INSTALLED widget_saved:update']);
      expect(statuses(await v1.pgpubsub.triggers.ls())).to.deep.equal(['OUTDATED widget_saved:insert', 'PRUNE widget_saved:update']);

      await apply(second.file!, 'down', setup);
      expect(statuses(await v1.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_saved:insert']);
      expect(await managedObjects(setup)).to.deep.equal(firstState);
      // The restored trigger records again: the durable insert trigger stores its row.
      await setup.query("INSERT INTO widgets (label) VALUES ('restored')");
      expect(await rows(setup, 'SELECT channel FROM pgpubsub.notification')).to.deep.equal([{ channel: 'widget_saved' }]);

      await apply(second.file!, 'up', setup);
      expect((await v2.pgpubsub.triggers.check()).ok).to.equal(true);
    });

    it('writes nothing when the definitions did not change since the last generated migration', async () => {
      const dir = tmpDir();
      const v1 = widgetApp({ widget_saved: { events: ['insert'] } });
      const first = generateTriggerMigration(v1.pgpubsub, { migrationsPath: dir, now: new Date('2027-01-01T00:00:00Z') });
      expect(first.file).to.be.a('string');

      const same = widgetApp({ widget_saved: { events: ['insert'] } });
      const unchanged = generateTriggerMigration(same.pgpubsub, { migrationsPath: dir, now: new Date('2027-01-02T00:00:00Z') });
      expect(unchanged).to.deep.equal({ file: null, previous: first.file, installs: 0, removes: 0 });
      expect(fs.readdirSync(dir)).to.deep.equal([path.basename(first.file!)]);

      const removed = widgetApp({});
      const third = generateTriggerMigration(removed.pgpubsub, { migrationsPath: dir, now: new Date('2027-01-03T00:00:00Z') });
      expect(third).to.include({ previous: first.file, installs: 0, removes: 1 });
      expect(third.file).to.be.a('string');
      expect(fs.readdirSync(dir)).to.have.length(2);
    });

    it('names a new migration after every existing one, even within the same second or with a clock behind', () => {
      const dir = tmpDir();
      const now = new Date('2027-01-01T00:00:00Z');
      const first = generateTriggerMigration(widgetApp({ widget_saved: { events: ['insert'] } }).pgpubsub, { migrationsPath: dir, now });
      const second = generateTriggerMigration(widgetApp({ widget_saved: { events: ['delete'] } }).pgpubsub, { migrationsPath: dir, now });
      const third = generateTriggerMigration(widgetApp({ widget_saved: { events: ['update'] } }).pgpubsub, { migrationsPath: dir, now: new Date('2026-06-01T00:00:00Z') });
      expect([first.file, second.file, third.file].map((file) => path.basename(file!))).to.deep.equal([
        '20270101000000-pgpubsub-triggers.js', '20270101000001-pgpubsub-triggers.js', '20270101000002-pgpubsub-triggers.js',
      ]);
      expect(second.previous).to.equal(first.file);
      expect(third.previous).to.equal(second.file);
    });
  });

  describe('programmatic Umzug v3', () => {
    it('records the library migration under the sequelize-cli stub name and reruns the trigger step only when a definition changes', async () => {
      expect(migrations.map((m) => m.name)).to.deep.equal(LIBRARY_MIGRATIONS);
      expect(fs.readdirSync(MIGRATIONS_DIR), 'the sequelize-cli stub files have the same names').to.include.members(LIBRARY_MIGRATIONS);

      const v1 = widgetApp({ widget_saved: { events: ['insert'] } });
      const step1 = v1.pgpubsub.triggers.migration();
      expect(step1.name.startsWith(TRIGGER_STEP_PREFIX), step1.name).to.equal(true);
      const ran = await umzug(v1, [...migrations, createWidgets, step1]).up();
      expect(ran.map((m) => m.name)).to.deep.equal([...LIBRARY_MIGRATIONS, WIDGETS_MIGRATION, step1.name]);
      expect(await meta(v1)).to.deep.equal([...LIBRARY_MIGRATIONS, WIDGETS_MIGRATION, step1.name].sort());
      expect(statuses(await v1.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_saved:insert']);
      expect(await rows(v1, "SELECT to_regclass('pgpubsub.notification')::text AS t")).to.deep.equal([{ t: 'pgpubsub.notification' }]);

      // Same definitions in a new process: same step name, so nothing runs.
      const same = widgetApp({ widget_saved: { events: ['insert'] } });
      const sameStep = same.pgpubsub.triggers.migration();
      expect(sameStep.name).to.equal(step1.name);
      const again = umzug(same, [...migrations, createWidgets, sameStep]);
      expect(await again.pending()).to.deep.equal([]);
      expect(await again.up()).to.deep.equal([]);

      // Changed definitions: a new step name, which Umzug runs, installing the new triggers.
      const v2 = widgetApp({ widget_saved: { events: ['insert', 'delete'] } });
      const step2 = v2.pgpubsub.triggers.migration();
      expect(step2.name.startsWith(TRIGGER_STEP_PREFIX), step2.name).to.equal(true);
      expect(step2.name).not.to.equal(step1.name);
      const changed = umzug(v2, [...migrations, createWidgets, step2]);
      expect((await changed.pending()).map((m) => m.name)).to.deep.equal([step2.name]);
      expect(statuses(await v2.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_saved:insert', 'UNINSTALLED widget_saved:delete'].sort());
      await changed.up();
      expect(statuses(await v2.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_saved:delete', 'INSTALLED widget_saved:insert']);
      expect(await meta(v2)).to.include(step2.name).and.not.include(step1.name);

      // Going back to the first definitions (a revert) runs the first step again.
      const back = umzug(v1, [...migrations, createWidgets, v1.pgpubsub.triggers.migration()]);
      expect((await back.pending()).map((m) => m.name)).to.deep.equal([step1.name]);
      await back.up();
      expect(statuses(await v1.pgpubsub.triggers.ls())).to.deep.equal(['INSTALLED widget_saved:insert']);
      await changed.up();

      // Reverting the trigger step removes the managed triggers; the app table stays.
      await changed.down();
      expect(statuses(await v2.pgpubsub.triggers.ls())).to.deep.equal(['UNINSTALLED widget_saved:delete', 'UNINSTALLED widget_saved:insert']);
      expect(await rows(v2, "SELECT to_regclass('public.widgets')::text AS t")).to.deep.equal([{ t: 'widgets' }]);
    });

    it('stamps a stored notification with the newest applied migration, ignoring the trigger steps', async () => {
      const app = widgetApp({ widget_saved: { events: ['insert'] } });
      const step = app.pgpubsub.triggers.migration();
      await umzug(app, [...migrations, createWidgets, step]).up();
      // By name the trigger step sorts after every timestamped migration, so it must be skipped explicitly.
      expect(await meta(app)).to.deep.equal([...LIBRARY_MIGRATIONS, WIDGETS_MIGRATION, step.name]);

      await app.query("INSERT INTO widgets (label) VALUES ('one')");
      const addColour: LibraryMigration = {
        name: '20270201000000-add-widget-colour.js',
        up: async () => { await app.query('ALTER TABLE widgets ADD COLUMN colour text'); },
        down: async () => { await app.query('ALTER TABLE widgets DROP COLUMN colour'); },
      };
      await umzug(app, [...migrations, createWidgets, addColour, step]).up();
      await app.query("INSERT INTO widgets (label, colour) VALUES ('two', 'red')");

      const stored = await rows<{ label: string; db_version: string | null }>(app,
        "SELECT payload->'new'->>'label' AS label, db_version FROM pgpubsub.notification ORDER BY id");
      expect(stored).to.deep.equal([
        { label: 'one', db_version: WIDGETS_MIGRATION },
        { label: 'two', db_version: '20270201000000-add-widget-colour.js' },
      ]);
      expect(await rows(app, 'SELECT pgpubsub.db_version() AS v')).to.deep.equal([{ v: '20270201000000-add-widget-colour.js' }]);
    });
  });
});
