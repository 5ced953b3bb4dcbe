/**
 * The upgrade machinery, on a database holding notifications of every state (due, retrying,
 * delayed, failed, ordered and blocked behind their key, and one in a listener's hands): each real
 * library migration after the baseline, applied to the database the one before it leaves, and a
 * test-only migration numbered after the last real one
 * (test/fixtures/library-migrations/next_test_upgrade.*.sql), run through the same runner.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { connect } from '../dev/example-app';
import { dumpSchema } from '../dev/schema-dump';
import { migrations } from '../lib';
import { libraryProblem } from '../lib/db/library-check';
import { LIBRARY_VERSION } from '../lib/db/objects';
import { sqlTextStep } from '../lib/db/migrations/sql-text-step';
import { type TestDatabase, emptyDatabase } from './support/hooks';

const FIXTURES = path.join(__dirname, 'fixtures', 'library-migrations');
const NEXT = LIBRARY_VERSION + 1;
const testUpgrade = sqlTextStep(NEXT, `0000000000000${NEXT}-pgpubsub-test-upgrade.js`, 'next_test_upgrade', FIXTURES);
const SCHEMA_SQL = fs.readFileSync(path.join(__dirname, '..', 'lib', 'db', 'schema.sql'), 'utf8');

/** Every stored notification, every column (the upgrade's new one aside). */
const ROWS = `SELECT id, channel, payload, created_at, db_version, attempts, available_at, last_error, failed_at, ordering_key, head
  FROM pgpubsub.notification ORDER BY id`;

/** One notification of each state a stored row can be in. */
const SEED = `
INSERT INTO pgpubsub.notification (channel, payload) VALUES ('c', '{"op": "NOTIFY", "payload": "due 1"}'), ('c', '{"op": "NOTIFY", "payload": "due 2"}');
INSERT INTO pgpubsub.notification (channel, payload, attempts, available_at, last_error)
  VALUES ('c', '{"op": "NOTIFY", "payload": "retrying"}', 2, now() + interval '1 day', 'Error: the mail server was down');
INSERT INTO pgpubsub.notification (channel, payload, available_at) VALUES ('c', '{"op": "NOTIFY", "payload": "delayed"}', now() + interval '1 hour');
INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at)
  VALUES ('c', '{"op": "NOTIFY", "payload": "failed"}', 5, 'Error: no such mailbox', now());
INSERT INTO pgpubsub.notification (channel, payload, ordering_key, head) VALUES
  ('o', '{"op": "NOTIFY", "payload": "key 1, head"}', 'c:1', true),
  ('o', '{"op": "NOTIFY", "payload": "key 1, blocked"}', 'c:1', false),
  ('o', '{"op": "NOTIFY", "payload": "key 2, not yet known"}', 'c:2', NULL);
INSERT INTO pgpubsub.notification (channel, payload) VALUES ('h', '{"op": "NOTIFY", "payload": "in hand"}');
`;

/** The claim's resume points, none (since library migration 2), or nothing before it: the claim of the version installed. */
async function resumeArgs(client: Client): Promise<string> {
  const { rows: [{ args }] } = await client.query<{ args: number }>("SELECT pronargs AS args FROM pg_catalog.pg_proc WHERE oid = 'pgpubsub.claim'::regproc");
  return args === 7 ? ', NULL, NULL' : '';
}

describe('a library migration after the baseline', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  const clients: Client[] = [];

  async function client(): Promise<Client> {
    const c = new Client({ connectionString: db.url });
    await c.connect();
    clients.push(c);
    return c;
  }

  beforeEach(async () => {
    db = await emptyDatabase('upgrade');
    const sequelize = connect(db.url);
    try {
      for (const migration of migrations) await migration.up({ context: sequelize.getQueryInterface() });
    } finally {
      await sequelize.close();
    }
  });

  afterEach(async function () {
    for (const c of clients.splice(0)) await c.end().catch(() => {});
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('waits for the batch in hand, keeps every row of every state, and undone leaves the schema as schema.sql shows it', async () => {
    const admin = await client();
    await admin.query(SEED);
    const before = (await admin.query(ROWS)).rows;

    // A listener's batch in hand: its marker committed, its row locked by the claiming transaction.
    const listener = await client();
    await listener.query('BEGIN');
    const claimed = (await listener.query(`SELECT id FROM pgpubsub.claim(ARRAY['h'], NULL, 10, 7, NULL${await resumeArgs(listener)})`)).rows;
    expect(claimed).to.have.length(1);
    await admin.query('INSERT INTO pgpubsub.inflight (holder, ids) VALUES (7, $1)', [[claimed[0].id]]);

    const sequelize = connect(db.url);
    try {
      let settled = false;
      const upgrading = testUpgrade.apply({ context: sequelize.getQueryInterface() }).finally(() => { settled = true; });
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(settled, 'the upgrade waits for the claiming transaction').to.equal(false);

      // The listener finishes its batch as it would: the row processed, its marker cleared.
      await listener.query('DELETE FROM pgpubsub.notification WHERE id = $1', [claimed[0].id]);
      await listener.query('COMMIT');
      await admin.query('DELETE FROM pgpubsub.inflight WHERE holder = 7');
      expect(await upgrading, 'applied').to.equal(true);
      expect(await testUpgrade.apply({ context: sequelize.getQueryInterface() }), 'applied again').to.equal(false);

      const versions = (await admin.query('SELECT version, name FROM pgpubsub.version ORDER BY version')).rows;
      expect(versions.map((row) => row.version)).to.deep.equal([...migrations.map((_, i) => i + 1), NEXT]);
      const after = (await admin.query(ROWS)).rows;
      expect(after).to.deep.equal(before.filter((row) => row.id !== claimed[0].id));
      const priorities = (await admin.query('SELECT DISTINCT priority FROM pgpubsub.notification')).rows;
      expect(priorities).to.deep.equal([{ priority: 0 }]);

      // The ids go on; the claim takes the due rows and the heads, in id order, and nothing else.
      const { rows: [added] } = await admin.query("INSERT INTO pgpubsub.notification (channel, payload) VALUES ('c', '{}') RETURNING id");
      expect(Number(added.id)).to.be.greaterThan(Number(before.at(-1).id));
      await admin.query('BEGIN');
      const due = (await admin.query(`SELECT payload::jsonb ->> 'payload' AS what FROM pgpubsub.claim(ARRAY['c', 'o'], NULL, 100, 1, NULL${await resumeArgs(admin)})`)).rows;
      await admin.query('ROLLBACK');
      expect(due.map((row) => row.what)).to.deep.equal(['due 1', 'due 2', 'key 1, head', 'key 2, not yet known', null]);

      // This code runs on the baseline: a listener refuses the newer database and says why.
      expect(String(await libraryProblem(sequelize, 'pgpubsub', 'listen'))).to.include(`at version ${NEXT}, newer than this sequelize-pgpubsub knows (${LIBRARY_VERSION})`);

      await testUpgrade.down({ context: sequelize.getQueryInterface() });
      expect((await admin.query('SELECT version FROM pgpubsub.version ORDER BY version')).rows.map((row) => row.version)).to.deep.equal(migrations.map((_, i) => i + 1));
      expect((await admin.query(ROWS)).rows.slice(0, -1)).to.deep.equal(after);
      await admin.query("DELETE FROM pgpubsub.notification WHERE channel IN ('c', 'o')");
      expect(await dumpSchema(admin)).to.equal(SCHEMA_SQL);
    } finally {
      await sequelize.close();
    }
  });

  it('rolls back a migration that fails halfway, leaving the version and every object as they were', async () => {
    const broken = sqlTextStep(NEXT, `0000000000000${NEXT}-pgpubsub-broken.js`, 'next_test_upgrade', FIXTURES);
    const admin = await client();
    // The index the migration creates is there already: its CREATE INDEX fails after its ALTER TABLE ran.
    await admin.query('CREATE INDEX notification_priority ON pgpubsub.notification (id)');
    const sequelize = connect(db.url);
    try {
      const error = await broken.up({ context: sequelize.getQueryInterface() }).then(() => null, (e: unknown) => e as Error);
      expect(error?.message).to.match(/notification_priority.*already exists/);
    } finally {
      await sequelize.close();
    }
    expect((await admin.query('SELECT max(version) AS version FROM pgpubsub.version')).rows).to.deep.equal([{ version: LIBRARY_VERSION }]);
    const columns = (await admin.query("SELECT column_name FROM information_schema.columns WHERE table_schema = 'pgpubsub' AND table_name = 'notification' AND column_name = 'priority'")).rows;
    expect(columns).to.deep.equal([]);
  });

  it('is refused on a database an unreleased commit installed (versions 1-7), naming the reinstall', async () => {
    const admin = await client();
    await admin.query("UPDATE pgpubsub.version SET name = '00000000000001-pgpubsub-notification-table.js'");
    await admin.query('DELETE FROM pgpubsub.version WHERE version > 1');
    await admin.query("INSERT INTO pgpubsub.version (version, name) SELECT v, pg_catalog.format('0000000000000%s-pgpubsub-step.js', v) FROM generate_series(2, 7) AS v");
    const sequelize = connect(db.url);
    try {
      const problem = await libraryProblem(sequelize, 'pgpubsub', 'listen');
      expect(problem).to.have.property('code', 'PGPUBSUB_LIBRARY_VERSION');
      expect(String(problem)).to.include('as an unreleased commit of sequelize-pgpubsub installed them')
        .and.include('00000000000001-pgpubsub-notification-table.js').and.include("the CHANGELOG's entry on the squash");
    } finally {
      await sequelize.close();
    }
  });
});

/** What each real library migration after the baseline needs of a database in use. */
describe('each library migration after the baseline, on the database the one before it leaves', function () {
  this.timeout(60_000);

  for (const [index, migration] of migrations.entries()) {
    if (index === 0) continue;
    // The inbox (3) only adds a table of its own, and the claim's plans (4) alter the function's settings
    // (a call takes no lock on its function): neither takes a lock a batch in hand holds, so neither waits.
    const waits = !/-pgpubsub-(?:inbox|claim-plan)\.js$/.test(migration.name);
    it(`${migration.name}: ${waits ? 'waits for' : 'does not wait for'} the batch in hand, keeps every row of every state, claims them as before, and undone restores the schema`, async () => {
      const db = await emptyDatabase(`upgrade-${index + 1}`);
      const sequelize = connect(db.url);
      const admin = new Client({ connectionString: db.url });
      const listener = new Client({ connectionString: db.url });
      await admin.connect();
      await listener.connect();
      try {
        for (const earlier of migrations.slice(0, index)) await earlier.up({ context: sequelize.getQueryInterface() });
        await admin.query(SEED);
        const schemaBefore = await dumpSchema(admin);
        const before = (await admin.query(ROWS)).rows;

        // A listener's role as docs/security.md grants it the claim of the version before: it keeps the claim.
        const role = `pgpubsub_upgrade_${process.pid}`;
        await admin.query(`DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} NOLOGIN; GRANT EXECUTE ON FUNCTION pgpubsub.claim TO ${role}`);
        const mayClaim = async () => (await admin.query<{ ok: boolean }>(
          `SELECT has_function_privilege('${role}', 'pgpubsub.claim'::regproc, 'EXECUTE') AS ok, has_function_privilege('public', 'pgpubsub.claim'::regproc, 'EXECUTE') AS public`,
        )).rows[0];

        // A batch in hand, claimed by the claim of the version before.
        await listener.query('BEGIN');
        const claimed = (await listener.query(`SELECT id FROM pgpubsub.claim(ARRAY['h'], NULL, 10, 7, NULL${await resumeArgs(listener)})`)).rows;
        expect(claimed).to.have.length(1);
        let settled = false;
        const upgrading = migration.apply!({ context: sequelize.getQueryInterface() }).finally(() => { settled = true; });
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(settled, waits ? 'the upgrade waits for the claiming transaction' : 'the upgrade done while the batch is in hand').to.equal(!waits);
        await listener.query('DELETE FROM pgpubsub.notification WHERE id = $1', [claimed[0].id]);
        await listener.query('COMMIT');
        expect(await upgrading, 'applied').to.equal(true);
        expect(await mayClaim(), 'after the upgrade').to.deep.equal({ ok: true, public: false });

        const after = (await admin.query(ROWS)).rows;
        expect(after).to.deep.equal(before.filter((row) => row.id !== claimed[0].id));
        // What the claim takes: the due rows and the heads, in id order, and nothing else.
        await admin.query('BEGIN');
        const due = (await admin.query(`SELECT payload::jsonb ->> 'payload' AS what FROM pgpubsub.claim(ARRAY['c', 'o'], NULL, 100, 1, NULL${await resumeArgs(admin)})`)).rows;
        await admin.query('ROLLBACK');
        expect(due.map((row) => row.what)).to.deep.equal(['due 1', 'due 2', 'key 1, head', 'key 2, not yet known']);

        await migration.down({ context: sequelize.getQueryInterface() });
        expect(await mayClaim(), 'undone').to.deep.equal({ ok: true, public: false });
        await admin.query(`REVOKE ALL ON FUNCTION pgpubsub.claim FROM ${role}; DROP ROLE ${role}`);
        expect((await admin.query(ROWS)).rows).to.deep.equal(after);
        expect(await dumpSchema(admin)).to.equal(schemaBefore);
      } finally {
        await listener.end().catch(() => {});
        await admin.end().catch(() => {});
        await sequelize.close();
      }
      await db.drop();
    });
  }
});
