/** docs/performance.md, "A long transaction stops vacuum": what holds back the cleanup of the notification table. */
import assert from 'node:assert/strict';
import pg from 'pg';
import { migrate, sequelize } from './app.js';

await migrate();
// A report that left its transaction open, as a session idle in transaction does.
const report = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: 'nightly-report' });
await report.connect();
await report.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
await report.query('SELECT count(*) FROM authors');

const { cleanup } = await sequelize.pgpubsub.admin.status();
console.log(`${cleanup.deadRows} dead row(s), last vacuumed ${cleanup.lastVacuumAt?.toISOString() ?? 'never'}`);
const holder = cleanup.heldBackBy;
if (holder?.kind === 'transaction') {
  console.log(`held back by pid ${holder.pid} (${holder.applicationName}), open ${holder.openMs} ms`);
  // SELECT pg_terminate_backend(pid) would end it; here the report finishes.
}

assert.equal(holder?.applicationName, 'nightly-report');
await report.end();
await sequelize.close();
console.log('cleanup example ok');
