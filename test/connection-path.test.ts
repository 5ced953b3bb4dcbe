/**
 * The LISTEN connection takes Sequelize's own connection path (replication.write, the
 * beforeConnect/afterConnect hooks, dialectOptions) or the listenConnection option, and every query
 * of the library runs on the primary, never on a read replica.
 */
import { expect } from 'chai';
import { type Options, Sequelize } from 'sequelize';
import { eventually } from '../dev/eventually';
import { type Proxy, startProxy } from '../dev/proxy';
import { type Listener, channel } from '../lib';
import { isUnreachable } from '../lib/error-text';
import { LISTENER_APPLICATION_NAME } from '../lib/listener/options';
import { type App, defineModels } from '../models/app';
import { registerCallbacks } from '../models/callbacks';
import { type TestDatabase, testDatabase } from './support/hooks';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** The parts of a postgres:// URL that Sequelize takes as separate settings. */
function parts(url: string) {
  const parsed = new URL(url);
  return {
    database: decodeURIComponent(parsed.pathname.slice(1)),
    settings: {
      host: parsed.hostname,
      port: Number(parsed.port || 5432),
      username: decodeURIComponent(parsed.username),
      password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    },
  };
}

describe('the LISTEN connection and Sequelize', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  const apps: App[] = [];
  const listeners: Listener[] = [];
  const proxies: Proxy[] = [];
  const open = (database: string, options: Options) => {
    const app = defineModels(new Sequelize(database, null as unknown as string, null as unknown as string, { dialect: 'postgres', logging: false, ...options }));
    registerCallbacks(app);
    apps.push(app);
    return app;
  };
  const listen = async (app: App, options: Parameters<App['sequelize']['pgpubsub']['listen']>[0] = {}) => {
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet, ...options });
    listeners.push(listener);
    return listener;
  };

  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
  });
  afterEach(async function () {
    await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
    for (const app of apps.splice(0)) await app.sequelize.close();
    for (const proxy of proxies.splice(0)) await proxy.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it('listens on replication.write, and runs none of its queries on the read replica', async () => {
    const { database, settings } = parts(db.url);
    const replica = await startProxy(db.url);
    proxies.push(replica);
    const app = open(database, {
      replication: { write: settings, read: [{ ...settings, host: '127.0.0.1', port: replica.port }] },
    });
    // A channel whose callback fails once: the listener then also looks up when the retry is due.
    const Flaky = channel<{ n: number }>('flaky', { retry: { maxAttempts: 2, backoffMs: 50, maxBackoffMs: 50 } });
    let tries = 0;
    app.sequelize.pgpubsub.on(Flaky, () => {
      if (tries++ === 0) throw new Error('once');
    });
    await listen(app);
    await app.Author.create({ name: 'on the primary' });
    await app.sequelize.pgpubsub.notify(Flaky, { n: 1 });
    await eventually(async () => tries === 2 && (await app.Post.count({ useMaster: true })) === 1, 'the post and the retry');
    await app.sequelize.pgpubsub.triggers.check();
    expect(replica.statements(), 'statements the library sent to the read replica').to.equal(0);
    // The replica is where Sequelize sends the app's own reads.
    expect(await app.Author.count()).to.equal(1);
    expect(replica.statements()).to.be.above(0);
  });

  it('opens the LISTEN connection through the beforeConnect hook, which supplies the login', async () => {
    const { database, settings } = parts(db.url);
    const app = open(database, {
      ...settings,
      username: 'pgpubsub_no_such_role',
      password: 'wrong',
      hooks: {
        beforeConnect: (config) => {
          config.username = settings.username;
          config.password = settings.password ?? null;
        },
      },
    });
    await listen(app);
    await app.Author.create({ name: 'hooked' });
    await eventually(async () => (await app.Post.count()) === 1, 'the post');
  });

  it('opens the LISTEN connection to listenConnection when given, and the pool where Sequelize says', async () => {
    const { database, settings } = parts(db.url);
    const direct = await startProxy(db.url);
    proxies.push(direct);
    const app = open(database, settings);
    await listen(app, { listenConnection: direct.via(db.url) });
    const before = direct.statements();
    expect(before, 'LISTEN and the locks went through listenConnection').to.be.above(0);
    await app.Author.create({ name: 'elsewhere' });
    await eventually(async () => (await app.Post.count()) === 1, 'the post');
    const refused = await app.sequelize.pgpubsub.listen({ listenConnection: 42 as never }).then(() => null, (error: Error) => error);
    expect(refused?.message).to.match(/listenConnection must be a connection URL/);
  });

  it('fails a start whose LISTEN connection is cut while being set up as a connection failure, which a worker tries again', async () => {
    const { database, settings } = parts(db.url);
    let cut = 0;
    const app: App = open(database, {
      ...settings,
      hooks: {
        // The first LISTEN connection is terminated by the server as soon as it is open.
        afterConnect: async (connection) => {
          const client = connection as import('pg').Client & { processID: number };
          const { application_name: name } = (client as unknown as { connectionParameters: { application_name?: string } }).connectionParameters;
          if (name !== LISTENER_APPLICATION_NAME || cut++ > 0) return;
          const gone = new Promise((resolve) => client.once('error', resolve));
          await app.sequelize.query(`SELECT pg_terminate_backend(${client.processID})`);
          await gone;
        },
      },
    });
    const error = await app.sequelize.pgpubsub.listen({ logger: quiet }).then(() => null, (e: Error) => e);
    expect(error?.message).to.match(/terminating connection due to administrator command|connection error and is not queryable/);
    expect(isUnreachable(error), 'a worker tries again (not a fatal start failure)').to.equal(true);
    await listen(app);
    await app.Author.create({ name: 'after the cut' });
    await eventually(async () => (await app.Post.count()) === 1, 'the post');
  });
});
