/**
 * Listeners as they run in production: the shipped `pgpubsub listen --worker`, one OS process
 * each, loading the example app (test/fixtures/example-app.ts), with real commits, real NOTIFYs,
 * connections killed from the server side, SIGTERM shutdowns. The tests read the listeners' JSON
 * log lines by their `event`. Every test gets its own database and kills its children afterwards,
 * even when it fails.
 */
import { expect } from 'chai';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { type Exit, type ListenProcess, startListen } from '../dev/processes';
import { LISTENER_APPLICATION_NAME } from '../lib/listener/listener';
import type { App } from '../models/app';
import { WELCOME } from '../models/callbacks';
import { POOL_APPLICATION_NAME } from './fixtures/example-app';
import { type TestDatabase, testDatabase } from './support/hooks';
import { storedNotifications } from './support/notifications';

const EXAMPLE_APP = path.join(__dirname, 'fixtures', 'example-app.ts');

interface ListenerOptions {
  slowMs?: number;
  batchSize?: number;
  reconnectMinMs?: number;
}

/** SIGTERM, then the exit and the stats the listener logged when it stopped. */
async function terminate(child: ListenProcess, timeoutMs = 20_000): Promise<{ exit: Exit; stats: Record<string, number> }> {
  const exit = await child.stop(timeoutMs);
  if (exit.signal === 'SIGKILL') throw new Error(`did not exit within ${timeoutMs} ms of SIGTERM: ${child.describe()}`);
  const stopped = child.all('stopped').at(-1);
  if (!stopped) throw new Error(`no 'stopped' event: ${child.describe()}`);
  return { exit, stats: stopped as unknown as Record<string, number> };
}

describe('listeners in separate processes', function () {
  let db: TestDatabase | undefined;
  let app: App | undefined;
  let children: ListenProcess[] = [];

  /** Starts `pgpubsub listen --worker` on the example app and waits for it to say it is listening. */
  async function startListener(options: ListenerOptions = {}): Promise<ListenProcess> {
    const args = ['--worker', '--app', EXAMPLE_APP];
    if (options.batchSize) args.push('--batch-size', String(options.batchSize));
    if (options.reconnectMinMs) args.push('--reconnect-min-ms', String(options.reconnectMinMs));
    const child = startListen(db!.url, args, { SLOW_MS: String(options.slowMs ?? 0) });
    children.push(child);
    await child.event('listening', 30_000);
    return child;
  }

  async function count(sql: string): Promise<number> {
    const [row] = await app!.sequelize.query<{ n: string | number }>(sql, { type: QueryTypes.SELECT });
    return Number(row.n);
  }

  const postCount = () => count('SELECT count(*) AS n FROM posts');
  const notificationCount = () => count('SELECT count(*) AS n FROM pgpubsub.notification');

  /** Backends that hold a listener's LISTEN connection on the test database. */
  async function listenBackends(): Promise<number[]> {
    const rows = await app!.sequelize.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE application_name = :name AND datname = current_database() ORDER BY pid',
      { type: QueryTypes.SELECT, replacements: { name: LISTENER_APPLICATION_NAME } },
    );
    return rows.map((r) => Number(r.pid));
  }

  /** The state behind a timeout: counts, leftover notifications with their errors, the children's output. */
  async function state(): Promise<string> {
    const rows = await app!.sequelize.query<Record<string, unknown>>(
      `SELECT count(*) AS left, count(*) FILTER (WHERE attempts > 0) AS retried, count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed,
              min(last_error) AS an_error FROM pgpubsub.notification`,
      { type: QueryTypes.SELECT },
    );
    return `posts=${await postCount()} notifications=${JSON.stringify(rows[0])}\n${children.map((c) => c.describe()).join('\n')}`;
  }

  /** Waits until every author has its post and no notification is left; fails early if one was retried. */
  async function drained(authors: number, timeoutMs: number): Promise<void> {
    const outcome = await eventually(async () => {
      const retried = await count('SELECT count(*) AS n FROM pgpubsub.notification WHERE attempts > 0');
      if (retried > 0) return 'retried';
      return (await notificationCount()) === 0 && (await postCount()) >= authors && 'drained';
    }, state, timeoutMs, 100);
    if (outcome === 'retried') throw new Error(`a notification failed (a callback ran twice?): ${await state()}`);
  }

  /** Every author has exactly one welcome post, and nothing else is stored. */
  async function expectOnePostPerAuthor(authors: number): Promise<void> {
    const [row] = await app!.sequelize.query<{ posts: string; distinct_authors: string; welcome: string; authors: string; orphans: string }>(
      `SELECT (SELECT count(*) FROM posts) AS posts,
              (SELECT count(DISTINCT author_id) FROM posts) AS distinct_authors,
              (SELECT count(*) FROM posts WHERE content = :welcome) AS welcome,
              (SELECT count(*) FROM authors) AS authors,
              (SELECT count(*) FROM authors a WHERE NOT EXISTS (SELECT 1 FROM posts p WHERE p.author_id = a.id)) AS orphans`,
      { type: QueryTypes.SELECT, replacements: { welcome: WELCOME } },
    );
    expect(Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)]))).to.deep.equal({
      posts: authors, distinct_authors: authors, welcome: authors, authors, orphans: 0,
    });
    expect(await storedNotifications(app!.sequelize)).to.deep.equal([]);
  }

  /** Proof of exactly-once: a second post for an author would violate this and fail the callback. */
  async function onePostPerAuthorIndex(): Promise<void> {
    await app!.sequelize.query('CREATE UNIQUE INDEX posts_author_id_once ON posts (author_id)');
  }

  async function insertAuthors(n: number, prefix = 'author'): Promise<void> {
    await app!.Author.bulkCreate(Array.from({ length: n }, (_, i) => ({ name: `${prefix} ${i}` })));
  }

  afterEach(async function () {
    this.timeout(30_000);
    const running = children;
    children = [];
    await Promise.all(running.map((child) => child.stop(0, 'SIGKILL')));
    if (this.currentTest?.state === 'failed') {
      for (const child of running) process.stderr.write(`${child.describe()}\n`);
    }
    await app?.sequelize.close();
    app = undefined;
    await db?.drop();
    db = undefined;
  });

  async function setUp(label: string): Promise<void> {
    db = await testDatabase(label);
    app = openApp(db.url);
  }

  it('two listeners in separate processes drain 2,000 notifications, each processed exactly once', async function () {
    this.timeout(60_000);
    await setUp('two_listeners');
    await onePostPerAuthorIndex();
    const [first, second] = await Promise.all([
      startListener({ slowMs: 2, batchSize: 50 }),
      startListener({ slowMs: 2, batchSize: 50 }),
    ]);

    await insertAuthors(2000); // one INSERT statement: 2,000 stored rows, one NOTIFY
    expect(await count('SELECT count(*) AS n FROM authors')).to.equal(2000);
    await drained(2000, 40_000);
    await expectOnePostPerAuthor(2000);

    const [a, b] = await Promise.all([terminate(first), terminate(second)]);
    expect(a.exit, first.describe()).to.deep.equal({ code: 0, signal: null });
    expect(b.exit, second.describe()).to.deep.equal({ code: 0, signal: null });
    expect(a.stats.processed, 'first listener got work').to.be.greaterThan(0);
    expect(b.stats.processed, 'second listener got work').to.be.greaterThan(0);
    expect(a.stats.processed + b.stats.processed).to.equal(2000);
    expect(a.stats.failed + b.stats.failed).to.equal(0);
  });

  it('a listener whose connection is killed with pg_terminate_backend reconnects and processes what was inserted while it was down', async function () {
    this.timeout(60_000);
    await setUp('listen_killed');
    await onePostPerAuthorIndex();
    // A reconnect backoff of 0.5-1 s makes sure the insert below lands while no LISTEN connection exists.
    const child = await startListener({ reconnectMinMs: 1000 });
    const [killed, ...others] = await listenBackends();
    expect(others, 'one LISTEN backend').to.deep.equal([]);
    expect(killed).to.be.a('number');

    await app!.sequelize.query('SELECT pg_terminate_backend(:pid)', { replacements: { pid: killed } });
    await insertAuthors(50, 'while down');
    const duringInsert = (await listenBackends()).filter((pid) => pid !== killed);
    expect(duringInsert, 'the insert committed while the listener had no LISTEN connection').to.deep.equal([]);
    expect(await notificationCount()).to.equal(50);

    await drained(50, 15_000);
    await expectOnePostPerAuthor(50);
    await child.event('reconnected', 5000);
    const after = await listenBackends();
    expect(after, 'a new LISTEN backend').to.have.length(1);
    expect(after[0]).to.not.equal(killed);

    // Still listening on the new connection: a later insert is processed through NOTIFY.
    await insertAuthors(10, 'after');
    await drained(60, 10_000);
    await expectOnePostPerAuthor(60);

    const { exit, stats } = await terminate(child);
    expect(exit).to.deep.equal({ code: 0, signal: null });
    expect(stats.reconnects).to.equal(1);
    expect(stats.processed).to.equal(60);
  });

  it('a listener whose pool and LISTEN connections are all killed mid-drain recovers and processes everything exactly once', async function () {
    this.timeout(60_000);
    await setUp('pool_killed');
    await onePostPerAuthorIndex();
    // 20 rows of ≥10 ms each: a batch holds its pool connection for ≥200 ms, so the kill lands inside one.
    const child = await startListener({ slowMs: 10, batchSize: 20, reconnectMinMs: 100 });

    await insertAuthors(300);
    await eventually(async () => (await postCount()) >= 40, state, 15_000, 100);
    const killed = await app!.sequelize.query<{ pid: number; application_name: string }>(
      `SELECT pid, application_name, pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name IN (:names)`,
      { type: QueryTypes.SELECT, replacements: { names: [POOL_APPLICATION_NAME, LISTENER_APPLICATION_NAME] } },
    );
    const names = killed.map((k) => k.application_name);
    expect(names, 'killed the LISTEN connection').to.include(LISTENER_APPLICATION_NAME);
    expect(names, 'killed a pool connection').to.include(POOL_APPLICATION_NAME);
    expect(await notificationCount(), 'killed mid-drain').to.be.greaterThan(0);

    await drained(300, 30_000);
    await expectOnePostPerAuthor(300);
    expect(child.exit, `the listener survived: ${child.describe()}`).to.equal(null);
    expect(child.all('drain-failed'), `the failed batch was reported: ${child.describe()}`).to.not.deep.equal([]);
    await child.event('reconnected', 5000);

    const { exit, stats } = await terminate(child);
    expect(exit).to.deep.equal({ code: 0, signal: null });
    expect(stats.reconnects).to.be.at.least(1);
    expect(stats.failed).to.equal(0);
    // A batch whose COMMIT was cut off may have committed without being counted, never the reverse.
    expect(stats.processed).to.be.at.most(300);
  });

  it('recover() from outside makes a running listener drain stored rows', async function () {
    this.timeout(60_000);
    await setUp('recover');
    const child = await startListener();
    // Past its start-up recovery drain, the listener looks at the table only when woken (or at the
    // 60 s heartbeat); rows stored during that drain could be picked up by it.
    await child.event('recovered', 10_000);

    // Rows stored without the trigger and without NOTIFY, as if their wake-up had been lost.
    await app!.sequelize.transaction(async (transaction) => {
      await app!.sequelize.query('SET LOCAL session_replication_role = replica', { transaction });
      await app!.Author.bulkCreate(Array.from({ length: 20 }, (_, i) => ({ name: `silent ${i}` })), { transaction });
      await app!.sequelize.query(
        `INSERT INTO pgpubsub.notification (channel, payload)
         SELECT 'author_created', jsonb_build_object('op', 'INSERT', 'model', 'Author', 'old', null, 'new', to_jsonb(a), 'context', '{}'::jsonb)
           FROM authors a ORDER BY a.id`,
        { transaction },
      );
    });
    expect(await notificationCount(), 'no trigger fired').to.equal(20);

    await sleep(1500);
    // An idle listener must not poll: with nothing due it waits for a NOTIFY, recover() or its heartbeat.
    expect(await notificationCount(), 'not woken: still stored after 1.5 s').to.equal(20);
    expect(await postCount()).to.equal(0);

    await app!.sequelize.pgpubsub.recover();
    await drained(20, 5000);
    await expectOnePostPerAuthor(20);

    const { exit, stats } = await terminate(child);
    expect(exit).to.deep.equal({ code: 0, signal: null });
    expect(stats.processed).to.equal(20);
  });

  it('SIGTERM lets the listener finish its batch and exit 0, and a new listener finishes the rest', async function () {
    this.timeout(60_000);
    await setUp('sigterm');
    await onePostPerAuthorIndex();
    // Batches of 100 rows at ≥20 ms each take ≥2 s: the SIGTERM after 1 s arrives mid-batch.
    const first = await startListener({ slowMs: 20, batchSize: 100 });
    await insertAuthors(300);
    await sleep(1000);
    expect(await postCount(), 'the first batch has not committed yet').to.equal(0);

    const stopped = await terminate(first);
    expect(stopped.exit, first.describe()).to.deep.equal({ code: 0, signal: null });
    const done = stopped.stats.processed;
    expect(done, 'finished the batch in hand').to.be.greaterThan(0);
    expect(done % 100, 'whole batches only').to.equal(0);
    expect(done, 'stopped before the end').to.be.lessThan(300);
    expect(stopped.stats.failed).to.equal(0);
    // What it processed committed; the rest is stored, untouched.
    expect(await postCount()).to.equal(done);
    expect(await notificationCount()).to.equal(300 - done);
    expect(await count('SELECT count(*) AS n FROM pgpubsub.notification WHERE attempts > 0')).to.equal(0);

    const second = await startListener();
    await drained(300, 20_000);
    await expectOnePostPerAuthor(300);
    const rest = await terminate(second);
    expect(rest.exit).to.deep.equal({ code: 0, signal: null });
    expect(rest.stats.processed).to.equal(300 - done);
  });
});
