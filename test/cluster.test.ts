import { expect } from 'chai';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { QueryTypes, type Sequelize } from 'sequelize';
import { eventually } from '../dev/eventually';
import { migrateApp, openApp } from '../dev/example-app';
import { createEmptyDatabase, startEmbedded } from '../dev/postgres';
import { type ListenProcess, ROOT, pgpubsubCli, startListen } from '../dev/processes';
import { exampleAppPerTest } from './support/example-app-per-test';

const execFileAsync = promisify(execFile);

const cli = (args: string[], env: Record<string, string> = {}) => pgpubsubCli(args, { env });
/** The example app with each author callback slowed down by `ms` (test/fixtures/example-app.ts). */
const EXAMPLE_APP = path.join(__dirname, 'fixtures', 'example-app.ts');
const slowApp = (ms: number) => ({ args: ['--app', EXAMPLE_APP], env: { SLOW_MS: String(ms) } });

/** Counts that prove exactly-once: one post per author, none missing, none twice, nothing left stored. */
async function tally(sequelize: Sequelize) {
  const [row] = await sequelize.query<{ authors: number; posts: number; distinct: number; stored: number }>(
    `SELECT (SELECT count(*) FROM authors)::int AS authors, (SELECT count(*) FROM posts)::int AS posts,
            (SELECT count(DISTINCT author_id) FROM posts)::int AS distinct,
            (SELECT count(*) FROM pgpubsub.notification)::int AS stored`,
    { type: QueryTypes.SELECT },
  );
  return row;
}

/** What a drain that stalled left: the stored rows by state, the in-flight markers, and the listener's output. */
async function stalled(sequelize: Sequelize, listener: ListenProcess, what: string): Promise<string> {
  const rows = await sequelize.query(
    `SELECT attempts, failed_at IS NOT NULL AS failed, available_at > now() AS later, count(*)::int AS n
       FROM pgpubsub.notification GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    { type: QueryTypes.SELECT },
  );
  const markers = await sequelize.query('SELECT holder, cardinality(ids) AS ids, xact::text, backend_pid, suspected_at FROM pgpubsub.inflight', { type: QueryTypes.SELECT });
  return `${what}; stored: ${JSON.stringify(rows)}; markers: ${JSON.stringify(markers)}; ${listener.describe()}`;
}

describe('pgpubsub listen', function () {
  this.timeout(120_000);
  const running: ListenProcess[] = [];
  const listen = (args: string[], env?: Record<string, string>) => {
    const started = startListen(t.db.url, args, env);
    running.push(started);
    return started;
  };

  const t = exampleAppPerTest({
    async setup() {
      // The exactly-once proof: a second post for an author would violate this and fail its callback.
      await t.app.sequelize.query('CREATE UNIQUE INDEX posts_one_per_author ON posts (author_id)');
    },
    async cleanup() {
      for (const process of running.splice(0)) {
        process.kill('SIGKILL');
        await process.exited;
      }
    },
  });

  describe('arguments', () => {
    it('documents every option in --help', async () => {
      const { code, stdout } = await cli(['listen', '--help']);
      expect(code).to.equal(0);
      for (const option of ['--channels', '--processes', '--worker', '--recover', '--no-recover', '--no-restart-on-failure', '--batch-size', '--timeout-ms', '--grace-period', '--heartbeat-ms', '--reconnect-min-ms', '--reconnect-max-ms', '--metrics-port', '--metrics-host', '--log-level', '--log-format']) {
        expect(stdout).to.contain(option);
      }
    });

    for (const [args, named] of [
      [['--processes', '0'], '--processes must be a positive integer'],
      [['--batch-size', 'many'], '--batch-size must be a positive integer'],
      [['--heartbeat-ms', 'soon'], '--heartbeat-ms must be a positive integer'],
      [['--reconnect-min-ms', '0'], '--reconnect-min-ms must be a positive integer'],
      [['--log-level', 'loud'], "'loud' is invalid"],
      [['--metrics-port', '70000'], '--metrics-port must be a port number from 0 to 65535'],
      [['--log-format', 'xml'], "'xml' is invalid"],
      [['--worker', '--processes', '2'], '--worker runs a single listener'],
      [['--bogus'], "unknown option '--bogus'"],
    ] as const) {
      it(`exits 2 naming the argument for ${args.join(' ')}`, async () => {
        const { code, stderr } = await cli(['listen', ...args], { DATABASE_URL: t.db.url });
        expect(code, stderr).to.equal(2);
        expect(stderr).to.contain(named);
      });
    }
  });

  it('runs one listener with --worker and exits 0 on SIGTERM', async () => {
    const listener = listen(['--worker']);
    await eventually(() => listener.all('listening').length > 0, 'the worker to listen', 30_000);
    await t.app.Author.bulkCreate(Array.from({ length: 50 }, (_, i) => ({ name: `w${i}` })));
    await eventually(async () => (await tally(t.app.sequelize)).posts === 50, 'fifty posts', 30_000);
    listener.kill('SIGTERM');
    expect((await listener.exited).code).to.equal(0);
    expect(listener.all('stopped').length > 0).to.equal(true);
  });

  it('shares a bulk insert over several processes, each notification processed exactly once, and stops cleanly', async () => {
    const listener = listen(['--processes', '3', '--batch-size', '10', ...slowApp(3).args], slowApp(3).env);
    await eventually(() => listener.listeningWorkers().length === 3, 'three workers to listen', 60_000);
    await t.app.Author.bulkCreate(Array.from({ length: 600 }, (_, i) => ({ name: `a${i}` })));
    await eventually(async () => (await tally(t.app.sequelize)).stored === 0, 'the backlog to drain', 60_000);
    expect(await tally(t.app.sequelize)).to.deep.equal({ authors: 600, posts: 600, distinct: 600, stored: 0 });
    // A batch's line is written just after its commit, so the last one may trail the empty table.
    const total = () => [...listener.processedBy('pid').values()].reduce((a, b) => a + b, 0);
    await eventually(() => total() >= 600, () => `600 processed in the batch events, got ${total()}`, 5000);
    const shares = listener.processedBy('pid');
    expect(total()).to.equal(600);
    expect(shares.size, JSON.stringify([...shares])).to.be.greaterThan(1);
    listener.kill('SIGTERM');
    const { code } = await listener.exited;
    expect(code).to.equal(0);
    expect(listener.all('worker-stopped')).to.have.length(3);
    // Every line is the logger's, and names what happened for programs in `event`.
    expect(listener.output, listener.describe()).to.deep.equal([]);
    expect(listener.events.filter((e) => typeof e.event !== 'string'), listener.describe()).to.deep.equal([]);
    expect(listener.events.at(-1)).to.include({ event: 'exiting', exitCode: 0 });
  });

  it('replaces a worker killed with kill -9 in the middle of a batch, and every notification is processed exactly once', async () => {
    const listener = listen(['--processes', '4', '--batch-size', '50', ...slowApp(2).args], slowApp(2).env);
    await eventually(() => listener.listeningWorkers().length === 4, 'four workers to listen', 60_000);
    await t.app.Author.bulkCreate(Array.from({ length: 5000 }, (_, i) => ({ name: `k${i}` })));
    await eventually(() => listener.all('batch').length >= 4, 'the drain to be under way', 30_000);
    const victim = listener.listeningWorkers()[0];
    process.kill(victim, 'SIGKILL');
    await eventually(() => listener.all('worker-died').some((e) => e.signal === 'SIGKILL'), 'the death to be logged', 10_000);
    await eventually(() => listener.listeningWorkers().length === 5, 'a replacement worker to listen', 60_000);
    await eventually(async () => (await tally(t.app.sequelize)).stored === 0, 'the backlog to drain', 90_000);
    expect(await tally(t.app.sequelize)).to.deep.equal({ authors: 5000, posts: 5000, distinct: 5000, stored: 0 });
    listener.kill('SIGTERM');
    expect((await listener.exited).code).to.equal(0);
  });

  it('survives pg_terminate_backend on every listener connection mid-drain', async () => {
    const listener = listen(['--processes', '2', '--batch-size', '20', ...slowApp(2).args], slowApp(2).env);
    await eventually(() => listener.listeningWorkers().length === 2, 'two workers to listen', 60_000);
    await t.app.Author.bulkCreate(Array.from({ length: 2000 }, (_, i) => ({ name: `t${i}` })));
    await eventually(() => listener.all('batch').length >= 3, 'the drain to be under way', 30_000);
    const [{ killed }] = await t.app.sequelize.query<{ killed: number }>(
      `SELECT count(pg_terminate_backend(pid))::int AS killed FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()`,
      { type: QueryTypes.SELECT },
    );
    expect(killed).to.be.greaterThan(2);
    await eventually(async () => (await tally(t.app.sequelize)).stored === 0, 'the backlog to drain', 90_000);
    expect(await tally(t.app.sequelize)).to.deep.equal({ authors: 2000, posts: 2000, distinct: 2000, stored: 0 });
    listener.kill('SIGTERM');
    expect((await listener.exited).code).to.equal(0);
  });

  it('survives a PostgreSQL restart mid-drain', async function () {
    // Its own embedded server, whatever DATABASE_URL says: this test stops and starts it.
    const server = await startEmbedded();
    const url = await createEmptyDatabase(server.url, 'restart_me');
    const local = openApp(url);
    try {
      await migrateApp(url);
      await local.sequelize.query('CREATE UNIQUE INDEX posts_one_per_author ON posts (author_id)');
      const listener = startListen(url, ['--processes', '2', '--batch-size', '20', ...slowApp(2).args], slowApp(2).env);
      running.push(listener);
      await eventually(() => listener.listeningWorkers().length === 2, 'two workers to listen', 60_000);
      await local.Author.bulkCreate(Array.from({ length: 2000 }, (_, i) => ({ name: `r${i}` })));
      await eventually(() => listener.all('batch').length >= 3, 'the drain to be under way', 30_000);
      await server.restart!();
      await eventually(async () => (await tally(local.sequelize)).stored === 0, () => stalled(local.sequelize, listener, 'the backlog to drain after the restart'), 90_000, 250);
      expect(await tally(local.sequelize)).to.deep.equal({ authors: 2000, posts: 2000, distinct: 2000, stored: 0 });
      expect(listener.all('worker-died'), listener.describe()).to.deep.equal([]);
      expect(listener.all('reconnected').map((e) => e.worker).sort(), listener.describe()).to.deep.equal([1, 2]);
      listener.kill('SIGTERM');
      expect((await listener.exited).code).to.equal(0);
    } finally {
      await local.sequelize.close();
      await server.stop();
    }
  });

  it('lets workers finish their batch on SIGTERM mid-drain, exits 0, and a new listener finishes the rest', async () => {
    const first = listen(['--processes', '2', '--batch-size', '10', ...slowApp(20).args], slowApp(20).env);
    await eventually(() => first.listeningWorkers().length === 2, 'two workers to listen', 60_000);
    await t.app.Author.bulkCreate(Array.from({ length: 400 }, (_, i) => ({ name: `s${i}` })));
    await eventually(() => first.all('batch').length >= 2, 'the drain to be under way', 30_000);
    first.kill('SIGTERM');
    expect((await first.exited).code).to.equal(0);
    const halfway = await tally(t.app.sequelize);
    expect(halfway.stored).to.be.greaterThan(0);
    expect(halfway.posts + halfway.stored).to.equal(400);
    const second = listen(['--worker']);
    await eventually(async () => (await tally(t.app.sequelize)).stored === 0, 'the rest to drain', 60_000);
    expect(await tally(t.app.sequelize)).to.deep.equal({ authors: 400, posts: 400, distinct: 400, stored: 0 });
    second.kill('SIGTERM');
    expect((await second.exited).code).to.equal(0);
  });

  it('gives up on a crash loop and exits 1 saying why', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-crashing-'));
    const appFile = path.join(dir, 'crashing-t.app.js');
    fs.writeFileSync(appFile, `
      const cluster = require('node:cluster');
      const { Sequelize, DataTypes } = require(${JSON.stringify(require.resolve('sequelize'))});
      const pgpubsub = require(${JSON.stringify(path.join(ROOT, 'lib'))}).default;
      const sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false }).use(pgpubsub);
      const Thing = sequelize.define('Thing', { name: DataTypes.TEXT }, { pgpubsub: { channels: { thing_made: { events: ['insert'] } } } });
      sequelize.pgpubsub.on(Thing, 'thing_made', () => {});
      if (cluster.isWorker) setTimeout(() => process.exit(3), 50);
      module.exports = { sequelize };
    `);
    const listener = startListen(t.db.url, ['--processes', '2', '--app', appFile]);
    running.push(listener);
    const { code } = await listener.exited;
    const shown = listener.describe();
    expect(code, shown).to.equal(1);
    expect(listener.all('worker-died').filter((e) => e.code === 3).length, shown).to.be.at.least(5);
    expect(listener.all('worker-replacing').length, shown).to.be.greaterThan(0);
    expect(listener.events.at(-1), shown).to.include({ event: 'exiting', exitCode: 1, level: 'error', reason: 'crash loop: 5 worker deaths within 60 s' });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('does not replace dead workers with --no-restart-on-failure, and exits 1 when none is left', async () => {
    const listener = listen(['--processes', '2', '--no-restart-on-failure']);
    await eventually(() => listener.listeningWorkers().length === 2, 'two workers to listen', 60_000);
    for (const pid of listener.listeningWorkers()) process.kill(pid, 'SIGKILL');
    const { code } = await listener.exited;
    expect(code).to.equal(1);
    expect(listener.all('worker-replacing')).to.deep.equal([]);
    expect(listener.events.at(-1)).to.include({ event: 'exiting', reason: 'every worker died and restart on failure is off' });
  });

  it('runs the demo from the README (small), verifying every author got exactly one post', async () => {
    const base = new URL(t.db.url);
    base.pathname = '/postgres';
    const { stdout } = await execFileAsync('npm', ['run', 'demo', '--', '--authors', '200', '--processes', '2', '--slow-ms', '1'], {
      cwd: ROOT, env: { ...process.env, DATABASE_URL: base.toString() },
    });
    expect(stdout).to.contain('Verified: all 200 authors have exactly one post');
    expect(stdout).to.contain('Listener exited with code 0.');
  });
});
