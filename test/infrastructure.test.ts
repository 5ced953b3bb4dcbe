/** Checks the test harness itself (test/support): per-test databases on the shared test server. */
import assert from 'node:assert/strict';
import { emptyDatabase, server, testDatabase, type TestDatabase } from './support/hooks';
import { sql as query } from '../dev/postgres';

const hostOf = (url: string) => new URL(url).host;

describe('test infrastructure', () => {
  const dbs: TestDatabase[] = [];
  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.drop();
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
