/**
 * docs/deployment.md, "Your own cluster script": examples/cluster/listener.ts, a user's
 * node:cluster script built on runCluster(), supervises two listener processes that share the
 * work, replaces one killed with kill -9, and stops cleanly on SIGTERM.
 */
import { expect } from 'chai';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { connect } from '../dev/example-app';
import { ROOT, spawnProcess } from '../dev/processes';
import { type TestDatabase, emptyDatabase } from './support/hooks';

describe('a cluster script of your own (runCluster)', function () {
  this.timeout(90_000);
  let db: TestDatabase;

  beforeEach(async function () {
    db = await emptyDatabase('cluster script');
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('runs examples/cluster/listener.ts: two supervised workers share the work, one killed is replaced, SIGTERM exits 0', async () => {
    const sequelize = connect(db.url);
    const script = spawnProcess(path.join(ROOT, 'examples', 'cluster', 'listener.ts'), [], { DATABASE_URL: db.url }, ROOT, { esm: true });
    const listeners = async () => (await sequelize.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgpubsub-listener' AND datname = current_database()", { type: QueryTypes.SELECT })).length;
    const count = async (table: string) => (await sequelize.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`, { type: QueryTypes.SELECT }))[0].n;
    try {
      await eventually(async () => (await listeners()) === 2, `two listening workers from ${script.describe()}`, 60_000);
      const insert = (n: number) => sequelize.query(
        `INSERT INTO authors (name, "createdAt", "updatedAt") SELECT 'author ' || i, now(), now() FROM generate_series(1, ${n}) AS i`);
      await insert(200);
      await eventually(async () => (await count('posts')) === 200, 'a post per author');

      // kill -9 one worker (its pid from its log lines): the primary replaces it.
      const workers = script.stderr().match(/\[pid (\d+) worker \d\]/g)?.map((tag) => Number(/pid (\d+)/.exec(tag)![1])) ?? [];
      const victim = [...new Set(workers)].find((p) => p !== script.pid)!;
      process.kill(victim, 'SIGKILL');
      await eventually(() => /worker \d died \(signal SIGKILL\)/.test(script.stderr()), 'the death to be logged');
      await eventually(async () => (await listeners()) === 2 && /replacing worker/.test(script.stderr()), 'a replacement worker');
      await insert(100);
      await eventually(async () => (await count('posts')) === 300, 'a post per author after the replacement');
      expect(await count('pgpubsub.notification')).to.equal(0);

      const exit = await script.stop(20_000);
      expect(exit, script.describe()).to.deep.equal({ code: 0, signal: null });
      expect(script.stderr()).to.match(/all workers stopped; exiting/);
    } finally {
      await script.stop(1000);
      await sequelize.close();
    }
  });
});
