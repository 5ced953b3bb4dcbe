import { QueryTypes } from 'sequelize';
import { openApp } from '../../dev/example-app';
import type { Listener, ListenOptions } from '../../lib';
import type { App } from '../../models/app';
import { type TestDatabase, testDatabase } from './hooks';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** What a describe block adds to the per-test set-up: run after the app opens, and before it closes. */
export interface PerTestHooks {
  setup?(this: Mocha.Context): Promise<void> | void;
  cleanup?(this: Mocha.Context): Promise<void> | void;
}

/**
 * Mocha hooks for a describe block: each test gets a migrated database of its own with the
 * example app open on it; after it, `cleanup` runs, its listeners are stopped and the app
 * closed, and the database dropped when it passed (kept for a look otherwise).
 */
export function exampleAppPerTest(hooks: PerTestHooks = {}) {
  let db: TestDatabase | undefined;
  let app: App | undefined;
  const listeners: Listener[] = [];
  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
    app = openApp(db.url);
    await hooks.setup?.call(this);
  });
  afterEach(async function () {
    await hooks.cleanup?.call(this);
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
