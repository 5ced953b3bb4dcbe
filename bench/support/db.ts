import type { Client } from 'pg';
import { managedTriggerSql } from '../../lib/db/catalog';
import { libraryObjects } from '../../lib/db/objects';
import { createDatabaseFromTemplate, createEmptyDatabase, createTemplate, dropDatabase, scratchDatabaseName, withClient } from '../../dev/postgres';
import { cpuSeconds } from './proc';

export { migrateApp } from '../../dev/example-app';
export { withClient };

export interface BenchDatabase {
  name: string;
  url: string;
}

/** One scratch database per system and run (dev/postgres.ts names it, and drops it if a crashed run left it). */
/** A database for one run: empty, or a copy of `template` (a file copy, however many rows it holds). */
export async function createBenchDatabase(serverUrl: string, label: string, template?: string): Promise<BenchDatabase> {
  const name = scratchDatabaseName('bench', label);
  return { name, url: template ? await createDatabaseFromTemplate(serverUrl, template, name) : await createEmptyDatabase(serverUrl, name) };
}

/** A database `fill` prepares once for the runs that copy it (createBenchDatabase's template); drop it with dropBenchDatabase. */
export async function createBenchTemplate(serverUrl: string, label: string, fill: (url: string) => Promise<void>): Promise<BenchDatabase> {
  const name = scratchDatabaseName('bench', label);
  return { name, url: await createTemplate(serverUrl, name, fill) };
}

export async function dropBenchDatabase(serverUrl: string, db: BenchDatabase): Promise<void> {
  await dropDatabase(serverUrl, db.name);
}

/**
 * Drops our channel triggers (for peers, and for the "without the channel" baselines). The app
 * tables and the empty notification table stay, so every system writes to identical tables.
 */
export async function dropChannelTriggers(url: string): Promise<void> {
  await withClient(url, async (c) => {
    const { rows } = await c.query<{ name: string; tbl: string }>(
      `SELECT quote_ident(t.tgname) AS name, t.tgrelid::regclass::text AS tbl FROM pg_trigger AS t WHERE ${managedTriggerSql('t')}`,
    );
    for (const { name, tbl } of rows) await c.query(`DROP TRIGGER ${name} ON ${tbl}`);
  });
}

/**
 * Diagnostic only: replaces the library's wake-up function with one that wakes nobody, to show
 * what the wake-up costs concurrent producers. The triggers are untouched and still store every
 * notification.
 */
export async function disableWakeUps(url: string): Promise<void> {
  await withClient(url, (c) => c.query(`CREATE OR REPLACE FUNCTION ${libraryObjects().wakeFunction}(channel text) RETURNS boolean LANGUAGE sql AS 'SELECT false'`));
}

/**
 * Diagnostic only (W3's design rows): rewrites the function of every channel trigger with
 * `rewrite`, which gets its whole definition (pg_get_functiondef) and must change it. Throws when
 * a rewrite changes nothing, so a change in how triggers are rendered cannot leave a design row
 * quietly measuring the current design.
 */
export async function rewriteChannelTriggers(url: string, rewrite: (definition: string) => string): Promise<void> {
  await withClient(url, async (c) => {
    const { rows } = await c.query<{ definition: string }>(
      `SELECT pg_get_functiondef(t.tgfoid) AS definition FROM pg_trigger AS t WHERE ${managedTriggerSql('t')}`,
    );
    if (rows.length === 0) throw new Error('no channel trigger to rewrite');
    for (const { definition } of rows) {
      const rewritten = rewrite(definition);
      if (rewritten === definition) throw new Error(`the rewrite changed nothing in:\n${definition}`);
      await c.query(rewritten);
    }
  });
}

/**
 * Diagnostic only (W3's design rows): drops every index of the notification table but its primary
 * key, to show what the secondary indexes cost each write. Listeners must not run on it.
 */
export async function dropQueueIndexes(url: string): Promise<void> {
  const table = libraryObjects().notificationTable;
  await withClient(url, async (c) => {
    const { rows } = await c.query<{ name: string }>(
      'SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass AND NOT indisprimary', [table],
    );
    if (rows.length === 0) throw new Error(`${table} has no secondary index to drop`);
    for (const { name } of rows) await c.query(`DROP INDEX ${name}`);
  });
}

/** n authors in one statement (one transaction); resolves once it has committed. */
export async function insertAuthors(url: string, n: number): Promise<void> {
  await withClient(url, (c) => c.query(`INSERT INTO authors (name) SELECT 'Author ' || i FROM generate_series(1, $1::int) AS i`, [n]));
}

export interface Verification {
  ok: boolean;
  posts: number;
  distinctAuthors: number;
  detail: string;
}

/** The side effect happened exactly once per author: n posts, n distinct authors. */
export async function verifyPosts(url: string, n: number): Promise<Verification> {
  return withClient(url, async (c) => {
    const { rows: [row] } = await c.query<{ posts: number; distinct_authors: number }>(
      'SELECT count(*)::int AS posts, count(DISTINCT author_id)::int AS distinct_authors FROM posts',
    );
    const ok = row.posts === n && row.distinct_authors === n;
    return {
      ok,
      posts: row.posts,
      distinctAuthors: row.distinct_authors,
      detail: ok ? `${n} posts, all distinct` : `expected ${n} posts for ${n} distinct authors, found ${row.posts} posts for ${row.distinct_authors} authors`,
    };
  });
}

/**
 * CPU seconds used so far by each PostgreSQL backend serving this database (other than the asking
 * connection), read from /proc: possible when the server runs on this machine (embedded, or a
 * local DATABASE_URL server); an empty map otherwise.
 */
export async function backendCpu(client: Client): Promise<Map<number, number>> {
  const { rows } = await client.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
  );
  const cpu = new Map<number, number>();
  for (const { pid } of rows) {
    const seconds = cpuSeconds(pid);
    if (seconds > 0) cpu.set(pid, seconds);
  }
  return cpu;
}

/** CPU seconds the database's backends used between two backendCpu() readings (NaN if unreadable). */
export function backendCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  if (after.size === 0) return Number.NaN;
  let total = 0;
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0);
  return total;
}

/** Server facts that decide what the figures mean. */
export async function serverInfo(url: string) {
  return withClient(url, async (c) => {
    const setting = async (name: string) => (await c.query<{ v: string }>('SELECT current_setting($1) AS v', [name])).rows[0].v;
    return {
      version: await setting('server_version'),
      synchronous_commit: await setting('synchronous_commit'),
      fsync: await setting('fsync'),
      max_connections: Number(await setting('max_connections')),
      shared_buffers: await setting('shared_buffers'),
    };
  });
}
