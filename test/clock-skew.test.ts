/**
 * One clock decides when a notification is due: the database server's. A listener whose machine's
 * clock is an hour off either way neither runs a delayed notification early nor sleeps an hour
 * past it: the claim compares with the server's now(), and the timer counts the server's time
 * left until the next due row.
 */
import { expect } from 'chai';
import path from 'node:path';
import type { Sequelize } from 'sequelize';
import { QueryTypes } from 'sequelize';
import { definePoisonApp, installPoisonApp } from './fixtures/poison-app';
import { connect } from '../dev/example-app';
import { eventually } from '../dev/eventually';
import { BIN, ROOT, spawnProcess } from '../dev/processes';
import { type TestDatabase, testDatabase } from './support/hooks';

const APP = path.join(__dirname, 'fixtures', 'poison-app.ts');
const SKEWED_CLOCK = path.join(__dirname, 'fixtures', 'skewed-clock.cjs');

describe('clock skew between the app and the server', function () {
  this.timeout(90_000);
  let db: TestDatabase;
  let sequelize: Sequelize;

  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
    sequelize = definePoisonApp(connect(db.url)).sequelize;
    await installPoisonApp(sequelize);
  });
  afterEach(async function () {
    await sequelize.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  for (const skewMs of [3_600_000, -3_600_000]) {
    it(`processes a notification due in 1.5 s on time with the listener's clock ${skewMs > 0 ? 'an hour ahead' : 'an hour behind'}`, async () => {
      const listener = spawnProcess(BIN, ['listen', '--log-format', 'json', '--worker', '--app', APP], {
        DATABASE_URL: db.url, PGPUBSUB_POISON_APP: '1', CLOCK_SKEW_MS: String(skewMs),
      }, ROOT, { nodeArgs: ['--require', SKEWED_CLOCK] });
      try {
        const listening = await listener.event('listening', 60_000);
        // Its clock is off indeed: its log lines carry its own time.
        expect(Math.abs(new Date(String(listening.time)).getTime() - Date.now() - skewMs), 'the listener\'s clock').to.be.below(60_000);
        // Stored due 1.5 s from now by the server's clock, with the wake-up a producer sends.
        // The job's row without its trigger's own notification (due at once).
        const id = await sequelize.transaction(async (transaction) => {
          await sequelize.query('SET LOCAL session_replication_role = replica', { transaction });
          return (await sequelize.query<{ id: number }>("INSERT INTO jobs (name) VALUES ('later') RETURNING id", { transaction, type: QueryTypes.SELECT }))[0].id;
        });
        const sent = Date.now();
        await sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, available_at)
          VALUES ('job_created', jsonb_build_object('op', 'INSERT', 'old', null, 'new', jsonb_build_object('id', $1::int, 'name', 'later'), 'context', '{}'::jsonb), now() + interval '1500 milliseconds')`, { bind: [id] });
        await sequelize.query("SELECT pg_notify('job_created', '')");
        await eventually(async () => (await sequelize.query('SELECT 1 FROM job_results', { type: QueryTypes.SELECT })).length === 1, 'the job processed', 10_000, 25);
        const tookMs = Date.now() - sent;
        expect(tookMs, 'not before it was due').to.be.at.least(1400);
        expect(tookMs, 'nor long after').to.be.below(5000);
      } finally {
        listener.kill('SIGTERM');
        await listener.exited;
      }
    });
  }
});
