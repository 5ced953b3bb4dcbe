import type { Client } from 'pg';
import { managedTriggerSql } from '../../lib/catalog';
import { prepareTemplate } from '../../test/support/app';
import { createEmptyDatabase, dropDatabase, withClient } from '../../test/support/postgres';
import { cpuSeconds } from './processes';

const PREFIX = 'pgpubsub_bench_';
let counter = 0;

export interface BenchDatabase {
  name: string;
  url: string;
}

/** One database per system and run, named after our pid so a crashed run's leftovers can be found. */
export async function createBenchDatabase(serverUrl: string, label: string): Promise<BenchDatabase> {
  const tag = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  const name = `${PREFIX}${process.pid}_${++counter}_${tag}`.slice(0, 63);
  return { name, url: await createEmptyDatabase(serverUrl, name) };
}

export async function dropBenchDatabase(serverUrl: string, db: BenchDatabase): Promise<void> {
  await dropDatabase(serverUrl, db.name);
}

/** Drops bench databases of earlier runs whose process is gone (on a shared DATABASE_URL server). */
export async function dropStaleBenchDatabases(serverUrl: string): Promise<void> {
  const names = await withClient(serverUrl, async (c) =>
    (await c.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'pgpubsub\\_bench\\_%'`)).rows.map((r) => r.datname));
  for (const name of names) {
    const pid = Number(/^pgpubsub_bench_(\d+)_/.exec(name)?.[1]);
    if (pid === process.pid || isRunning(pid)) continue;
    await dropDatabase(serverUrl, name);
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export { withClient };

/** The example app's migrations: notification table, app tables, and the channel triggers. */
export async function migrateApp(url: string): Promise<void> {
  await prepareTemplate(url);
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
 * Diagnostic only: rewrites our author trigger's function without its wake-up (the line that
 * calls pg_notify or the library's wake function), to show what the wake-up costs concurrent
 * producers. The notification row is still stored.
 */
export async function removeWakeUpFromAuthorTrigger(url: string): Promise<void> {
  await withClient(url, async (c) => {
    const { rows } = await c.query<{ fn: string; body: string }>(
      `SELECT p.oid::regprocedure::text AS fn, p.prosrc AS body FROM pg_proc p
        WHERE p.proname LIKE 'pgpubsub\\_author\\_created\\_insert\\_%'`,
    );
    if (rows.length !== 1) throw new Error(`expected one author_created trigger function, found ${rows.length}`);
    const body = rows[0].body.replace(/^\s*(PERFORM\s+|\w+\s*:=\s*)[^;]*(pg_notify|pgpubsub_wake)\w*"?\(.*\);\s*$/m, '');
    if (body === rows[0].body) throw new Error('found no wake-up line (PERFORM or an assignment of pg_notify/pgpubsub_wake) in the author_created trigger function');
    await c.query(`CREATE OR REPLACE FUNCTION ${rows[0].fn} RETURNS trigger LANGUAGE plpgsql AS $bench$${body}$bench$`);
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
