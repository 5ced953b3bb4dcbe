/**
 * The database contract as text: lib/db/schema.sql is what a fresh install leaves, and the library
 * migrations' SQL reads the protocol only through placeholders the runner fills.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { connect } from '../dev/example-app';
import { SCHEMA_FILE, dumpSchema } from '../dev/schema-dump';
import { PgPubSubError, migrations } from '../lib';
import { libraryObjects } from '../lib/db/objects';
import { readMigrationSql, renderMigrationSql } from '../lib/db/migrations/sql-text-step';
import { run, shown } from '../dev/processes';
import { type TestDatabase, emptyDatabase, server } from './support/hooks';

const ROOT = path.join(__dirname, '..');
const MIGRATIONS_DIR = path.join(ROOT, 'lib', 'db', 'migrations');

describe("the library's schema as text", function () {
  this.timeout(60_000);
  let db: TestDatabase;

  beforeEach(async () => {
    db = await emptyDatabase('schema');
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  async function install(): Promise<void> {
    const sequelize = connect(db.url);
    try {
      for (const migration of migrations) await migration.up({ context: sequelize.getQueryInterface() });
    } finally {
      await sequelize.close();
    }
  }

  it('a fresh install leaves exactly what lib/db/schema.sql shows (else: npm run schema:dump, and review the diff)', async () => {
    await install();
    const client = new Client({ connectionString: db.url });
    await client.connect();
    try {
      expect(await dumpSchema(client)).to.equal(fs.readFileSync(SCHEMA_FILE, 'utf8'));
    } finally {
      await client.end();
    }
  });

  it('npm run schema:dump writes what the file holds', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-schema-')), 'schema.sql');
    const dumped = await run('npm', ['run', '--silent', 'schema:dump', '--', out], { cwd: ROOT, env: { DATABASE_URL: server().url }, timeout: 60_000 });
    expect(dumped.code, shown(dumped)).to.equal(0);
    expect(dumped.stdout).to.include('wrote ');
    expect(fs.readFileSync(out, 'utf8')).to.equal(fs.readFileSync(SCHEMA_FILE, 'utf8'));
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  });

  it('every migration text fills all its placeholders, and names an unknown one with the known ones', () => {
    const target = { objects: libraryObjects('app_bus'), storage: '"meta"."migrations"' };
    const bases = fs.readdirSync(MIGRATIONS_DIR).filter((file) => file.endsWith('.up.sql')).map((file) => file.replace(/\.up\.sql$/, ''));
    expect(bases).to.deep.equal(['001_baseline', '002_claim_by_due', '003_inbox', '004_claim_plan']);
    expect(bases).to.have.length(migrations.length);
    for (const base of bases) {
      const { up, down } = readMigrationSql(base, MIGRATIONS_DIR);
      for (const text of [up, down]) {
        const sql = renderMigrationSql(text, target, base);
        expect(sql, base).to.not.include('{{');
        // Only the given schema: no object of the default one (the settings' names aside).
        expect(sql).to.not.include('"pgpubsub"').and.to.not.match(/\bpgpubsub\.(?!notification_context'|traceparent')/);
      }
    }
    expect(() => renderMigrationSql('SELECT {{lock_wakeup}}', target, '002_next.up.sql')).to.throw(PgPubSubError, /002_next\.up\.sql: unknown placeholder \{\{lock_wakeup\}\}\. Use one of .*\{\{lock_listening\}\}/)
      .with.property('code', 'PGPUBSUB_MIGRATION_SQL');
  });

  it("undone, the baseline leaves nothing of the library's, its trigger on the migration table included", async () => {
    const client = new Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('CREATE TABLE "SequelizeMeta" (name varchar(255) PRIMARY KEY)');
      await install();
      const triggers = "SELECT tgname FROM pg_trigger WHERE tgrelid = '\"SequelizeMeta\"'::regclass";
      expect((await client.query(triggers)).rows).to.deep.equal([{ tgname: 'sequelize_pgpubsub_db_version' }]);
      const sequelize = connect(db.url);
      try {
        for (const migration of [...migrations].reverse()) await migration.down({ context: sequelize.getQueryInterface() });
      } finally {
        await sequelize.close();
      }
      expect((await client.query(triggers)).rows).to.deep.equal([]);
      expect((await client.query("SELECT nspname FROM pg_namespace WHERE nspname = 'pgpubsub'")).rows).to.deep.equal([]);
    } finally {
      await client.end();
    }
  });
});
