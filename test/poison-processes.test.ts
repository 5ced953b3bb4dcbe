/**
 * Poison-proof listeners as processes: a notification whose callback kills its process (exit, an
 * uncaught exception, SIGKILL as from the OOM killer) is charged and failed after maxAttempts
 * while the others are processed, under the supervisor and in --worker mode; a frozen process and
 * a SIGTERM during a hang are bounded; start-up faults are retried or reported.
 */
import { expect } from 'chai';
import path from 'node:path';
import { QueryTypes, type Sequelize } from 'sequelize';
import { Client } from 'pg';
import { HOLDER_LOCK } from '../lib/db/protocol';
import { LISTENER_APPLICATION_NAME } from '../lib/listener/listener';
import { definePoisonApp, installPoisonApp } from './fixtures/poison-app';
import { connect } from '../dev/example-app';
import { type ListenProcess, startListen } from '../dev/processes';
import { type TestDatabase, emptyDatabase, testDatabase } from './support/hooks';
import { pgpubsubCli, shown } from '../dev/processes';
import { startProxy } from '../dev/proxy';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../dev/eventually';

const APP = path.join(__dirname, 'fixtures', 'poison-app.ts');
const APP_ENV = { PGPUBSUB_POISON_APP: '1' };

interface Stored { id: string; name: string; attempts: number; last_error: string | null; failed: boolean }

describe('poison-proof listener processes', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let sequelize: Sequelize;
  const running: ListenProcess[] = [];
  const listen = (args: string[], env: Record<string, string> = {}, url = db.url) => {
    const started = startListen(url, ['--app', APP, ...args], { ...APP_ENV, ...env });
    running.push(started);
    return started;
  };
  const stored = () => sequelize.query<Stored>(
    `SELECT id::text, payload->'new'->>'name' AS name, attempts, last_error, failed_at IS NOT NULL AS failed FROM pgpubsub.notification ORDER BY id`,
    { type: QueryTypes.SELECT },
  );
  const results = async () => Number((await sequelize.query<{ n: number }>('SELECT count(*)::int AS n FROM job_results', { type: QueryTypes.SELECT }))[0].n);
  const insertJobs = (names: string[]) => sequelize.query(
    `INSERT INTO jobs (name) SELECT unnest($1::text[])`, { bind: [names] },
  );
  const shownLogs = (listener: ListenProcess) => listener.describe();
  /**
   * A role that can only connect, taking every listener holder key it has seen as soon as it is
   * free (a dead listener's): its markers must not look alive for that.
   */
  const squat = async () => {
    const role = `pgpubsub_squatter_${process.pid}`;
    await sequelize.query(`DROP ROLE IF EXISTS ${role}`);
    await sequelize.query(`CREATE ROLE ${role} LOGIN PASSWORD 'squatter'`);
    const url = new URL(db.url);
    url.username = role;
    url.password = 'squatter';
    const client = new Client({ connectionString: url.toString() });
    await client.connect();
    const seen = new Set<number>();
    const mine = new Set<number>();
    let running = true;
    const loop = (async () => {
      while (running) {
        const { rows } = await client.query<{ key: number }>(
          `SELECT (CASE WHEN objid::bigint > 2147483647 THEN objid::bigint - 4294967296 ELSE objid::bigint END)::integer AS key FROM pg_locks WHERE locktype = 'advisory' AND classid = ${HOLDER_LOCK} AND objsubid = 2 AND granted`);
        for (const { key } of rows) seen.add(key);
        for (const key of seen) {
          if (mine.has(key)) continue;
          const { rows: [{ ok }] } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [HOLDER_LOCK, key]);
          if (ok) mine.add(key);
        }
        await sleep(50);
      }
    })();
    return {
      taken: () => mine.size,
      async stop() {
        running = false;
        await loop.catch(() => undefined);
        await client.end();
        await sequelize.query(`DROP ROLE IF EXISTS ${role}`);
      },
    };
  };

  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
    sequelize = definePoisonApp(connect(db.url)).sequelize;
    await installPoisonApp(sequelize);
  });
  afterEach(async function () {
    for (const process of running.splice(0)) {
      process.kill('SIGKILL');
      await process.exited;
    }
    await sequelize.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('under the supervisor, fails notifications that kill their process (exit, timer throw, SIGKILL) after maxAttempts and processes all others once', async () => {
    const good = Array.from({ length: 60 }, (_, i) => `good ${i}`);
    const listener = listen(['--processes', '2', '--batch-size', '10']);
    await eventually(() => listener.listeningWorkers().length >= 2, 'two workers to listen', 60_000);
    await insertJobs([...good.slice(0, 20), 'exit', ...good.slice(20, 40), 'timer-throw', ...good.slice(40), 'oom']);
    await eventually(async () => {
      const rows = await stored();
      return (await results()) === 60 && rows.length === 3 && rows.every((row) => row.failed);
    }, 'the good jobs done and the three poison jobs failed', 150_000, 250).catch((error: Error) => { throw new Error(`${error.message}\n${shownLogs(listener)}`); });
    const poison = await stored();
    expect(poison.map((row) => row.name)).to.deep.equal(['exit', 'timer-throw', 'oom']);
    for (const row of poison) {
      expect(row.attempts, row.name).to.equal(3);
      expect(row.last_error, row.name).to.match(/^ProcessDied: the listener process died/);
    }
    expect(listener.all('worker-died').some((e) => e.code === 7 && e.channel === 'job_created' && e.attempt === 3 && e.maxAttempts === 3 && e.failedForGood === true), shownLogs(listener)).to.equal(true);
    expect(listener.all('exiting'), shownLogs(listener)).to.deep.equal([]);
    listener.kill('SIGTERM');
    expect((await listener.exited).code, shownLogs(listener)).to.equal(0);
  });

  /**
   * Runs `pgpubsub listen <args>` again each time it exits (at most 6 times), as systemd would,
   * until every stored job is failed and `good` jobs are done; then stops it. Its exit codes.
   */
  const restartedAsSystemdWould = async (args: string[], good: number): Promise<Array<number | null>> => {
    const codes: Array<number | null> = [];
    for (let run = 0; run < 6 && !((await stored()).every((row) => row.failed) && (await results()) === good); run++) {
      const worker = listen(args);
      const exit = await Promise.race([worker.exited, sleep(20_000).then(() => null)]);
      if (exit === null) {
        worker.kill('SIGTERM');
        codes.push((await worker.exited).code);
        break;
      }
      codes.push(exit.code);
    }
    return codes;
  };

  it('in --worker mode, restarted as systemd would, charges a notification that kills the process and fails it after maxAttempts', async () => {
    await insertJobs(['good 1', 'exit', 'good 2']);
    const codes = await restartedAsSystemdWould(['--worker'], 2);
    const rows = await stored();
    expect(await results(), JSON.stringify(codes)).to.equal(2);
    expect(rows).to.have.length(1);
    expect(rows[0]).to.include({ name: 'exit', attempts: 3, failed: true });
    expect(codes.filter((code) => code === 7).length, JSON.stringify(codes)).to.be.within(3, 4);
  });

  it('with --concurrency 3, charges a notification that kills the process, fails it after maxAttempts, and runs every other job once', async () => {
    const good = Array.from({ length: 30 }, (_, i) => `good ${i}`);
    await insertJobs([...good.slice(0, 15), 'exit', ...good.slice(15)]);
    const codes = await restartedAsSystemdWould(['--worker', '--concurrency', '3', '--batch-size', '2'], good.length);
    const rows = await stored();
    expect(await results(), JSON.stringify(codes)).to.equal(good.length);
    expect(rows.map((row) => row.name)).to.deep.equal(['exit']);
    expect(rows[0]).to.include({ attempts: 3, failed: true });
    // The deaths while 'exit' ran alone took no other batch with them: two of the three ran it alone.
    expect(codes.filter((code) => code === 7).length, JSON.stringify(codes)).to.be.within(3, 4);
  });

  it('after SIGTERM in --worker mode, exits 1 once the grace period is over, even with a callback that never settles', async () => {
    const worker = listen(['--worker', '--grace-period', '1000', '--timeout-ms', '600000']);
    await eventually(() => worker.all('listening').length > 0, 'the worker to listen', 30_000);
    await insertJobs(['hang']);
    await sleep(500);
    const started = Date.now();
    worker.kill('SIGTERM');
    const exit = await worker.exited;
    expect(exit.code, shownLogs(worker)).to.equal(1);
    expect(Date.now() - started).to.be.below(5000);
    expect(worker.all('grace-period-over').map((e) => e.gracePeriodMs), shownLogs(worker)).to.deep.equal([1000]);
    expect((await stored())[0], 'the notification stays stored').to.include({ name: 'hang', attempts: 0 });
  });

  it('gives the rows of a frozen process (SIGSTOP) back within its time limit, from the server side', async () => {
    const worker = listen(['--worker', '--timeout-ms', '1000']);
    await eventually(() => worker.all('listening').length > 0, 'the worker to listen', 30_000);
    await insertJobs(['hang']);
    await sleep(300);
    worker.child.kill('SIGSTOP');
    try {
      const [{ id }] = await stored();
      const claimable = async () => (await sequelize.query(
        `SELECT id FROM pgpubsub.notification WHERE id = ${id} FOR UPDATE SKIP LOCKED`, { type: QueryTypes.SELECT },
      )).length === 1;
      expect(await claimable(), 'held by the frozen process').to.equal(false);
      const started = Date.now();
      await eventually(claimable, 'the frozen transaction to end', 15_000, 200);
      expect(Date.now() - started).to.be.below(10_000);
    } finally {
      worker.child.kill('SIGCONT');
    }
  });

  it('charges a callback that blocks the event loop past its limit, whose claim the server ends: it fails after maxAttempts with the timeout, the others flow', async () => {
    // The limit is 1 s, so the server ends a claim idle for 6 s; the callback blocks for 7.
    const listener = listen(['--processes', '2', '--batch-size', '5', '--timeout-ms', '1000'], { PGPUBSUB_BLOCK_MS: '7000' });
    await eventually(() => listener.listeningWorkers().length === 2, 'two workers to listen', 60_000);
    await insertJobs(['block']);
    await sleep(1000);
    // While a worker is blocked, the other one goes on.
    const good = Array.from({ length: 20 }, (_, i) => `good ${i}`);
    await insertJobs(good);
    await eventually(async () => (await results()) === good.length, 'the good jobs processed while a worker is blocked', 30_000, 200);
    expect((await stored()).find((row) => row.name === 'block')?.failed, 'the blocking one still going round').to.equal(false);
    await eventually(async () => (await stored()).some((row) => row.name === 'block' && row.failed), 'the blocking one to fail for good', 120_000, 500)
      .catch(async (error: Error) => { throw new Error(`${error.message}: stored ${JSON.stringify(await stored())}\n${shownLogs(listener)}`); });
    const [block] = await stored();
    expect(block.attempts).to.equal(3);
    expect(block.last_error).to.match(/^CallbackTimeoutError: callback on 'job_created' for notification \d+ did not settle within 1000 ms/);
    expect(listener.all('callback-overrun').length, shownLogs(listener)).to.be.at.least(1);
    expect(await results()).to.equal(good.length);
    listener.kill('SIGTERM');
    expect((await listener.exited).code, shownLogs(listener)).to.equal(0);
  });

  it('chaos: producers and 4 processes under kill -9, terminated connections, SIGSTOP and a role squatting holder keys, with poison of every kind: each good job once, each poison failed, exit 0', async function () {
    // A callback that blocks the event loop past the server's end of its claim (2 s + 5 s).
    const listener = listen(['--processes', '4', '--batch-size', '20', '--timeout-ms', '2000'], { PGPUBSUB_BLOCK_MS: '8000' });
    await eventually(() => listener.listeningWorkers().length >= 4, 'four workers to listen', 60_000);
    const squatter = await squat();
    const poisonNames = ['exit', 'timer-throw', 'oom', 'hang', 'fail', 'econnrefused', 'block'];
    let produced = 0;
    let producing = true;
    // Three producers, each committing small transactions, poison mixed into the first rounds.
    const producers = [0, 1, 2].map(async (p) => {
      for (let round = 0; producing; round++) {
        const names = Array.from({ length: 10 }, (_, i) => `good ${p}.${round}.${i}`);
        if (round < poisonNames.length && round % 3 === p) names.splice(5, 0, poisonNames[round]);
        await insertJobs(names);
        produced += 10;
        await sleep(20);
      }
    });
    await sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload) VALUES ('job_created', '[1, 2]')`);
    const alive = () => listener.listeningWorkers().slice(-4).filter((pid) => { try { process.kill(pid, 0); return true; } catch { return false; } });
    for (let fault = 0; fault < 6; fault++) {
      await sleep(2000);
      const pids = alive();
      // One kill -9: the poison's own first deaths count toward the crash loop (5 a minute) too.
      if (fault === 0 && pids.length) process.kill(pids[0], 'SIGKILL');
      if (fault % 3 === 1) await sequelize.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '${LISTENER_APPLICATION_NAME}' AND pid <> pg_backend_pid()`);
      if (fault % 3 === 2 && pids.length) {
        process.kill(pids.at(-1)!, 'SIGSTOP');
        await sleep(3000);
        process.kill(pids.at(-1)!, 'SIGCONT');
      }
    }
    producing = false;
    await Promise.all(producers);
    await eventually(async () => {
      const rows = await stored();
      return (await results()) === produced && rows.every((row) => row.failed);
    }, 'every good job done and every poison failed', 150_000, 500).catch(async (error: Error) => {
      throw new Error(`${error.message}: ${await results()} of ${produced}, stored ${JSON.stringify(await stored())}\n${shownLogs(listener)}`);
    }).finally(() => squatter.stop());
    expect(squatter.taken(), 'the role took the holder keys of the dead').to.be.greaterThan(0);
    const poison = await stored();
    expect(poison.map((row) => row.name ?? 'malformed').sort()).to.deep.equal([...poisonNames, 'malformed'].sort());
    const why = Object.fromEntries(poison.map((row) => [row.name ?? 'malformed', row.last_error?.split('\n')[0]]));
    for (const name of ['exit', 'timer-throw', 'oom']) expect(why[name], name).to.match(/^ProcessDied/);
    expect(why.hang).to.match(/^CallbackTimeoutError/);
    // Charged as a timeout when the blocked worker woke, or (its claim ended by the server, its batch
    // a frozen process's) charged before it ran alone and blocked again: either way charged each run.
    expect(why.block).to.match(/^(CallbackTimeoutError|ProcessDied)/);
    expect(why.fail).to.equal('Error: fails every time');
    expect(why.econnrefused).to.equal('Error: connect ECONNREFUSED 10.9.9.9:443 (code ECONNREFUSED)');
    expect(why.malformed).to.contain('expected a JSON object');
    // Deaths outside a run alone: each deadly poison's first (in its batch) and the kill -9. A charged
    // suspect left to a later batch would add one (and trip the crash loop).
    const inBatch = listener.all('worker-died').filter((e) => e.notification === undefined);
    expect(inBatch.length, shownLogs(listener)).to.be.at.most(4);
    // Every line on stdout is the logger's: Sequelize's own "Rolling back transaction …" warnings are not printed.
    expect(listener.output).to.deep.equal([]);
    expect(listener.stderr()).not.to.contain('Rolling back transaction');
    listener.kill('SIGTERM');
    expect((await listener.exited).code, shownLogs(listener)).to.equal(0);
  });

  describe('start-up', () => {
    it('keeps trying while the database cannot be reached, logging each try, then listens and processes', async () => {
      // A port where nothing answers, then the database answers there.
      const gone = await startProxy(db.url);
      await gone.close();
      const worker = listen(['--worker'], {}, gone.via(db.url));
      await eventually(() => worker.all('unreachable').length >= 2, 'two logged tries', 20_000);
      expect(worker.child.exitCode).to.equal(null);
      const back = await startProxy(db.url, { port: gone.port });
      try {
        await insertJobs(['good']);
        await eventually(async () => (await results()) === 1, 'the job to be processed once the database is back', 60_000, 200);
        worker.kill('SIGTERM');
        expect((await worker.exited).code, shownLogs(worker)).to.equal(0);
      } finally {
        await back.close();
      }
    });

    it('under the supervisor, neither counts workers waiting for the database as crashes nor loses a stop order sent meanwhile', async () => {
      const url = new URL(db.url);
      url.port = '1';
      const listener = listen(['--processes', '2'], {}, url.toString());
      await eventually(() => listener.all('unreachable').length >= 4, 'tries from both workers', 30_000);
      expect(listener.all('worker-died'), shownLogs(listener)).to.deep.equal([]);
      listener.kill('SIGTERM');
      expect((await listener.exited).code, shownLogs(listener)).to.equal(0);
    });

    it('exits 2 at once (nothing could be checked), naming the missing table and the migration, when the library was never migrated', async () => {
      const empty = await emptyDatabase('not_installed');
      try {
        const bare = connect(empty.url);
        await bare.query('CREATE TABLE jobs (id serial PRIMARY KEY, name text NOT NULL)');
        await bare.close();
        for (const args of [['--worker'], ['--processes', '2']]) {
          const listener = listen(args, {}, empty.url);
          const exit = await listener.exited;
          expect(exit.code, shownLogs(listener)).to.equal(2);
          const said = shownLogs(listener);
          expect(said).to.contain("the library's objects (schema pgpubsub) are not installed in this database");
          expect(said).to.contain("00000000000001-pgpubsub-baseline.js (module.exports = require('sequelize-pgpubsub/migrations/baseline'))");
          expect(said).to.contain('npx sequelize-cli db:migrate');
          expect(listener.all('worker-died').length, said).to.be.at.most(1);
        }
      } finally {
        await empty.drop();
      }
    });

    it('names DATABASE_URL when it is not a PostgreSQL URL, exit 2', async () => {
      const result = await pgpubsubCli(['listen', '--worker', '--app', APP], { env: { ...APP_ENV, DATABASE_URL: 'nonsense' } });
      expect(result.code, shown(result)).to.equal(2);
      expect(result.stderr).to.contain('DATABASE_URL is not a valid PostgreSQL URL (it is not a URL). Set it like postgres://user:password@host:5432/database');
    });
  });
});
