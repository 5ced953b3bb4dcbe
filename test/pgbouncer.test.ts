/**
 * Through a real PgBouncer (Debian's package, started here) in transaction pooling mode: the work
 * pool goes through the pooler and LISTEN, with the listener's session locks, goes straight to
 * PostgreSQL (listenConnection, or --listen-url); a LISTEN connection through the pooler is refused
 * with an error that names the fix.
 */
import { expect } from 'chai';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { debianPackageProblem } from '../dev/debian';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { freePort, sql } from '../dev/postgres';
import { QueryTypes } from 'sequelize';
import { ListenOptionsError, type Listener } from '../lib';
import type { App } from '../models/app';
import { registerCallbacks } from '../models/callbacks';
import { ROOT, spawnProcess } from '../dev/processes';
import { type TestDatabase, emptyDatabase, testDatabase } from './support/hooks';

const PGBOUNCER = '/usr/sbin/pgbouncer';
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

interface Bouncer {
  /** `url` with its host and port swapped for the pooler's. */
  via(url: string): string;
  stop(): Promise<void>;
}


/**
 * A PgBouncer in `mode` (transaction pooling by default) in front of the server of `url`, with 3
 * server connections so that clients share them. Stopped (and its folder removed) if it does not
 * start; stop() sends SIGINT, then SIGKILL after 5 s.
 */
async function startPgBouncer(url: string, mode: 'transaction' | 'statement' = 'transaction'): Promise<Bouncer> {
  const server = new URL(url);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-pgbouncer-'));
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const user = decodeURIComponent(server.username);
  // Readable by the postgres user PgBouncer runs as, whatever the umask.
  fs.writeFileSync(path.join(dir, 'users.txt'), `"${user}" ""\n`, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'pgbouncer.ini'), [
    '[databases]',
    `* = host=${server.hostname} port=${server.port || 5432} user=${user}${server.password ? ` password=${decodeURIComponent(server.password)}` : ''}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'users.txt')}`,
    `pool_mode = ${mode}`,
    'default_pool_size = 3',
    'max_client_conn = 200',
    'ignore_startup_parameters = extra_float_digits,options',
    '',
  ].join('\n'), { mode: 0o644 });
  // PgBouncer will not run as root; -u makes it the postgres user.
  const args = process.getuid?.() === 0 ? ['-u', 'postgres', path.join(dir, 'pgbouncer.ini')] : [path.join(dir, 'pgbouncer.ini')];
  const child: ChildProcess = spawn(PGBOUNCER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // Never outlives this process, whatever ends it.
  const killOnExit = () => { if (!gone()) child.kill('SIGKILL'); };
  process.once('exit', killOnExit);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const stop = async () => {
    if (!gone()) {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    process.removeListener('exit', killOnExit);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(async () => {
      if (gone()) throw new Error(`pgbouncer exited with ${child.exitCode ?? child.signalCode}: ${stderr}`);
      return new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
        socket.on('error', () => resolve(false));
      });
    }, () => `pgbouncer to accept connections: ${stderr}`, 15_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    via(target) {
      const through = new URL(target);
      through.hostname = '127.0.0.1';
      through.port = String(port);
      return through.toString();
    },
    stop,
  };
}

describe('PgBouncer in transaction pooling mode', function () {
  this.timeout(120_000);
  let problem: string | null = null;
  let bouncer: Bouncer | undefined;
  let db: TestDatabase;
  const apps: App[] = [];
  const listeners: Listener[] = [];

  before(async function () {
    // A clean machine installs pgbouncer here.
    this.timeout(900_000);
    if (!fs.existsSync(PGBOUNCER)) console.log(`      ${PGBOUNCER} is missing: installing Debian's pgbouncer with apt-get`);
    problem = debianPackageProblem(PGBOUNCER, 'pgbouncer');
  });
  beforeEach(async function () {
    if (problem) {
      console.log(`      skipped: ${problem}`);
      this.skip();
    }
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
    bouncer = await startPgBouncer(db.url);
  });
  afterEach(async function () {
    try {
      await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
      for (const app of apps.splice(0)) await app.sequelize.close();
    } finally {
      await bouncer?.stop();
      bouncer = undefined;
    }
    if (this.currentTest?.state === 'passed') await db?.drop();
  });

  const pooled = () => {
    const app = openApp(bouncer!.via(db.url), { pool: { max: 4 } });
    registerCallbacks(app);
    apps.push(app);
    return app;
  };

  it('processes every notification exactly once with the work pool through PgBouncer and LISTEN on a direct connection', async () => {
    const producer = pooled();
    const listenerApps = [pooled(), pooled()];
    for (const app of listenerApps) listeners.push(await app.sequelize.pgpubsub.listen({ listenConnection: db.url, logger: quiet }));
    // The pool really goes through the pooler: 12 queries at once on a pool of 4 come from at most its 3 server connections.
    const pids = await Promise.all(Array.from({ length: 12 }, () => producer.sequelize.query<{ pid: number }>('SELECT pg_backend_pid() AS pid, pg_sleep(0.05)', { type: QueryTypes.SELECT })));
    expect(new Set(pids.map(([row]) => row!.pid)).size, 'server connections serving the pool').to.be.within(1, 3);

    const authors = Array.from({ length: 400 }, (_, i) => ({ name: `pooled ${i}` }));
    await producer.Author.bulkCreate(authors.slice(0, 200));
    for (const author of authors.slice(200, 260)) await producer.Author.create(author);
    await producer.Author.bulkCreate(authors.slice(260));
    await eventually(async () => (await producer.Post.count()) === 400, 'a post for each of the 400 authors');
    const [twice] = await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM (SELECT author_id FROM posts GROUP BY 1 HAVING count(*) > 1) AS d');
    expect(Number(twice!.n), 'authors with more than one post').to.equal(0);
    const [left] = await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM pgpubsub.notification');
    expect(Number(left!.n), 'notifications left').to.equal(0);
    const total = listeners.reduce((sum, listener) => sum + listener.stats.processed, 0);
    expect(total, 'messages processed by the two listeners').to.equal(400);
  });

  it('refuses a LISTEN connection through the pooler, naming listenConnection and --listen-url', async () => {
    const app = pooled();
    const error = await app.sequelize.pgpubsub.listen({ logger: quiet }).then(
      (listener) => { listeners.push(listener); return null; },
      (failure: Error) => failure,
    );
    expect(error, 'listen() through a transaction pooler').to.be.instanceOf(ListenOptionsError);
    expect((error as ListenOptionsError).code).to.equal('PGPUBSUB_TRANSACTION_POOLER');
    expect(error!.message).to.match(/transaction pooler/).and.to.match(/listenConnection/).and.to.match(/--listen-url/);
    // Refused before it LISTENed: no server connection the pooler shares ran a LISTEN.
    const [listened] = await sql<{ n: string }>(db.url, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'");
    expect(Number(listened!.n), 'server connections whose last statement was a LISTEN').to.equal(0);
  });

  it('refuses a LISTEN connection through PgBouncer in statement mode', async () => {
    const statements = await startPgBouncer(db.url, 'statement');
    try {
      const app = openApp(statements.via(db.url), { pool: { max: 2 } });
      registerCallbacks(app);
      apps.push(app);
      const error = await app.sequelize.pgpubsub.listen({ logger: quiet }).then(
        (listener) => { listeners.push(listener); return null; },
        (failure: Error) => failure,
      );
      expect((error as ListenOptionsError | null)?.code, String(error)).to.equal('PGPUBSUB_TRANSACTION_POOLER');
      expect(error!.message).to.match(/statement pooling/);
    } finally {
      await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
      for (const app of apps.splice(0)) await app.sequelize.close();
      await statements.stop();
    }
  });

  it('runs examples/pgbouncer.ts with its Sequelize through PgBouncer and LISTEN straight to the server', async () => {
    const empty = await emptyDatabase('pgbouncer example');
    const through = await startPgBouncer(empty.url);
    try {
      const example = spawnProcess(path.join(ROOT, 'examples', 'pgbouncer.ts'), [], { DATABASE_URL: through.via(empty.url), DIRECT_DATABASE_URL: empty.url }, ROOT, { esm: true });
      const exit = await example.exited;
      expect(exit.code, example.describe()).to.equal(0);
      expect(example.output.at(-1), example.describe()).to.equal('pgbouncer example ok');
    } finally {
      await through.stop();
    }
    await empty.drop();
  });
});
