/**
 * `sequelize.pgpubsub.install()`: the way in for apps that create their tables with
 * `sequelize.sync()` instead of migrations. Idempotent, safe from several processes at once, and
 * it agrees with the migration runners on what is applied.
 */
import { expect } from 'chai';
import { QueryTypes } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { migrations } from '../lib';
import type { App } from '../models/app';
import { registerCallbacks } from '../models/callbacks';
import { type TestDatabase, emptyDatabase } from './support/hooks';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const LIBRARY_MIGRATIONS = migrations.map((migration) => migration.name);

describe('install()', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  const opened: App[] = [];
  const open = () => {
    const app = openApp(db.url);
    opened.push(app);
    return app;
  };

  beforeEach(async function () {
    db = await emptyDatabase(this.currentTest!.title.slice(0, 20));
  });
  afterEach(async function () {
    for (const app of opened.splice(0)) await app.sequelize.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('installs the library and the triggers after sync(), does nothing the second time, and comes back after sync({ force: true })', async () => {
    const app = open();
    await app.sequelize.sync();
    const first = await app.sequelize.pgpubsub.install();
    expect(first.migrations).to.deep.equal(LIBRARY_MIGRATIONS);
    expect(first.triggers.installed).to.have.length(6);
    const again = await app.sequelize.pgpubsub.install();
    expect(again).to.deep.equal({ migrations: [], triggers: { installed: [], replaced: [], pruned: [] } });
    expect((await app.sequelize.pgpubsub.triggers.check()).ok).to.equal(true);

    registerCallbacks(app);
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet });
    try {
      await app.Author.create({ name: 'after install' });
      await eventually(async () => (await app.Post.count()) === 1, 'the post');
      await listener.idle();
    } finally {
      await listener.stop();
    }

    // force drops the tables, and their triggers with them; install() puts the triggers back.
    await app.sequelize.sync({ force: true });
    expect((await app.sequelize.pgpubsub.triggers.check()).ok).to.equal(false);
    const rebooted = await app.sequelize.pgpubsub.install();
    expect(rebooted.migrations).to.deep.equal([]);
    expect(rebooted.triggers.installed).to.have.length(6);
    await app.Author.create({ name: 'after the forced sync' });
    const [{ n }] = await app.sequelize.query<{ n: number }>('SELECT count(*)::int AS n FROM pgpubsub.notification', { type: QueryTypes.SELECT });
    expect(n).to.equal(1);
  });

  it('as an installing role that is no superuser: says what an administrator must grant, then installs, the trigger functions owned by the trigger owner role', async () => {
    const installer = `pgpubsub_installer_${process.pid}`;
    const admin = open();
    const { database } = admin.sequelize.config;
    await admin.sequelize.query(`DROP ROLE IF EXISTS ${installer}; CREATE ROLE ${installer} LOGIN PASSWORD 'installer'`);
    // The app's owner: it owns its database (so, from PostgreSQL 15, the schema public), and no more.
    await admin.sequelize.query(`ALTER DATABASE "${database}" OWNER TO ${installer}; GRANT CREATE ON SCHEMA public TO ${installer}`);
    // The trigger owner role exists (roles belong to the server; another database's install may have made it).
    await admin.sequelize.query("DO $$ BEGIN CREATE ROLE pgpubsub_trigger_owner NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    const url = new URL(db.url);
    url.username = installer;
    url.password = 'installer';
    const app = openApp(url.toString());
    opened.push(app);
    try {
      await app.sequelize.sync();
      const refused = await app.sequelize.pgpubsub.install().then(() => null, (e: Error) => e);
      expect(String(refused)).to.contain(`pgpubsub: ${installer} must be a member of the role pgpubsub_trigger_owner that owns the library's trigger functions: as an administrator, GRANT pgpubsub_trigger_owner TO ${installer}, then run the migration again`);
      await admin.sequelize.query(`GRANT pgpubsub_trigger_owner TO ${installer}`);
      expect((await app.sequelize.pgpubsub.install()).triggers.installed).to.have.length(6);
      const owners = await admin.sequelize.query<{ owner: string }>(
        `SELECT DISTINCT pg_get_userbyid(p.proowner) AS owner FROM pg_proc AS p WHERE p.proname LIKE 'pgpubsub\\_%' AND p.pronamespace = 'public'::regnamespace`, { type: QueryTypes.SELECT });
      expect(owners).to.deep.equal([{ owner: 'pgpubsub_trigger_owner' }]);
      // The trigger owner role was lent CREATE on public for the hand-over only.
      const lent = await admin.sequelize.query("SELECT FROM pg_namespace AS n, aclexplode(n.nspacl) AS a WHERE n.nspname = 'public' AND a.grantee = 'pgpubsub_trigger_owner'::regrole", { type: QueryTypes.SELECT });
      expect(lent).to.deep.equal([]);
      registerCallbacks(app);
      const listener = await app.sequelize.pgpubsub.listen({ logger: quiet });
      try {
        await app.Author.create({ name: 'installed by the app owner' });
        await eventually(async () => (await app.Post.count()) === 1, 'the post');
      } finally {
        await listener.stop();
      }
    } finally {
      await app.sequelize.close();
      opened.splice(opened.indexOf(app), 1);
      await admin.sequelize.query(`ALTER DATABASE "${database}" OWNER TO CURRENT_USER; REASSIGN OWNED BY ${installer} TO CURRENT_USER; DROP OWNED BY ${installer}; DROP ROLE ${installer}`);
    }
  });

  it('applies each library migration once when several processes boot at the same time', async () => {
    const apps = [open(), open(), open()];
    await apps[0].sequelize.sync();
    const results = await Promise.all(apps.map((app) => app.sequelize.pgpubsub.install()));
    expect(results.flatMap((result) => result.migrations).sort()).to.deep.equal(LIBRARY_MIGRATIONS);
    const [{ versions }] = await apps[0].sequelize.query<{ versions: number[] }>(
      'SELECT array_agg(version ORDER BY version) AS versions FROM pgpubsub.version', { type: QueryTypes.SELECT });
    expect(versions).to.deep.equal(LIBRARY_MIGRATIONS.map((_, i) => i + 1));
  });

  it('agrees with a migration runner: library migrations that install() applied are skipped by Umzug, and the reverse', async () => {
    const app = open();
    await app.sequelize.sync();
    await app.sequelize.pgpubsub.install();
    const umzug = new Umzug({ migrations: [...migrations], context: app.sequelize.getQueryInterface(), storage: new SequelizeStorage({ sequelize: app.sequelize }), logger: undefined });
    // Recorded in SequelizeMeta, changing nothing.
    expect((await umzug.up()).map((migration) => migration.name)).to.deep.equal(LIBRARY_MIGRATIONS);
    expect((await app.sequelize.pgpubsub.install()).migrations).to.deep.equal([]);
    expect((await app.sequelize.pgpubsub.triggers.check()).ok).to.equal(true);
  });
});
