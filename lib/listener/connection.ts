/**
 * The LISTEN connection: a pg.Client of its own (never a pool connection), opened as Sequelize
 * opens its connections or from `listenConnection`; LISTEN on the listener's channels; a heartbeat
 * query that proves it alive; on loss, reconnects with a jittered backoff until stopped. What the
 * listener keeps on it (holder keys, listening and drain locks) is set up through its hooks.
 */
import type { Client, Notification, QueryConfig } from 'pg';
import type { Sequelize } from 'sequelize';
import { jitteredBackoff } from '../process/backoff';
import { LIBRARY_QUERY_DEADLINE_MS, type QueryFn, oneQueryAtATime } from './query-guards';
import { ListenOptionsError } from '../errors';
import { LISTENER_APPLICATION_NAME } from './options';
import type { ClientSource, Lifetime } from './parts';
import type { ListenConnectionConfig } from './types';
import type { Logger } from '../ops/logger';
import { quoteIdent } from '../db/sql-text';

/** The parts of Sequelize's (v6) connection manager that the LISTEN connection is opened with. */
interface SequelizeConnectionManager {
  lib: typeof import('pg');
  config: SequelizeConnectionConfig & { replication?: { write: SequelizeConnectionConfig } | false };
  /** Runs the beforeConnect hooks, connects as Sequelize does (dialectOptions, SSL, type parsers), runs the afterConnect hooks. */
  _connect(config: SequelizeConnectionConfig): Promise<Client>;
}

interface SequelizeConnectionConfig {
  dialectOptions?: Record<string, unknown>;
  [setting: string]: unknown;
}

/** Where and how the LISTEN connection connects. */
export interface ListenConnectionSettings {
  readonly sequelize: Sequelize;
  readonly listenConnection: string | ListenConnectionConfig | undefined;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  readonly heartbeatMs: number;
  /** The channels to LISTEN on. */
  readonly channels: readonly string[];
}

/** What the listener keeps on the connection, told of each change (lib/listener/session.ts). */
export interface ConnectionHooks {
  /** On each new connection, once it LISTENs and before it is used: throws to refuse it. `first`: at start. */
  setUp(client: Client, first: boolean): Promise<void>;
  /** The connection is in use (after start-up or a reconnect). */
  connected(client: Client): void;
  /** The connection is gone, and the session locks with it; a reconnect follows. */
  lost(): void;
  /** A reconnect succeeded, after `attempt` tries. */
  reconnected(attempt: number): void;
  notification(message: Notification): void;
  /** The heartbeat's one query; a failure means the connection is gone. */
  heartbeat(client: Client): Promise<void>;
}

export class ListenConnection implements ClientSource {
  readonly #settings: ListenConnectionSettings;
  readonly #log: Logger;
  /** The listener stopping: a connection lost now is not replaced. */
  readonly #lifetime: Lifetime;
  /** Given at start: the hooks are the listener's session, which needs this connection first. */
  #hooks: ConnectionHooks | null = null;
  #client: Client | null = null;
  #stopping = false;
  #reconnecting: Promise<void> | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #checking = false;

  constructor(settings: ListenConnectionSettings, log: Logger, lifetime: Lifetime) {
    this.#settings = settings;
    this.#log = log;
    this.#lifetime = lifetime;
  }

  /** The connection, or null while reconnecting (or once closed). */
  get client(): Client | null {
    return this.#client;
  }

  /** Connects, LISTENs and sets up (`hooks.setUp`); then runs the heartbeat. Throws when that fails. */
  async start(hooks: ConnectionHooks): Promise<void> {
    this.#hooks = hooks;
    await this.#connect(true);
    // The heartbeat is one query on the LISTEN connection: it proves the connection alive and tells
    // whether anything is due, the backstop for a missed wake-up (e.g. rows a dying listener released).
    this.#heartbeat = setInterval(() => void this.#check(), this.#settings.heartbeatMs);
    this.#heartbeat.unref?.();
  }

  /** Stops reconnecting and the heartbeat; runs `last` on the connection if there is one, then closes it. */
  async close(last?: (client: Client) => Promise<void>): Promise<void> {
    this.#stopping = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    await this.#reconnecting?.catch(() => undefined);
    const client = this.#client;
    this.#client = null;
    if (client && last) await last(client).catch(() => undefined);
    await client?.end().catch(() => undefined);
  }

  /** Takes the connection for lost (a failed query on it, say): closes it and reconnects. */
  lose(client: Client, error: Error): void {
    if (this.#stopped() || client !== this.#client) return;
    this.#client = null;
    this.#started().lost();
    this.#log.warn('LISTEN connection lost; reconnecting', { event: 'connection-lost', err: error });
    client.end().catch(() => undefined);
    this.#reconnecting ??= this.#reconnect().finally(() => { this.#reconnecting = null; });
  }

  /**
   * Opens the LISTEN connection as Sequelize opens its own: to `replication.write` when set, through
   * the `beforeConnect`/`afterConnect` hooks (a password from a cloud IAM token), with the
   * `dialectOptions` Sequelize passes on (SSL included); or to `listenConnection` when given (e.g.
   * straight to the server, past a pooler that cannot LISTEN).
   */
  async #open(applicationName = LISTENER_APPLICATION_NAME): Promise<Client> {
    const settings = {
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      // Every query on this connection is short (locks, markers, the heartbeat): one that hangs means a dead path.
      query_timeout: LIBRARY_QUERY_DEADLINE_MS,
      application_name: applicationName,
    };
    const manager = this.#settings.sequelize.connectionManager as unknown as SequelizeConnectionManager;
    const own = this.#settings.listenConnection;
    if (own !== undefined) {
      const client = new manager.lib.Client({ ...settings, ...(typeof own === 'string' ? { connectionString: own } : own) } as import('pg').ClientConfig);
      try {
        await client.connect();
      } catch (error) {
        await client.end().catch(() => undefined);
        throw error;
      }
      return client;
    }
    const base = manager.config.replication ? manager.config.replication.write : manager.config;
    return manager._connect({ ...base, dialectOptions: { ...base.dialectOptions, ...settings } });
  }

  #stopped(): boolean {
    return this.#stopping || this.#lifetime.stopping;
  }

  #started(): ConnectionHooks {
    if (!this.#hooks) throw new Error('ListenConnection: used before start(hooks)');
    return this.#hooks;
  }

  async #connect(first = false): Promise<void> {
    const client = await this.#open();
    oneQueryAtATime(client as unknown as { query: QueryFn });
    client.on('notification', (message) => this.#started().notification(message));
    client.on('error', (error) => this.lose(client, error));
    client.on('end', () => this.lose(client, new Error('connection ended')));
    try {
      // This connection's writes are the in-flight markers (one per batch): they must be visible at
      // once, which an asynchronous commit is, but need not survive a server crash (a marker lost
      // then costs at most one uncharged death). Waiting for the WAL flush would add a disk sync to
      // every batch.
      // And only the library's statements run here, all written with qualified names; built-ins come
      // from pg_catalog whatever another role creates in a schema on the default search_path.
      await client.query('SET synchronous_commit = off; SET search_path = pg_catalog, pg_temp');
      if (first) await this.#refuseTransactionPooler(client);
      for (const name of this.#settings.channels) await client.query(`LISTEN ${quoteIdent(name)}`);
      await this.#started().setUp(client, first);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    this.#client = client;
    this.#started().connected(client);
  }

  /**
   * Throws when `client` goes through a pooler that hands its server connection to other clients
   * between statements (PgBouncer's transaction or statement pooling): LISTEN and the session locks
   * would stay on a server connection someone else then uses, and notifications would reach them or
   * no one. A lone client cannot tell (the pooler gives it the same server connection each time),
   * so a second connection opened the same way holds a transaction meanwhile: through such a
   * pooler it gets this client's server connection, or this client moves to another one; a pooler
   * in statement mode refuses the transaction outright. Anything else that goes wrong with the
   * second connection (it cannot be opened, a query fails or takes over 5 s) concludes nothing: the
   * check is skipped with a warning. Run at start only, after the connection's first SET (which
   * pins it in poolers that pin sessions on SET).
   */
  async #refuseTransactionPooler(client: Client): Promise<void> {
    // node-postgres takes a query's own query_timeout (its types know it only as a client setting).
    const bounded = (text: string): QueryConfig & { query_timeout: number } => ({ text, query_timeout: 5_000 });
    const backend = async (on: Client) => (await on.query<{ pid: number }>(bounded('SELECT pg_catalog.pg_backend_pid() AS pid'))).rows[0]!.pid;
    const skipped = (error: unknown) => this.#log.warn('could not check whether the LISTEN connection goes through a transaction pooler; not checked', { event: 'pooler-check-skipped', err: error });
    const refusal = (how: string) => new ListenOptionsError('PGPUBSUB_TRANSACTION_POOLER', `listen: the LISTEN connection goes through a transaction pooler (PgBouncer in transaction or statement mode?): ${how}, so LISTEN and the listener's session locks would be left on a connection other clients use. `
      + "Point the LISTEN connection at PostgreSQL itself: listen({ listenConnection: 'postgres://…@db-host:5432/app' }), or pgpubsub listen --listen-url <url>; the work pool may stay on the pooler");
    const before = await backend(client);
    let probe: Client;
    try {
      // Named apart, so that what counts the listener's sessions never counts this one.
      probe = await this.#open(`${LISTENER_APPLICATION_NAME}-pooler-check`);
    } catch (error) {
      skipped(error);
      return;
    }
    // A pooler that drops the connection (statement mode refusing BEGIN, say) must not crash the process.
    probe.on('error', () => undefined);
    let shared: boolean;
    try {
      try {
        await probe.query(bounded('BEGIN'));
      } catch (error) {
        if (/pooling mode/i.test((error as Error).message)) throw refusal(`a second connection was refused a transaction (${(error as Error).message})`);
        throw error;
      }
      const held = await backend(probe);
      shared = held === before || (await backend(client)) !== before;
    } catch (error) {
      if (error instanceof ListenOptionsError) throw error;
      skipped(error);
      return;
    } finally {
      await probe.query('ROLLBACK').catch(() => undefined);
      await probe.end().catch(() => undefined);
    }
    if (shared) throw refusal('its server connection changed between two statements');
  }

  async #reconnect(): Promise<void> {
    for (let attempt = 1; !this.#stopped(); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, jitteredBackoff(attempt, this.#settings.minDelayMs, this.#settings.maxDelayMs)));
      if (this.#stopped()) return;
      try {
        await this.#connect();
        this.#started().reconnected(attempt);
        return;
      } catch (error) {
        this.#log.warn('reconnect failed', { event: 'reconnect-failed', attempt, err: error });
      }
    }
  }

  async #check(): Promise<void> {
    const client = this.#client;
    if (!client || this.#stopped() || this.#checking) return;
    this.#checking = true;
    try {
      await this.#started().heartbeat(client);
    } catch (error) {
      this.lose(client, error as Error);
    } finally {
      this.#checking = false;
    }
  }
}
