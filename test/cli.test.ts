/**
 * The `pgpubsub` CLI as users run it: `node bin/pgpubsub.js …` in a real child process, with
 * DATABASE_URL pointing at a test database, asserting on exit codes, stdout and stderr.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TriggerState } from '../lib';
import { openApp } from '../dev/example-app';
import { type TestDatabase, emptyDatabase, testDatabase } from './support/hooks';
import { ROOT, type RunOptions, SEQUELIZE_CLI, pgpubsubCli, run, shown } from '../dev/processes';
import { sql } from '../dev/postgres';
import { eventually } from '../dev/eventually';
import { startProxy } from '../dev/proxy';
import { startListen } from '../dev/processes';
import { defineThingApp } from './fixtures/thing-app';
import { managedTriggerSql } from '../lib/db/catalog';
const APP_TABLES_MIGRATION = '20260101000000-create-example-app.js';
/** The example app's channels (models/app.ts) and the events each records. */
const APP_CHANNELS: Record<string, string[]> = {
  author_created: ['insert'],
  post_deleted: ['delete'],
  media_changed: ['insert', 'update'],
  child_changed: ['insert', 'update'],
};


const pgpubsub = (args: string[], options: RunOptions) => pgpubsubCli(args, options);

/** The data rows of `triggers ls` table output, split into columns (header excluded). */
function lsRows(stdout: string): { status: string; table: string; channel: string; event: string; model: string; name: string }[] {
  const lines = stdout.trimEnd().split('\n');
  expect(lines[0]).to.match(/^STATUS\s+TABLE\s+CHANNEL\s+EVENT\s+MODEL\s+TRIGGER$/);
  return lines.slice(1).map((line) => {
    const [status, table, channel, event, model, name] = line.split(/\s+/);
    return { status, table, channel, event, model, name };
  });
}


/** The triggers the example app asks for, as the library renders them. */
async function appTriggerNames(url: string): Promise<string[]> {
  const app = openApp(url);
  try {
    return app.sequelize.pgpubsub.triggers.desired().map((spec) => spec.name).sort();
  } finally {
    await app.sequelize.close();
  }
}

describe('pgpubsub CLI', function () {
  this.timeout(60000);

  const dbs: TestDatabase[] = [];
  const tmpDirs: string[] = [];
  const tmpDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-cli-'));
    tmpDirs.push(dir);
    return dir;
  };
  const fresh = async (make: typeof emptyDatabase, label: string) => {
    const db = await make(label);
    dbs.push(db);
    return db;
  };

  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.drop();
    for (const dir of tmpDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('usage', () => {
    it('prints the commands for --help and exits 0, and lists ls/check/sync/prune for triggers --help', async () => {
      const { url } = await fresh(emptyDatabase, 'cli help');
      const [top, triggers] = await Promise.all([pgpubsub(['--help'], { url }), pgpubsub(['triggers', '--help'], { url })]);

      expect(top.code, shown(top)).to.equal(0);
      expect(top.stdout).to.match(/^Usage: pgpubsub /m);
      expect(top.stdout).to.match(/^\s+triggers\b/m);
      expect(top.stdout).to.match(/^\s+migration:generate\b/m);
      expect(top.stdout).to.include('--app <module>');

      expect(triggers.code, shown(triggers)).to.equal(0);
      expect(triggers.stdout).to.match(/^Usage: pgpubsub triggers /m);
      for (const command of ['ls', 'check', 'sync', 'prune']) {
        expect(triggers.stdout, `triggers --help lists ${command}`).to.match(new RegExp(`^\\s+${command}\\b`, 'm'));
      }
    });

    it('prints the version for -v, -V and --version, as Node CLIs do, and exits 0', async () => {
      const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
      for (const flag of ['-v', '-V', '--version']) {
        const result = await pgpubsub([flag], {});
        expect(result.code, `${flag}: ${shown(result)}`).to.equal(0);
        expect(result.stdout.trim(), flag).to.equal(version);
      }
    });

    it('exits 2 with a usage hint on stderr for an unknown command, subcommand or option', async () => {
      const { url } = await fresh(emptyDatabase, 'cli usage');
      const cases: [string[], RegExp][] = [
        [['frobnicate'], /unknown command 'frobnicate'/],
        [['triggers', 'frobnicate'], /unknown command 'frobnicate'/],
        [['--frobnicate'], /unknown option '--frobnicate'/],
        [['triggers', 'ls', '--frobnicate'], /unknown option '--frobnicate'/],
      ];
      const results = await Promise.all(cases.map(([args]) => pgpubsub(args, { url })));
      results.forEach((result, i) => {
        const [args, message] = cases[i];
        expect(result.code, `pgpubsub ${args.join(' ')}: ${shown(result)}`).to.equal(2);
        expect(result.stderr, args.join(' ')).to.match(message);
        expect(result.stderr, args.join(' ')).to.include('--help');
        expect(result.stdout, args.join(' ')).to.equal('');
      });
    });
  });

  describe('listen options', () => {
    it('exits 2 naming the option for a --context-filter that is not a JSON object or an unknown --savepoints', async () => {
      const { url } = await fresh(emptyDatabase, 'cli listen usage');
      const cases: [string[], RegExp][] = [
        [['listen', '--context-filter', 'tenant=7'], /--context-filter must be a JSON object/],
        [['listen', '--context-filter', '[7]'], /--context-filter must be a JSON object/],
        [['listen', '--savepoints', 'sometimes'], /--savepoints.*sometimes.*Allowed choices are on-failure, always/],
      ];
      const results = await Promise.all(cases.map(([args]) => pgpubsub(args, { url })));
      results.forEach((result, i) => {
        expect(result.code, shown(result)).to.equal(2);
        expect(result.stderr).to.match(cases[i][1]);
      });
    });

    it('passes --context-filter, --savepoints and --listen-url to the listener, and keeps the app\'s SQL logging off its stdout', async () => {
      const db = await fresh(emptyDatabase, 'cli listen options');
      const app = defineThingApp(db.url, 'cli_made');
      try {
        await app.sequelize.sync();
        await app.sequelize.pgpubsub.install();
        for (const tenant of [7, 8]) {
          await app.sequelize.pgpubsub.withContext({ tenant }, (transaction) => app.Thing.create({ name: `for ${tenant}` }, { transaction }));
        }
        const proxy = await startProxy(db.url);
        const listener = startListen(db.url, [
          '--worker', '--app', path.join(ROOT, 'test', 'fixtures', 'thing-app.ts'),
          '--context-filter', '{"tenant":7}', '--savepoints', 'always', '--listen-url', proxy.via(db.url),
        ], { PGPUBSUB_THING_CHANNEL: 'cli_made', PGPUBSUB_SQL_LOG: '1' });
        try {
          await listener.event('recovered');
          await eventually(() => listener.all('batch').some((e) => e.processed === 1), 'the tenant 7 row');
          expect(proxy.statements(), 'the LISTEN connection went through --listen-url').to.be.above(0);
        } finally {
          expect((await listener.stop()).code).to.equal(0);
          await proxy.close();
        }
        const left = await app.sequelize.query("SELECT payload -> 'context' AS context FROM pgpubsub.notification", { type: 'SELECT' as never });
        expect(left).to.deep.equal([{ context: { tenant: 8 } }]);
        expect(listener.output, 'stdout lines that are not the listener\'s JSON (e.g. SQL logging)').to.deep.equal([]);
      } finally {
        await app.sequelize.close();
      }
    });
  });

  describe('triggers on the example app', () => {
    it('lists UNINSTALLED triggers and fails check before sync, then sync installs them all', async () => {
      const { url } = await fresh(emptyDatabase, 'cli sync');
      const migrate = await run(SEQUELIZE_CLI, ['db:migrate', '--to', APP_TABLES_MIGRATION], { url });
      expect(migrate.code, shown(migrate)).to.equal(0);
      const expected = await appTriggerNames(url);
      expect(expected).to.have.length(6);

      const before = await pgpubsub(['triggers', 'ls'], { url });
      expect(before.code, shown(before)).to.equal(0);
      const rows = lsRows(before.stdout);
      expect(rows.map((row) => row.status)).to.deep.equal(expected.map(() => 'UNINSTALLED'));
      expect(rows.map((row) => row.name).sort()).to.deep.equal(expected);
      for (const [channel, events] of Object.entries(APP_CHANNELS)) {
        expect(rows.filter((row) => row.channel === channel).map((row) => row.event).sort(), channel).to.deep.equal(events);
      }

      const failing = await pgpubsub(['triggers', 'check'], { url });
      expect(failing.code, shown(failing)).to.equal(1);
      expect(failing.stderr).to.include('6 trigger(s) drifted');
      expect(lsRows(failing.stdout).map((row) => row.status)).to.deep.equal(expected.map(() => 'UNINSTALLED'));

      const sync = await pgpubsub(['triggers', 'sync'], { url });
      expect(sync.code, shown(sync)).to.equal(0);
      expect(sync.stdout).to.include('Installed 6, replaced 0, pruned 0 trigger(s).');

      const passing = await pgpubsub(['triggers', 'check'], { url });
      expect(passing.code, shown(passing)).to.equal(0);
      expect(passing.stdout).to.include('Triggers match the channel definitions.');

      const after = await pgpubsub(['triggers', 'ls'], { url });
      expect(after.code, shown(after)).to.equal(0);
      const installed = lsRows(after.stdout);
      expect(installed.map((row) => row.status)).to.deep.equal(expected.map(() => 'INSTALLED'));
      expect(installed.map((row) => row.name).sort()).to.deep.equal(expected);

      const inDatabase = await sql<{ tgname: string }>(url,
        `SELECT tgname FROM pg_trigger t WHERE ${managedTriggerSql('t')} ORDER BY tgname`);
      expect(inDatabase.map((row) => row.tgname)).to.deep.equal(expected);
    });

    it('prints parseable JSON for triggers ls --json', async () => {
      const { url } = await fresh(emptyDatabase, 'cli json');
      const migrate = await run(SEQUELIZE_CLI, ['db:migrate', '--to', APP_TABLES_MIGRATION], { url });
      expect(migrate.code, shown(migrate)).to.equal(0);

      const result = await pgpubsub(['triggers', 'ls', '--json'], { url });
      expect(result.code, shown(result)).to.equal(0);
      const states = JSON.parse(result.stdout) as TriggerState[];
      expect(states).to.be.an('array').with.length(6);
      expect(states.map((state) => state.name).sort()).to.deep.equal(await appTriggerNames(url));
      for (const state of states) {
        expect(state).to.include({ status: 'UNINSTALLED', schema: 'public' });
        expect(APP_CHANNELS[state.channel!], `${state.channel}`).to.include(state.event);
      }
    });

    it('reports a hand-edited trigger function as OUTDATED, and sync replaces it', async () => {
      const { url } = await fresh(testDatabase, 'cli outdated');
      const [name] = (await appTriggerNames(url)).filter((n) => n.startsWith('pgpubsub_author_created_insert_'));
      await sql(url, `CREATE OR REPLACE FUNCTION public.${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`);

      const ls = await pgpubsub(['triggers', 'ls'], { url });
      expect(ls.code, shown(ls)).to.equal(0);
      const rows = lsRows(ls.stdout);
      expect(rows.filter((row) => row.status === 'OUTDATED').map((row) => row.name)).to.deep.equal([name]);
      expect(rows.filter((row) => row.status === 'INSTALLED')).to.have.length(5);

      const check = await pgpubsub(['triggers', 'check'], { url });
      expect(check.code, shown(check)).to.equal(1);
      expect(check.stderr).to.include('1 trigger(s) drifted');

      const sync = await pgpubsub(['triggers', 'sync'], { url });
      expect(sync.stdout, shown(sync)).to.include('Installed 0, replaced 1, pruned 0 trigger(s).');
      expect((await pgpubsub(['triggers', 'check'], { url })).code).to.equal(0);
      await sql(url, "INSERT INTO authors (name) VALUES ('after sync')");
      expect(await sql(url, "SELECT channel FROM pgpubsub.notification")).to.deep.equal([{ channel: 'author_created' }]);
    });

    it('keeps orphaned triggers with sync --no-prune and drops them with prune', async () => {
      const { url } = await fresh(testDatabase, 'cli prune');
      const dir = tmpDir();
      // An app that only declares the authors channel: the other five installed triggers are orphans.
      fs.writeFileSync(path.join(dir, 'authors-only.js'), `
const { Sequelize, DataTypes } = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'sequelize'))});
const sequelize = new Sequelize(process.env.DATABASE_URL, { dialect: 'postgres', logging: false });
sequelize.define('Author', { id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, name: DataTypes.TEXT },
  { tableName: 'authors', timestamps: false, pgpubsub: { channels: { author_created: { events: ['insert'] } } } });
module.exports = { sequelize };
`);
      const app = ['--app', path.join(dir, 'authors-only.js')];

      const ls = await pgpubsub(['triggers', 'ls', '--json', ...app], { url });
      expect(ls.code, shown(ls)).to.equal(0);
      const states = JSON.parse(ls.stdout) as TriggerState[];
      expect(states.filter((s) => s.status === 'PRUNE').map((s) => s.channel).sort())
        .to.deep.equal(['child_changed', 'child_changed', 'media_changed', 'media_changed', 'post_deleted']);
      expect(states.filter((s) => s.status === 'INSTALLED').map((s) => s.channel)).to.deep.equal(['author_created']);

      const keep = await pgpubsub(['triggers', 'sync', '--no-prune', ...app], { url });
      expect(keep.stdout, shown(keep)).to.include('Installed 0, replaced 0, pruned 0 trigger(s).');
      expect((await pgpubsub(['triggers', 'check'], { url })).code, 'the full app still finds all its triggers').to.equal(0);

      const prune = await pgpubsub(['triggers', 'prune', ...app], { url });
      expect(prune.stdout, shown(prune)).to.include('Pruned 5 trigger(s).');
      const left = await sql<{ tgname: string }>(url,
        `SELECT tgname FROM pg_trigger t WHERE ${managedTriggerSql('t')}`);
      expect(left.map((row) => row.tgname)).to.have.length(1).and.satisfy((names: string[]) => names[0].startsWith('pgpubsub_author_created_'));
      const check = await pgpubsub(['triggers', 'check'], { url });
      expect(check.code, 'the full app now misses five triggers').to.equal(1);
      expect(check.stderr).to.include('5 trigger(s) drifted');

      // Every command that reports takes --json, with the same exit codes.
      const checked = await pgpubsub(['triggers', 'check', '--json'], { url });
      expect(checked.code, shown(checked)).to.equal(1);
      const { ok, drift } = JSON.parse(checked.stdout) as { ok: boolean; drift: TriggerState[] };
      expect(ok).to.equal(false);
      expect(drift.map((s) => s.status)).to.deep.equal(['UNINSTALLED', 'UNINSTALLED', 'UNINSTALLED', 'UNINSTALLED', 'UNINSTALLED']);
      const synced = await pgpubsub(['triggers', 'sync', '--json'], { url });
      expect(synced.code, shown(synced)).to.equal(0);
      expect(JSON.parse(synced.stdout)).to.include.keys('installed', 'replaced', 'pruned');
      expect((JSON.parse(synced.stdout) as { installed: unknown[] }).installed).to.have.length(5);
      const pruned = await pgpubsub(['triggers', 'prune', '--json', ...app], { url });
      expect((JSON.parse(pruned.stdout) as { pruned: unknown[] }).pruned, shown(pruned)).to.have.length(5);
      const recovered = await pgpubsub(['recover', '--json'], { url });
      expect(JSON.parse(recovered.stdout), shown(recovered)).to.deep.equal({ asked: true });
    });
  });

  describe('loading the app', () => {
    it('loads a JavaScript module named by --app, relative to the current directory', async () => {
      const { url } = await fresh(emptyDatabase, 'cli app js');
      await sql(url, 'CREATE TABLE gadgets (id integer PRIMARY KEY)');
      const dir = tmpDir();
      fs.writeFileSync(path.join(dir, 'app.js'), `
const { Sequelize, DataTypes } = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'sequelize'))});
const sequelize = new Sequelize(process.env.DATABASE_URL, { dialect: 'postgres', logging: false });
sequelize.define('Gadget', { id: { type: DataTypes.INTEGER, primaryKey: true } },
  { tableName: 'gadgets', timestamps: false, pgpubsub: { channels: { gadget_made: { events: ['insert'] } } } });
module.exports = { sequelize };
`);
      const ls = await pgpubsub(['triggers', 'ls', '--app', 'app.js'], { url, cwd: dir });
      expect(ls.code, shown(ls)).to.equal(0);
      expect(lsRows(ls.stdout).map((row) => [row.status, row.table, row.channel, row.event, row.model]))
        .to.deep.equal([['UNINSTALLED', 'public.gadgets', 'gadget_made', 'insert', 'Gadget']]);

      // The database lacks the library the trigger would call (every insert would then fail): exit 2, naming what to run.
      const sync = await pgpubsub(['--app', 'app.js', 'triggers', 'sync'], { url, cwd: dir });
      expect(sync.code, shown(sync)).to.equal(2);
      expect(sync.stderr).to.contain("triggers sync: the library's objects (schema pgpubsub) are not installed in this database");
      expect(await sql(url, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).to.deep.equal([]);
      const check = await pgpubsub(['triggers', 'check', '--app', 'app.js'], { url, cwd: dir });
      expect(check.code, shown(check)).to.equal(2);
      expect(check.stderr).to.contain("triggers check: the library's objects (schema pgpubsub) are not installed in this database")
        .and.to.contain("00000000000001-pgpubsub-baseline.js (module.exports = require('sequelize-pgpubsub/migrations/baseline'))");
      const unreachable = new URL(url);
      unreachable.port = '1';
      const cannot = await pgpubsub(['triggers', 'check', '--app', 'app.js'], { url: unreachable.toString(), cwd: dir });
      expect(cannot.code, shown(cannot)).to.equal(2);
      expect(cannot.stderr).to.contain("triggers check: could not read the library's version from the database");
      const umzug = await run(process.execPath, ['--require', 'tsx/cjs', '-e', `
        const { Sequelize } = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'sequelize'))});
        const { migrations } = require(${JSON.stringify(path.join(ROOT, 'lib'))});
        const sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false });
        (async () => { for (const m of migrations) await m.up({ context: sequelize }); await sequelize.close(); })();`], { url, cwd: ROOT });
      expect(umzug.code, shown(umzug)).to.equal(0);
      const synced = await pgpubsub(['--app', 'app.js', 'triggers', 'sync'], { url, cwd: dir });
      expect(synced.stdout, shown(synced)).to.include('Installed 1, replaced 0, pruned 0 trigger(s).');
      const installed = await pgpubsub(['triggers', 'check', '--app', 'app.js'], { url, cwd: dir });
      expect(installed.code, shown(installed)).to.equal(0);
    });

    it('loads a TypeScript module named by --app that default-exports a sequelize with use(pgpubsub)', async () => {
      const { url } = await fresh(emptyDatabase, 'cli app ts');
      const dir = tmpDir();
      fs.writeFileSync(path.join(dir, 'app.ts'), `
import { DataTypes, Sequelize } from ${JSON.stringify(path.join(ROOT, 'node_modules', 'sequelize'))};
import pgpubsub from ${JSON.stringify(path.join(ROOT, 'lib'))};
const url: string = process.env.DATABASE_URL!;
const sequelize = new Sequelize(url, { dialect: 'postgres', logging: false }).use(pgpubsub);
sequelize.define('Gizmo', { code: { type: DataTypes.TEXT, primaryKey: true } },
  { tableName: 'gizmos', timestamps: false, pgpubsub: { channels: { gizmo_gone: { events: 'delete', durable: false } } } });
export default sequelize;
`);
      const ls = await pgpubsub(['triggers', 'ls', '--json', '--app', 'app.ts'], { url, cwd: dir });
      expect(ls.code, shown(ls)).to.equal(0);
      expect((JSON.parse(ls.stdout) as TriggerState[]).map((s) => [s.status, s.table, s.channel, s.event, s.model]))
        .to.deep.equal([['UNINSTALLED', 'gizmos', 'gizmo_gone', 'delete', 'Gizmo']]);
    });

    it('fails with exit 1 and a clear message when the --app module exports no Sequelize', async () => {
      const { url } = await fresh(emptyDatabase, 'cli app none');
      const dir = tmpDir();
      fs.writeFileSync(path.join(dir, 'not-an-app.js'), 'module.exports = { hello: "world" };\n');
      const result = await pgpubsub(['triggers', 'ls', '--app', 'not-an-app.js'], { url, cwd: dir });
      expect(result.code, shown(result)).to.equal(2);
      expect(result.stdout).to.equal('');
      expect(result.stderr).to.include(path.join(dir, 'not-an-app.js'));
      expect(result.stderr).to.include('does not export a Sequelize instance');
      expect(result.stderr, 'no stack trace for a user error').not.to.match(/^\s+at /m);
    });

    it("finds the project's .sequelizerc from a subfolder, and loads a models folder whose index is TypeScript without the user registering tsx", async () => {
      const { url } = await fresh(emptyDatabase, 'cli subfolder');
      const dir = tmpDir();
      fs.writeFileSync(path.join(dir, '.sequelizerc'), "const path = require('path');\nmodule.exports = { 'models-path': path.resolve('src', 'models') };\n");
      fs.mkdirSync(path.join(dir, 'src', 'models'), { recursive: true });
      fs.mkdirSync(path.join(dir, 'src', 'deep', 'er'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'src', 'models', 'index.ts'), `
import { DataTypes, Sequelize } from ${JSON.stringify(path.join(ROOT, 'node_modules', 'sequelize'))};
export const sequelize: Sequelize = new Sequelize(process.env.DATABASE_URL!, { dialect: 'postgres', logging: false });
sequelize.define('Gizmo', { id: { type: DataTypes.INTEGER, primaryKey: true } },
  { tableName: 'gizmos', timestamps: false, pgpubsub: { channels: { gizmo_made: { events: ['insert'] } } } });
`);
      const result = await pgpubsub(['triggers', 'ls', '--json'], { url, cwd: path.join(dir, 'src', 'deep', 'er') });
      expect(result.code, shown(result)).to.equal(0);
      expect(JSON.parse(result.stdout).map((state: { channel: string }) => state.channel)).to.deep.equal(['gizmo_made']);
    });

    it('fails with exit 2 naming the missing path when the --app module does not exist', async () => {
      const { url } = await fresh(emptyDatabase, 'cli app missing');
      const dir = tmpDir();
      const result = await pgpubsub(['triggers', 'ls', '--app', 'nowhere.js'], { url, cwd: dir });
      expect(result.code, shown(result)).to.equal(2);
      expect(result.stderr).to.include('--app nowhere.js');
      expect(result.stderr).to.include(path.join(dir, 'nowhere.js'));
    });

    it('without --app and without a models directory, fails with exit 2 pointing at .sequelizerc and --app', async () => {
      const { url } = await fresh(emptyDatabase, 'cli no models');
      const dir = tmpDir();
      const result = await pgpubsub(['triggers', 'ls'], { url, cwd: dir });
      expect(result.code, shown(result)).to.equal(2);
      expect(result.stderr).to.include(path.join(dir, 'models'));
      expect(result.stderr).to.include('.sequelizerc');
      expect(result.stderr).to.include('--app');
      expect(result.stderr, 'no stack trace for a user error').not.to.match(/^\s+at /m);
    });

    it('exits 1 naming the model, the channel and the supported events for an unsupported event', async () => {
      const { url } = await fresh(emptyDatabase, 'cli bad channel');
      await sql(url, 'CREATE TABLE gadgets (id integer PRIMARY KEY)');
      const dir = tmpDir();
      fs.writeFileSync(path.join(dir, 'bad.js'), `
const { Sequelize, DataTypes } = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'sequelize'))});
const sequelize = new Sequelize(process.env.DATABASE_URL, { dialect: 'postgres', logging: false });
sequelize.define('Gadget', { id: { type: DataTypes.INTEGER, primaryKey: true } },
  { tableName: 'gadgets', timestamps: false, pgpubsub: { channels: { gadget_wiped: { events: ['upsert'] } } } });
module.exports = { sequelize };
`);
      const result = await pgpubsub(['triggers', 'ls', '--app', 'bad.js'], { url, cwd: dir });
      expect(result.code, shown(result)).to.equal(1);
      expect(result.stdout).to.equal('');
      expect(result.stderr).to.include("channel 'gadget_wiped' on model Gadget");
      expect(result.stderr).to.include('"upsert"');
      expect(result.stderr).to.include('insert, update, delete, truncate, soft_delete, restore');
      const triggers = await sql(url, `SELECT tgname FROM pg_trigger t WHERE ${managedTriggerSql('t')}`);
      expect(triggers).to.deep.equal([]);
    });
  });

  describe('migration:generate', () => {
    it('writes nothing when the committed trigger migration matches the models, and a full migration into an empty folder', async () => {
      const { url } = await fresh(emptyDatabase, 'cli generate');
      const committed = fs.readdirSync(path.join(ROOT, 'migrations')).filter((f) => f.endsWith('-pgpubsub-triggers.js')).sort();
      expect(committed, 'the repo has a generated trigger migration').not.to.be.empty;

      const copy = tmpDir();
      fs.copyFileSync(path.join(ROOT, 'migrations', committed.at(-1)!), path.join(copy, committed.at(-1)!));
      const unchanged = await pgpubsub(['migration:generate', '--migrations-path', copy, '--no-library-stubs'], { url });
      expect(unchanged.code, shown(unchanged)).to.equal(0);
      expect(unchanged.stdout).to.include('nothing written');
      expect(fs.readdirSync(copy)).to.deep.equal([committed.at(-1)]);

      const empty = tmpDir();
      const written = await pgpubsub(['migration:generate', '--migrations-path', empty, '--no-library-stubs'], { url });
      expect(written.code, shown(written)).to.equal(0);
      expect(written.stdout).to.include('(6 trigger(s) to install, 0 to remove)');
      const files = fs.readdirSync(empty);
      expect(files).to.have.length(1);
      expect(files[0]).to.match(/^\d{14}-pgpubsub-triggers\.js$/);
      expect(written.stdout).to.include(files[0]);
    });

    it('writes the stubs of the library migrations the folder lacks, before the trigger migration, and none twice', async () => {
      const { url } = await fresh(emptyDatabase, 'cli stubs');
      // A generated trigger migration names every stub's module in its check's message: that is no stub.
      const committed = fs.readdirSync(path.join(ROOT, 'migrations')).filter((f) => f.endsWith('-pgpubsub-triggers.js')).sort().at(-1)!;
      const dir = tmpDir();
      fs.copyFileSync(path.join(ROOT, 'migrations', committed), path.join(dir, committed));
      const written = await pgpubsub(['migration:generate', '--migrations-path', dir], { url });
      expect(written.code, shown(written)).to.equal(0);
      expect(fs.readdirSync(dir).sort()).to.deep.equal(['00000000000001-pgpubsub-baseline.js', '00000000000002-pgpubsub-claim-by-due.js', '00000000000003-pgpubsub-inbox.js', '00000000000004-pgpubsub-claim-plan.js', committed]);
      expect(written.stdout.split('\n').slice(0, 4)).to.deep.equal(['00000000000001-pgpubsub-baseline.js', '00000000000002-pgpubsub-claim-by-due.js', '00000000000003-pgpubsub-inbox.js', '00000000000004-pgpubsub-claim-plan.js']
        .map((stub) => `Wrote ${path.relative(ROOT, path.join(dir, stub))} (library migration stub).`));
      expect(fs.readFileSync(path.join(dir, '00000000000001-pgpubsub-baseline.js'), 'utf8')).to.contain("module.exports = require('sequelize-pgpubsub/migrations/baseline');");
      expect(fs.readFileSync(path.join(dir, '00000000000002-pgpubsub-claim-by-due.js'), 'utf8')).to.contain("module.exports = require('sequelize-pgpubsub/migrations/claim-by-due');");

      const again = await pgpubsub(['migration:generate', '--migrations-path', dir], { url });
      expect(again.code, shown(again)).to.equal(0);
      expect(again.stdout).not.to.contain('library migration stub');
      expect(fs.readdirSync(dir)).to.have.length(5);

      // The stubs under names of the app's own: they are found by the module they require.
      const own = tmpDir();
      fs.writeFileSync(path.join(own, '20250101000000-library.js'), "module.exports = require('sequelize-pgpubsub/migrations/baseline');\n");
      fs.writeFileSync(path.join(own, '20250101000001-library.js'), "module.exports = require('sequelize-pgpubsub/migrations/claim-by-due');\n");
      fs.writeFileSync(path.join(own, '20250101000002-library.js'), "module.exports = require('sequelize-pgpubsub/migrations/inbox');\n");
      fs.writeFileSync(path.join(own, '20250101000003-library.js'), "module.exports = require('sequelize-pgpubsub/migrations/claim-plan');\n");
      fs.copyFileSync(path.join(ROOT, 'migrations', committed), path.join(own, committed));
      const none = await pgpubsub(['migration:generate', '--migrations-path', own], { url });
      expect(none.code, shown(none)).to.equal(0);
      expect(none.stdout).not.to.contain('library migration stub');
      expect(fs.readdirSync(own).sort()).to.deep.equal(['20250101000000-library.js', '20250101000001-library.js', '20250101000002-library.js', '20250101000003-library.js', committed]);
    });
  });
});
