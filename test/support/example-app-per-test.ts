import { QueryTypes } from 'sequelize';
import { openApp } from '../../dev/example-app';
import type { Listener, ListenOptions } from '../../lib';
import type { App } from '../../models/app';
import { type TestDatabase, testDatabase } from './hooks';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Mocha hooks for a describe block: each test gets a migrated database of its own with the
 * example app open on it; its listeners are stopped and the app closed after it, and the
 * database dropped when it passed (kept for a look otherwise).
 */
export function exampleAppPerTest() {
  let db: TestDatabase | undefined;
  let app: App | undefined;
  const listeners: Listener[] = [];
  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
    app = openApp(db.url);
  });
  afterEach(async function () {
    await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
    await app?.sequelize.close();
    if (this.currentTest?.state === 'passed') await db?.drop();
  });
  return {
    get app(): App { return app!; },
    get db(): TestDatabase { return db!; },
    /** A quiet listener of the test's app, stopped after the test. */
    async listen(options: ListenOptions = {}): Promise<Listener> {
      const listener = await app!.sequelize.pgpubsub.listen({ logger: quiet, ...options });
      listeners.push(listener);
      return listener;
    },
    /** `SELECT count(*) FROM <from>`. */
    async count(from: string): Promise<number> {
      return (await app!.sequelize.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${from}`, { type: QueryTypes.SELECT }))[0].n;
    },
  };
}
