/**
 * Vacuum and the xmin horizon made visible: a transaction held open in a real second session keeps
 * the notification table's dead rows from being cleaned up. The status (API, CLI, metrics,
 * dashboard) names it, and a listener warns once when it has done so for `cleanupWarnAfterMs`:
 * by its transaction's start where the server shows it, else (a role that may not see other
 * roles' sessions) since the listener first saw it.
 */
import { expect } from 'chai';
import { Client } from 'pg';
import { QueryTypes } from 'sequelize';
import { connect } from '../dev/example-app';
import { eventually } from '../dev/eventually';
import { type CleanupStatus, readCleanup } from '../lib/db/cleanup';
import { libraryObjects } from '../lib/db/objects';
import { Upkeep } from '../lib/listener/upkeep';
import { ListenSession } from '../lib/listener/session';
import { exampleAppPerTest } from './support/example-app-per-test';

interface Line { level: string; message: string; fields: Record<string, unknown> }

function recorder() {
  const lines: Line[] = [];
  const at = (level: string) => (message: string, fields: Record<string, unknown> = {}) => { lines.push({ level, message, fields }); };
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

/** A second session, as a report job would leave it: a snapshot taken, the transaction left open. */
async function holdOpen(url: string, applicationName: string): Promise<{ client: Client; pid: number }> {
  const client = new Client({ connectionString: url, application_name: applicationName });
  await client.connect();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  const { rows: [{ pid }] } = await client.query('SELECT pg_backend_pid() AS pid');
  return { client, pid };
}

describe('cleanup held back by a long transaction', function () {
  this.timeout(60_000);
  const clients: Client[] = [];
  const test = exampleAppPerTest({
    async cleanup() {
      await Promise.all(clients.splice(0).map((client) => client.end().catch(() => {})));
    },
  });

  it("status names the transaction holding back cleanup, and counts the dead rows it keeps (API, metrics, dashboard's data)", async () => {
    const { sequelize } = test.app;
    const held = await holdOpen(test.db.url, 'nightly-report');
    clients.push(held.client);
    // 200 notifications stored and processed (deleted) while it is open: dead rows vacuum may not remove.
    await sequelize.query("INSERT INTO pgpubsub.notification (channel, payload) SELECT 'author_created', '{}' FROM generate_series(1, 200)");
    await sequelize.query('DELETE FROM pgpubsub.notification');
    await sequelize.query('VACUUM pgpubsub.notification');
    let cleanup: CleanupStatus | undefined;
    await eventually(async () => {
      ({ cleanup } = await sequelize.pgpubsub.admin.status());
      return cleanup.deadRows >= 200;
    }, () => `the dead rows counted: ${JSON.stringify(cleanup)}`, 10_000);
    expect(cleanup!.heldBackBy).to.include({ kind: 'transaction', pid: held.pid, applicationName: 'nightly-report', name: null });
    expect(cleanup!.heldBackBy!.openMs).to.be.a('number').and.to.be.greaterThan(0);
    expect(cleanup!.lastVacuumAt).to.be.an.instanceOf(Date);

    const metrics = await sequelize.pgpubsub.metrics().registry.metrics();
    expect(metrics).to.match(/^pgpubsub_dead_rows \d+/m).and.to.match(/^pgpubsub_cleanup_held_back_xmin_age [1-9]\d*/m);

    // Ended, it holds nothing back, and a vacuum removes what it kept.
    await held.client.query('ROLLBACK');
    await sequelize.query('VACUUM pgpubsub.notification');
    await eventually(async () => {
      ({ cleanup } = await sequelize.pgpubsub.admin.status());
      return cleanup.deadRows === 0 && cleanup.heldBackBy?.pid !== held.pid;
    }, () => `cleaned up: ${JSON.stringify(cleanup)}`, 10_000);
  });

  it('names the transaction open longest when sessions share the oldest xmin (nothing written since the first snapshot)', async () => {
    // The later sessions connect first (pg_stat_activity lists them first), but take their snapshots
    // after the first's, with no write in between: the same xmin as the first's.
    const later = await Promise.all([1, 2, 3].map(async (n) => {
      const client = new Client({ connectionString: test.db.url, application_name: `later-report-${n}` });
      clients.push(client);
      await client.connect();
      return client;
    }));
    const held = await holdOpen(test.db.url, 'first-report');
    clients.push(held.client);
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const client of later) await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1');
    const xmins = new Set((await test.app.sequelize.query<{ xmin: string }>(
      "SELECT backend_xmin::text AS xmin FROM pg_stat_activity WHERE application_name LIKE '%-report%'", { type: QueryTypes.SELECT })).map((row) => row.xmin));
    expect(xmins.size, 'the four sessions share one xmin').to.equal(1);
    for (let look = 0; look < 5; look++) {
      const { cleanup } = await test.app.sequelize.pgpubsub.admin.status();
      expect(cleanup.heldBackBy).to.include({ pid: held.pid, applicationName: 'first-report' });
    }
  });

  it('a listener warns once, naming the pid and application, when cleanup has been held back past cleanupWarnAfterMs', async () => {
    const { lines, logger } = recorder();
    test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', () => {});
    await test.listen({ logger, cleanupWarnAfterMs: 1000 });
    const held = await holdOpen(test.db.url, 'nightly-report');
    clients.push(held.client);
    const warnings = () => lines.filter((line) => line.fields.event === 'cleanup-held-back');
    await eventually(() => warnings().length > 0, () => `a warning: ${JSON.stringify(lines)}`, 10_000);
    const [warning] = warnings();
    expect(warning.level).to.equal('warn');
    expect(warning.fields).to.include({ kind: 'transaction', backendPid: held.pid, applicationName: 'nightly-report' });
    expect(warning.message).to.match(/^cleanup of the notification table has been held back for [\d.]+ min by a transaction of pid \d+ \(nightly-report, role \w+, idle in transaction\): \d+ dead row\(s\) stay in the table/)
      .and.to.include(`SELECT pg_terminate_backend(${held.pid})`);
    // Once: the same transaction, still open, is not reported again.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(warnings()).to.have.length(1);
  });

  it("rides the heartbeat's statement when the heartbeat comes often enough: no statement of its own (an idle listener's one a minute)", async () => {
    const { lines, logger } = recorder();
    const apart: string[] = [];
    test.app.sequelize.addHook('afterQuery', (_options, query) => {
      const { sql } = query as unknown as { sql?: string };
      if (sql?.includes('n_dead_tup')) apart.push(sql);
    });
    test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', () => {});
    // The watch looks every 300 ms (a fifth of 1500), no more often than the heartbeat beats.
    await test.listen({ logger, cleanupWarnAfterMs: 1500, heartbeatMs: 300 });
    const held = await holdOpen(test.db.url, 'nightly-report');
    clients.push(held.client);
    await eventually(() => lines.some((line) => line.fields.event === 'cleanup-held-back'), () => `a warning: ${JSON.stringify(lines)}`, 10_000);
    expect(lines.find((line) => line.fields.event === 'cleanup-held-back')!.fields).to.include({ backendPid: held.pid, applicationName: 'nightly-report' });
    expect(apart.length, 'reads of cleanup apart from the heartbeat').to.equal(0);
  });

  it('reads cleanup on its own when the heartbeat cannot (a revoked catalog view): the heartbeat still beats', async () => {
    const { sequelize } = test.app;
    const role = `beat_${process.pid}`;
    await sequelize.query(`DROP ROLE IF EXISTS ${role}`);
    await sequelize.query(`CREATE ROLE ${role} LOGIN PASSWORD 'beat'`);
    await sequelize.query(`GRANT USAGE ON SCHEMA pgpubsub TO ${role}; GRANT SELECT ON pgpubsub.notification, pgpubsub.paused TO ${role}`);
    // This database only: the view stays readable elsewhere.
    await sequelize.query('REVOKE SELECT ON pg_catalog.pg_stat_all_tables FROM PUBLIC');
    const url = new URL(test.db.url);
    url.username = role;
    url.password = 'beat';
    const client = new Client({ connectionString: url.toString() });
    await client.connect();
    clients.push(client);
    const { lines, logger } = recorder();
    const upkeep = new Upkeep(sequelize, libraryObjects(), logger, { stopping: false });
    let woken = 0;
    const session = new ListenSession({
      objects: libraryObjects(), cleanup: upkeep, options: { concurrency: 1, heartbeatMs: 60_000 },
      paused: { filter: { channels: ['author_created'] }, apply: () => false }, drain: { wake: () => { woken++; } },
    } as never);
    try {
      upkeep.watchCleanup(300_000, 60_000);
      expect(upkeep.wanted()).to.equal(true);
      await sequelize.query("INSERT INTO pgpubsub.notification (channel, payload) VALUES ('author_created', '{}')");
      await session.heartbeat(client);
      expect(woken, 'the beat saw the due row').to.equal(1);
      expect(lines.find((line) => line.fields.event === 'cleanup-read-failed')?.fields.err).to.match(/permission denied/);
      expect(upkeep.wanted(), 'the heartbeat no longer reads cleanup').to.equal(false);
      await session.heartbeat(client);
      expect(woken).to.equal(2);
    } finally {
      upkeep.stop();
      await client.end();
      clients.splice(clients.indexOf(client), 1);
      await sequelize.query(`DROP OWNED BY ${role}; DROP ROLE IF EXISTS ${role}`);
    }
  });

  it("seen by a role that may not see other roles' sessions: their pid, role and application, and the time since first seen", async () => {
    const { sequelize } = test.app;
    const role = `peek_${process.pid}`;
    await sequelize.query(`DROP ROLE IF EXISTS ${role}`);
    // A password: the embedded server asks for one (scram), a trust server ignores it.
    await sequelize.query(`CREATE ROLE ${role} LOGIN PASSWORD 'peek'`);
    const url = new URL(test.db.url);
    url.username = role;
    url.password = 'peek';
    const peek = connect(url.toString());
    try {
      const held = await holdOpen(test.db.url, 'nightly-report');
      clients.push(held.client);
      const seen = await readCleanup(libraryObjects(), peek);
      expect(seen.heldBackBy).to.include({ kind: 'transaction', pid: held.pid, applicationName: 'nightly-report', openMs: null, state: null });

      const { lines, logger } = recorder();
      const upkeep = new Upkeep(peek, libraryObjects(), logger, { stopping: false } as never);
      const started = Date.now();
      upkeep.watchCleanup(1000);
      try {
        await eventually(() => lines.some((line) => line.fields.event === 'cleanup-held-back'), () => JSON.stringify(lines), 10_000);
      } finally {
        upkeep.stop();
      }
      expect(Date.now() - started).to.be.at.least(1000);
      expect(lines.find((line) => line.fields.event === 'cleanup-held-back')!.fields).to.include({ backendPid: held.pid, applicationName: 'nightly-report' });
    } finally {
      await peek.close();
      await sequelize.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });
});
