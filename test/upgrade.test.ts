/**
 * An installed database upgraded by the example app's `npx sequelize-cli db:migrate`: the dump of
 * a database migrated by the release at commit 7e49e6c (library version 1, everything in public)
 * with due, retrying and failed notifications (test/fixtures/library-v1.sql).
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { SEQUELIZE_CLI, pgpubsubCli, run, shown } from '../dev/processes';
import { LibraryVersionError } from '../lib';
import type { App } from '../models/app';
import { registerCallbacks } from '../models/callbacks';
import { type TestDatabase, emptyDatabase } from './support/hooks';

const DUMP = fs.readFileSync(path.join(__dirname, 'fixtures', 'library-v1.sql'), 'utf8');
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

interface Row {
  id: string;
  name: string;
  attempts: number;
  last_error: string | null;
  available_at: Date;
  failed_at: Date | null;
  created_at: Date;
  db_version: string | null;
}
const ROW_SQL = (table: string) => `SELECT id::text, payload->'new'->>'name' AS name, attempts, last_error, available_at, failed_at, created_at, db_version
  FROM ${table} ORDER BY id`;

describe('upgrading an installed database', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let app: App;

  beforeEach(async () => {
    db = await emptyDatabase('upgrade_v1');
    const client = new Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(DUMP);
    } finally {
      await client.end();
    }
    app = openApp(db.url);
  });
  afterEach(async function () {
    await app.sequelize.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  const rows = <R extends object>(sql: string) => app.sequelize.query<R>(sql, { type: QueryTypes.SELECT });

  it('is refused by a listener, naming the migrations to run', async () => {
    registerCallbacks(app);
    const error = await app.sequelize.pgpubsub.listen({ logger: quiet }).catch((e: Error) => e);
    expect(error).to.be.instanceOf(LibraryVersionError);
    expect(error).to.include({ found: 1, expected: 7 });
    expect(String(error)).to.contain("00000000000002-pgpubsub-inflight.js (module.exports = require('sequelize-pgpubsub/migrations/inflight'))")
      .and.to.contain("00000000000003-pgpubsub-schema.js (module.exports = require('sequelize-pgpubsub/migrations/schema'))")
      .and.to.contain("00000000000004-pgpubsub-operations.js (module.exports = require('sequelize-pgpubsub/migrations/operations'))")
      .and.to.contain("00000000000005-pgpubsub-listeners.js (module.exports = require('sequelize-pgpubsub/migrations/listeners'))")
      .and.to.contain("00000000000006-pgpubsub-ordering.js (module.exports = require('sequelize-pgpubsub/migrations/ordering'))")
      .and.to.contain("00000000000007-pgpubsub-wake.js (module.exports = require('sequelize-pgpubsub/migrations/wake'))")
      .and.to.contain('npx sequelize-cli db:migrate');
  });

  it('keeps every stored notification, processes each due one once, and keeps the retrying and failed ones as they were', async () => {
    const before = await rows<Row>(ROW_SQL('public.pgpubsub_notification'));
    expect(before.map((row) => row.name)).to.deep.equal(['due 1', 'due 2', 'due 3', 'retrying', 'failed']);

    // The library's migrations only (the schema move, then versions 4 to 7): the installed triggers were rewritten in place and still record writes.
    const toSchema = await run(SEQUELIZE_CLI, ['db:migrate', '--to', '00000000000007-pgpubsub-wake.js'], { url: db.url, timeout: 60_000 });
    expect(toSchema.code, shown(toSchema)).to.equal(0);
    expect(await rows<Row>(ROW_SQL('pgpubsub.notification'))).to.deep.equal(before);
    expect(await rows(`SELECT to_regclass('public.pgpubsub_notification') AS old`)).to.deep.equal([{ old: null }]);
    await app.Author.create({ name: 'written between the two migrations' });
    const outdated = await pgpubsubCli(['triggers', 'check'], { url: db.url });
    expect(outdated.code, shown(outdated)).to.equal(1);

    const rest = await run(SEQUELIZE_CLI, ['db:migrate'], { url: db.url, timeout: 60_000 });
    expect(rest.code, shown(rest)).to.equal(0);
    const check = await pgpubsubCli(['triggers', 'check'], { url: db.url });
    expect(check.code, shown(check)).to.equal(0);
    expect(await rows('SELECT version FROM pgpubsub.version ORDER BY version')).to.deep.equal([{ version: 1 }, { version: 2 }, { version: 3 }, { version: 4 }, { version: 5 }, { version: 6 }, { version: 7 }]);
    await app.Author.create({ name: 'written after the upgrade' });

    registerCallbacks(app);
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet });
    try {
      await eventually(async () => (await rows<{ n: number }>('SELECT count(*)::int AS n FROM posts'))[0].n >= 5, 'a post for each due author');
      await listener.idle();
    } finally {
      await listener.stop();
    }
    const posts = await rows<{ name: string; n: number }>(
      'SELECT a.name, count(*)::int AS n FROM posts AS p JOIN authors AS a ON a.id = p.author_id GROUP BY a.name ORDER BY a.name');
    expect(posts).to.deep.equal([
      { name: 'due 1', n: 1 }, { name: 'due 2', n: 1 }, { name: 'due 3', n: 1 },
      { name: 'written after the upgrade', n: 1 }, { name: 'written between the two migrations', n: 1 },
    ]);
    // Ids, attempts, errors and times as before; the new id sequence went on from where it was.
    expect(await rows<Row>(ROW_SQL('pgpubsub.notification'))).to.deep.equal(before.filter((row) => ['retrying', 'failed'].includes(row.name)));
    const [{ next }] = await rows<{ next: string }>("SELECT nextval(pg_get_serial_sequence('pgpubsub.notification', 'id'))::text AS next");
    expect(Number(next)).to.be.greaterThan(7);

    // Undoing the trigger migration generated after the upgrade puts back triggers that work with version 3.
    const undo = await run(SEQUELIZE_CLI, ['db:migrate:undo'], { url: db.url, timeout: 60_000 });
    expect(undo.code, shown(undo)).to.equal(0);
    await app.Author.create({ name: 'written after the undo' });
    expect(await rows(`SELECT payload->'new'->>'name' AS name FROM pgpubsub.notification WHERE failed_at IS NULL AND attempts = 0`))
      .to.deep.equal([{ name: 'written after the undo' }]);
  });
});
