/**
 * Mocha root hooks (loaded via .mocharc.json "require"): one PostgreSQL server
 * per test process, and helpers handing each test its own database.
 */
import { connect, migrateApp } from '../../dev/example-app';
import { migrations } from '../../lib/db/migrations/index';
import {
  type PostgresServer,
  createDatabaseFromTemplate,
  createEmptyDatabase,
  createTemplate,
  dropDatabase,
  dropStaleDatabases,
  scratchDatabaseName,
  startPostgres,
  templateName,
} from '../../dev/postgres';

export interface TestDatabase {
  url: string;
  name: string;
  /** Idempotent; databases not dropped by the test are dropped in afterAll. */
  drop(): Promise<void>;
}

let current: PostgresServer | undefined;
let template: Promise<string> | undefined; // memoised: migrate once, clone often
const live = new Set<string>();

export function server(): PostgresServer {
  if (!current) {
    throw new Error('test PostgreSQL server not started: server() was called before the ' +
      'root beforeAll hook ran (is test/support/hooks.ts in .mocharc.json "require"?)');
  }
  return current;
}

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(120000); // first embedded start may run initdb + useradd
    current = await startPostgres();
    // Child processes spawned by tests (CLI, workers) find the server here.
    process.env.PGPUBSUB_TEST_BASE_URL = current.url;
    await dropStaleDatabases(current.url);
  },

  async afterAll(this: Mocha.Context) {
    this.timeout(60000);
    const srv = current;
    if (!srv) return;
    try {
      // Matters on a shared server; an embedded one is deleted anyway, but
      // dropping keeps both paths identical.
      for (const name of [...live]) {
        live.delete(name);
        await dropDatabase(srv.url, name);
      }
      // Even a failed preparation may have left the template database behind.
      if (template) await dropDatabase(srv.url, templateName());
    } finally {
      current = undefined;
      template = undefined;
      delete process.env.PGPUBSUB_TEST_BASE_URL;
      await srv.stop();
    }
  },
};

function tracked(baseUrl: string, name: string, url: string): TestDatabase {
  live.add(name);
  return {
    url,
    name,
    async drop() {
      if (!live.delete(name)) return;
      await dropDatabase(baseUrl, name);
    },
  };
}

/** A fresh database cloned from the prepared (migrated) per-process template. */
export async function testDatabase(label: string): Promise<TestDatabase> {
  const base = server().url;
  template ??= createTemplate(base, templateName(), migrateApp).then(() => templateName());
  const name = scratchDatabaseName('t', label);
  const url = await createDatabaseFromTemplate(base, await template, name);
  return tracked(base, name, url);
}

/** A fresh database with the library's objects only (its migrations run), for tests that bring their own tables. */
export async function libraryDatabase(label: string): Promise<TestDatabase> {
  const db = await emptyDatabase(label);
  const admin = connect(db.url);
  try {
    for (const migration of migrations) await migration.up({ context: admin.getQueryInterface() });
  } finally {
    await admin.close();
  }
  return db;
}

/** A fresh database with nothing in it, e.g. for migration tests. */
export async function emptyDatabase(label: string): Promise<TestDatabase> {
  const base = server().url;
  const name = scratchDatabaseName('t', label);
  const url = await createEmptyDatabase(base, name);
  return tracked(base, name, url);
}
