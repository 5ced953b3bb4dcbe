/**
 * Under Sequelize.useCLS(), a model call without `{ transaction }` inside a callback joins the
 * notification's transaction: rolled back with a failed attempt, committed once with the success.
 */
import { expect } from 'chai';
import path from 'node:path';
import { run, shown } from '../dev/processes';
import { type TestDatabase, testDatabase } from './support/hooks';

describe('callbacks under Sequelize.useCLS()', function () {
  this.timeout(60_000);
  let db: TestDatabase;

  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  for (const savepoints of ['on-failure', 'always']) {
    it(`with savepoints '${savepoints}', rolls a write without { transaction } back with its failed attempt, and commits it once with the success`, async () => {
      const script = path.join(__dirname, 'fixtures', 'cls-app.ts');
      const result = await run(process.execPath, ['--require', require.resolve('tsx/cjs'), script], { url: db.url, env: { SAVEPOINTS: savepoints } });
      expect(result.code, shown(result)).to.equal(0);
      expect(JSON.parse(result.stdout.trim().split('\n').at(-1)!), shown(result)).to.deep.equal({ posts: ['attempt 2'] });
    });
  }
});
