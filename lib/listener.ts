import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, Notification } from 'pg';
import type { Sequelize, Transaction } from 'sequelize';
import { type AnyChannel, type RetryPolicy } from './channel';
import { jitteredBackoff } from './backoff';
import type { NotificationContext } from './context';
import type { LibraryObjects } from './db-objects';
import { errorSummary, errorText, sqlState } from './error-text';
import { CallbackTimeoutError, ListenOptionsError, MalformedPayloadError, NonRetryableError } from './errors';
import { chargeBeforeRunningAlone, clearInflight, markInflight, pruneDeadMarkers, takeHolderKey } from './inflight';
import { type ResolvedListenOptions, resolveListenOptions } from './listen-options';
import { type Logger, consoleLogger, toLogger } from './logger';
import { decodeMessage } from './message';
import { libraryProblem } from './library-check';
import { quoteIdent } from './sql-text';
import { type ClaimFilter, type ClaimedRow, type FailureRecord, claimBatch, dueCheck, deleteProcessed, lockOne, nextDueInMs, pendingSql, recordFailure } from './store';
import { drainBeat, holdListening, releaseDrainLocks, skippedProducersDone, takeDrainLocks, wakeListeners } from './wake-locks';

/** The application_name of a listener's LISTEN connection (pg_stat_activity shows it). */
export const LISTENER_APPLICATION_NAME = 'pgpubsub-listener';

/** Channel on which `recover()` asks every running listener to drain now. */
export const RECOVER_CHANNEL = 'pgpubsub_recover';

/** Thrown out of a batch to roll it back and run it again carefully, this message's failure known. */
/** A hook to run once a notification's transaction has committed. */
type AfterCommitHook = () => unknown;

/**
 * Points `transaction.afterCommit` at `register` while a message's callbacks run, so that a hook
 * runs after the outer commit: Sequelize runs a savepoint's hooks when the savepoint is released,
 * and a transaction's even when its COMMIT failed. Returns the function that puts it back.
 */
function redirectAfterCommit(transaction: Transaction, register: (hook: AfterCommitHook) => void): () => void {
  const own = Object.getOwnPropertyDescriptor(transaction, 'afterCommit');
  Object.defineProperty(transaction, 'afterCommit', { value: (hook: AfterCommitHook) => register(hook), configurable: true, writable: true });
  return () => {
    if (own) Object.defineProperty(transaction, 'afterCommit', own);
    else delete (transaction as { afterCommit?: unknown }).afterCommit;
  };
}

/** The CLS namespace of `Sequelize.useCLS()`, on the app's Sequelize class (cls-hooked's API). */
interface ClsNamespace {
  run(fn: (context: unknown) => void): void;
  set(key: string, value: unknown): void;
}

/**
 * Runs `fn` with `transaction` as the CLS transaction when the app uses `Sequelize.useCLS()`, so
 * that a model call without `{ transaction }` joins the notification's transaction (as it would
 * inside a managed `sequelize.transaction(callback)`), and commits or rolls back with it.
 */
function inClsTransaction<T>(sequelize: Sequelize, transaction: Transaction, fn: () => T): T {
  const cls = (sequelize.constructor as { _cls?: ClsNamespace })._cls;
  if (!cls) return fn();
  let result!: T;
  cls.run(() => {
    cls.set('transaction', transaction);
    result = fn();
  });
  return result;
}

type QueryFn = (...args: unknown[]) => unknown;

/**
 * Makes the client run its queries one after another: several callers share one connection (the
 * claim loops, the beat and the heartbeat on the LISTEN connection; a batch's callbacks at once on
 * its transaction), and node-postgres no longer wants a query issued while another runs. Each
 * waits for the one before (bounded by the client's query_timeout, or the callback's time limit).
 * Promise and callback calls are both queued; a submittable (a cursor) goes straight through.
 * Returns the function that puts the client's own query back.
 */
function oneQueryAtATime(client: { query: QueryFn }): () => void {
  const own = client.query;
  const query = own.bind(client) as QueryFn;
  let last: Promise<unknown> = Promise.resolve();
  client.query = (...args: unknown[]) => {
    if (typeof (args[0] as { submit?: unknown } | null)?.submit === 'function') return query(...args);
    const callback = typeof args.at(-1) === 'function' ? args.pop() as (error: unknown, result?: unknown) => void : null;
    const run = last.then(() => new Promise((resolve, reject) => {
      query(...args, (error: unknown, result: unknown) => (error ? reject(error) : resolve(result)));
    }));
    last = run.catch(() => undefined);
    if (!callback) return run;
    run.then((result) => callback(null, result), (error: unknown) => callback(error));
    return undefined;
  };
  return () => { client.query = own; };
}

/**
 * Runs `tasks`, at most `limit` at once, in order of start. After a failure it starts no more,
 * waits for those running, and throws: a failure of the connection first (it is no message's
 * fault), else the first failure.
 */
async function runAtOnce(tasks: ReadonlyArray<() => Promise<void>>, limit: number): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const lane = async () => {
    while (next < tasks.length && errors.length === 0) {
      const task = tasks[next++];
      try {
        await task();
      } catch (error) {
        errors.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, lane));
  if (errors.length) throw errors.find((error) => !(error instanceof CallbackFailed)) ?? errors[0];
}

/** A NonRetryableError, also from another copy of this package (compared by name and code). */
function isNonRetryable(error: unknown): boolean {
  return error instanceof NonRetryableError
    || ((error as { name?: unknown })?.name === 'NonRetryableError' && (error as { code?: unknown }).code === 'PGPUBSUB_NON_RETRYABLE');
}

class CallbackFailed extends Error {
  constructor(readonly id: string, readonly error: unknown) {
    super(`a callback failed for notification ${id}; the batch is run again with that failure recorded`);
  }
}

/** A batch callback failed in a fast pass (or timed out): the batch is run again, carefully. */
class GroupFailed extends Error {
  constructor(readonly channel: string, readonly split: boolean) {
    super(`a batch callback on '${channel}' failed; the batch is run again${split ? ', one message at a time' : ' with savepoints'}`);
  }
}

/** The key in a careful pass's known failures saying: run this channel's batch callbacks one message at a time. */
const splitKey = (channel: string) => `split:${channel}`;

/** A claimed message of a channel with batch callbacks. */
interface GroupItem {
  row: ClaimedRow;
  message: unknown;
  attempt: number;
}

/** What a notification that was running alone when its process died gets as its `last_error`. */
const PROCESS_DIED = 'ProcessDied: the listener process died (exit, crash, kill or out of memory) while running this notification alone, after the listener that held it in a batch went away too';

/** A library query (claim, delete, commit…) that takes longer than this has a dead connection under it. */
const LIBRARY_QUERY_DEADLINE_MS = 30_000;

/** How often a listener that lacks a channel's listening lock (another role holds it) tries again. */
const LISTENING_RETRY_MS = 1000;
/** How often a listener that holds drain locks says so to producers (they trust a lock for 1 s). */
const DRAIN_BEAT_MS = 250;
/** After settling this long without seeing every skipping producer end, claim at each look anyway. */
const SETTLE_BOUND_MS = 1000;

/**
 * While a listener waits for producers that skipped their NOTIFY to commit (after it lets go of its
 * drain locks, or starts), it looks again after this long, doubling up to SETTLE_MAX_MS.
 */
const SETTLE_FIRST_MS = 5;
const SETTLE_MAX_MS = 1000;
/** At most this often a listener that holds drain locks tries for the ones it lacks, or wakes the others to help with a backlog. */
const DRAIN_LOCK_RETRY_MS = 200;

/** How soon to look again at due rows that another listener holds locked. */
const HELD_ROWS_RECHECK_MS = 1000;

export interface ListenOptions {
  /** Channel names to process (default: every channel with a callback). */
  channels?: readonly string[];
  /** Notifications claimed per transaction. Default 100. */
  batchSize?: number;
  /**
   * Claim transactions at once in this process, each on its own pool connection (so the pool
   * needs at least `concurrency + 1` connections). Default 1: see the README for when more helps
   * (callbacks that wait on the network) and when it does not.
   */
  concurrency?: number;
  /**
   * How many of a batch's messages run their callbacks at once, in the batch's one transaction
   * (their queries take turns on its connection). Default 1. For callbacks that wait on the
   * network: 50 messages each awaiting a 20 ms call take 20 ms, not a second. If one throws, the
   * batch is rolled back and redone one message at a time, with savepoints, as always; so it
   * needs `savepoints: 'on-failure'`.
   */
  callbackConcurrency?: number;
  /** Drain everything stored before the listener started (default true). */
  recover?: boolean;
  /** Only process notifications whose context contains these keys and values. */
  contextFilter?: NotificationContext;
  /** How often the LISTEN connection is checked, in ms. Default 60000. */
  heartbeatMs?: number;
  /**
   * 'on-failure' (default): batches run without savepoints and are redone with one per message only
   * when a callback fails, which re-runs the callbacks before it in that batch. 'always': a savepoint
   * per message, slower, and no callback ever runs twice for one attempt.
   */
  savepoints?: 'on-failure' | 'always';
  /**
   * How long a callback may take, in ms, for channels that set no `timeoutMs` of their own. Default
   * 60000. When time is up the callback's signal aborts, its work is rolled back, and an attempt is
   * charged with a timeout error. The claiming transaction's statements and idle stretches are
   * bounded on the server too (statement_timeout, idle_in_transaction_session_timeout + 5 s).
   */
  timeoutMs?: number;
  /** Reconnect backoff bounds, in ms. Default 100 to 10000, with jitter. */
  reconnect?: { minDelayMs?: number; maxDelayMs?: number };
  /**
   * Where the LISTEN connection goes, when not where Sequelize's own connections go (the primary
   * under `replication`, through your `beforeConnect`/`afterConnect` hooks): a connection URL or
   * node-postgres client settings, e.g. straight to the server past a transaction pooler, which
   * cannot hold a LISTEN.
   */
  listenConnection?: string | ListenConnectionConfig;
  logger?: Logger;
  /**
   * Awaited before a notification runs alone (the retry of one a dead process held): a supervisor
   * learns what a worker that dies now was running (`pgpubsub listen` uses it).
   */
  beforeRunningAlone?: (info: RunningAlone) => Promise<void> | void;
}

/** node-postgres client settings for the LISTEN connection (the fields of pg's ClientConfig). */
export interface ListenConnectionConfig {
  connectionString?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string | (() => string | Promise<string>);
  database?: string;
  ssl?: unknown;
  [setting: string]: unknown;
}

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

/** A notification about to run alone, its attempt already charged. */
export interface RunningAlone {
  id: string;
  channel: string;
  attempt: number;
  maxAttempts: number;
}

/** What a listener needs from PgPubSub: its Sequelize, channels and callbacks. */
export interface ListenerHost {
  readonly sequelize: Sequelize;
  /** The library's objects (its schema) this app uses. */
  readonly objects: LibraryObjects;
  channel(name: string): AnyChannel;
  channels(): AnyChannel[];
  callbacks(name: string): readonly Function[];
  /** The batch callbacks (onBatch) of a channel. */
  batchCallbacks(name: string): readonly Function[];
}

export interface ListenerStats {
  processed: number;
  /** Notifications run alone because a process died while it held them. */
  ranAlone: number;
  failed: number;
  broadcasts: number;
  batches: number;
  reconnects: number;
}

/** The retry delay of a failed notification's `attempt` under its channel's policy. */
function backoffDelay(attempt: number, retry: Required<RetryPolicy>, random = Math.random): number {
  return jitteredBackoff(attempt, retry.backoffMs, retry.maxBackoffMs, random);
}

/** True for an error of a connection that failed or ended (as opposed to an error PostgreSQL reported on a live one). */
function isConnectionFailure(error: unknown): boolean {
  const state = sqlState(error);
  return state === undefined || /^(08|57P0)/.test(state);
}

/** Rejects with `onExpire()`'s error when `promise` takes longer than `ms`. */
async function bounded<T>(promise: Promise<T>, ms: number, onExpire: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(onExpire()), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}


/**
 * Whether `value` contains `pattern` as PostgreSQL's jsonb `@>` has it, so that a broadcast is
 * filtered as a stored notification is: an object contains another when it has each of its keys
 * with a value that contains the other's; an array, when each element of the other is contained
 * in one of its elements; scalars, when equal.
 */
export function jsonContains(value: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) {
    return Array.isArray(value) && pattern.every((wanted) => value.some((item) => jsonContains(item, wanted)));
  }
  if (typeof pattern === 'object' && pattern !== null) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
    return Object.entries(pattern).every(([key, wanted]) => Object.prototype.hasOwnProperty.call(value, key)
      && jsonContains((value as Record<string, unknown>)[key], wanted));
  }
  return value === pattern;
}

/** One claim transaction's result. */
interface BatchOutcome {
  claimed: number;
  processed: string[];
  failures: Failure[];
  /** Claimed rows a dead process held: run alone once this batch has committed. */
  suspects: ClaimedRow[];
}

/** A message whose callbacks are about to run (`message:start`). */
export interface MessageStart {
  channel: string;
  /** The stored notification's id; null for a broadcast. */
  id: string | null;
  /** 1 on the first attempt, 2 on the first retry, … */
  attempt: number;
}

/** A message whose callbacks have run (`message:done`): `ok` false when they threw or timed out. */
export interface MessageDone extends MessageStart {
  durationMs: number;
  ok: boolean;
  /** What they threw, when not ok. */
  error?: unknown;
}

/** A drain that ended (`drain:end`): what it claimed and processed, and how long it took. */
export interface DrainEnd {
  claimed: number;
  processed: number;
  failed: number;
  durationMs: number;
}

/**
 * The listener's events and their arguments, for `listener.on(name, handler)`.
 * `message:done` tells that a message's callbacks ran; `processed` that their work committed (a
 * batch redone after another message's failure runs a message's callbacks twice, and commits once).
 */
export interface ListenerEvents {
  /** The ids whose processing committed (a batch, or one run alone). */
  processed: [ids: string[]];
  /** A callback failed; the notification is kept for a retry or, `failedForGood`, failed. */
  failed: [failure: Failure];
  /** A notification a dead process held was run alone (whatever the outcome). */
  ranAlone: [id: string];
  /** A broadcast's callbacks ran and committed. */
  broadcast: [channel: string];
  'message:start': [message: MessageStart];
  'message:done': [message: MessageDone];
  /** A drain began: a wake-up, a retry coming due, or the start-up recovery. */
  'drain:start': [];
  'drain:end': [drain: DrainEnd];
  /** The LISTEN connection is back, after `attempt` tries. */
  reconnected: [info: { attempt: number }];
  /** A drain or a broadcast failed (already logged); emitted only when something listens for it. */
  error: [error: unknown];
}

export interface Failure {
  id: string;
  channel: string;
  error: unknown;
  /** Out of attempts (or never able to succeed): kept with failed_at set, never claimed again. */
  failedForGood: boolean;
}

/**
 * A listening process's engine. It holds its own pg.Client for LISTEN (never a pool connection),
 * wakes on NOTIFY, and drains durable notifications in batches through pool transactions: claim
 * with SKIP LOCKED, run each message's callbacks, delete the successes, keep the failures with
 * their error and a backoff, commit once.
 *
 * Faults it contains (the README's "Failure model"): a callback that throws or times out is
 * charged an attempt; a lost connection (told by the connection, never by what a callback threw)
 * charges nothing; a message whose process died is run alone next time, its attempt charged first;
 * a payload that can never succeed fails at once.
 *
 * Events: see ListenerEvents.
 */
export class Listener extends EventEmitter<ListenerEvents> {
  readonly stats: ListenerStats = { processed: 0, ranAlone: 0, failed: 0, broadcasts: 0, batches: 0, reconnects: 0 };
  readonly #host: ListenerHost;
  readonly #objects: LibraryObjects;
  readonly #sequelize: Sequelize;
  readonly #options: ResolvedListenOptions;
  readonly #beforeRunningAlone: ListenOptions['beforeRunningAlone'];
  readonly #log: Logger;
  readonly #channels: AnyChannel[];
  readonly #filter: ClaimFilter;
  /** The longest time limit of this listener's durable channels: what the claim sets on the server. */
  readonly #claimTimeoutMs: number;
  #client: Client | null = null;
  /** This listener's key in pgpubsub_inflight, an advisory lock held on the LISTEN connection. */
  /** The holder keys of this listener's claim loops (one per `concurrency`), held on its LISTEN connection. */
  #holders: number[] = [];
  #stopping = false;
  #pending = false;
  #draining: Promise<void> | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #listeningRetry: NodeJS.Timeout | null = null;
  #beat: NodeJS.Timeout | null = null;
  #reconnecting: Promise<void> | null = null;
  #checking = false;
  /** Channels whose listening lock another session holds exclusively: tried again every LISTENING_RETRY_MS. */
  #notListening: string[] = [];
  /** Channels whose drain lock this listener holds on its LISTEN connection (producers skip their NOTIFYs). */
  #drainLocks: string[] = [];
  #drainLocksTriedAt = 0;
  /** Batch transactions whose messages run at once: their afterCommit is redirected once, for the batch. */
  readonly #sharedAfterCommit = new WeakSet<Transaction>();
  /** Claim loops with a batch in hand (see #alone). */
  #inBatch = 0;
  /** Set while notifications run alone: no claim loop claims meanwhile. */
  #aloneTurn: Promise<void> | null = null;
  /** Rows claimed by this listener's batches, for drain:end. */
  #claimedTotal = 0;
  /** Set when producers may have skipped a NOTIFY this listener must make up for (see #drain). */
  #settle = true;

  constructor(host: ListenerHost, options: ListenOptions = {}) {
    super();
    this.#host = host;
    this.#objects = host.objects;
    this.#sequelize = host.sequelize;
    this.#log = options.logger ? toLogger(options.logger, 'listen({ logger })') : consoleLogger();
    const poolMax = (host.sequelize as unknown as { config?: { pool?: { max?: number } } }).config?.pool?.max ?? 5;
    this.#options = resolveListenOptions(options, poolMax);
    this.#beforeRunningAlone = options.beforeRunningAlone;
    const names = options.channels ?? host.channels().filter((c) => host.callbacks(c.name).length + host.batchCallbacks(c.name).length > 0).map((c) => c.name);
    if (names.length === 0) {
      throw new ListenOptionsError('PGPUBSUB_NO_CALLBACKS', 'listen: no channel has a callback. Register one first, e.g. sequelize.pgpubsub.on(Author, \'author_created\', callback)');
    }
    this.#channels = names.map((name) => {
      const channel = host.channel(name);
      if (host.callbacks(name).length + host.batchCallbacks(name).length === 0) {
        // Claiming a durable notification with nothing to run would delete it unprocessed.
        throw new ListenOptionsError('PGPUBSUB_NO_CALLBACKS', `listen: channel '${name}' has no callback. Register one with sequelize.pgpubsub.on(…) before listening, or leave it out of channels`);
      }
      return channel;
    });
    this.#filter = { channels: this.#channels.filter((c) => c.durable).map((c) => c.name), context: options.contextFilter };
    this.#claimTimeoutMs = Math.max(...this.#channels.map((c) => this.#timeoutOf(c)));
  }

  #timeoutOf(channel: AnyChannel): number {
    return channel.timeoutMs ?? this.#options.timeoutMs;
  }

  /**
   * Checks that the library is installed, connects, LISTENs, reports stored rows no listener here
   * handles, and (with recover) drains what is stored. Resolves once listening.
   */
  async start(): Promise<this> {
    await this.#connect(true);
    // The heartbeat is one query on the LISTEN connection: it proves the connection alive and tells
    // whether anything is due, the backstop for a missed wake-up (e.g. rows a dying listener released).
    this.#heartbeat = setInterval(() => void this.#checkConnection(), this.#options.heartbeatMs);
    this.#heartbeat.unref?.();
    this.#log.info('listening', { event: 'listening', channels: this.#channels.map((c) => c.name) });
    // The first drain starts now, so idle() covers it; handlers attached once listen() resolves still
    // see all of its events, which all follow database round trips.
    if (this.#options.recover) {
      const before = this.stats.processed;
      this.wake();
      void this.idle().then(() => this.#log.info('start-up recovery finished', { event: 'recovered', processed: this.stats.processed - before }));
    }
    return this;
  }

  /** Stops claiming, lets the batch in hand finish, closes the LISTEN connection. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const timer of [this.#retryTimer, this.#listeningRetry, this.#beat]) if (timer) clearTimeout(timer);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    await this.#draining;
    // Producers skipped their NOTIFYs for us: wake the other listeners, who take over what is left.
    if (this.#drainLocks.length) await this.#releaseDrainLocks(true);
    await this.#reconnecting?.catch(() => undefined);
    const client = this.#client;
    this.#client = null;
    if (client && this.#holders.length) await clearInflight(this.#objects, client, this.#holders).catch(() => undefined);
    await client?.end().catch(() => undefined);
    this.#log.info('stopped', { event: 'stopped', ...this.stats });
  }

  /** Asks for a drain; several requests while one runs fold into one more pass. */
  wake(): void {
    if (this.#stopping || this.#filter.channels.length === 0) return;
    this.#pending = true;
    if (!this.#draining) {
      this.#draining = this.#drain().finally(() => {
        this.#draining = null;
        // A wake-up that came in after the last claim (e.g. a NOTIFY committed by our own callback) starts another pass.
        if (this.#pending) this.wake();
      });
    }
  }

  /** Resolves when no drain is running (for tests and graceful shutdown). */
  async idle(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  /** Refuses a database whose library objects are missing, older or newer than this code's (LIBRARY_VERSION). */
  async #checkInstalled(client: Client): Promise<void> {
    const problem = await libraryProblem(client, this.#objects.schema, 'listen');
    if (problem) throw problem;
  }

  /** Warns about stored rows on channels this listener does not process: they wait for a listener that does. */
  async #reportStrays(client: Client): Promise<void> {
    const { rows } = await client.query<{ channel: string; n: number }>(
      `SELECT channel, pg_catalog.count(*)::int AS n FROM ${this.#objects.notificationTable}
        WHERE ${pendingSql()} AND NOT (channel = ANY ($1::text[])) GROUP BY channel ORDER BY channel`,
      [this.#filter.channels],
    );
    for (const { channel, n } of rows) {
      const known = this.#host.channels().find((c) => c.name === channel);
      const why = !known ? 'no channel of that name is defined in this app (renamed or removed?)'
        : !known.durable ? 'it is a broadcast channel now, so nothing claims stored rows'
          : this.#host.callbacks(channel).length + this.#host.batchCallbacks(channel).length === 0 ? 'it has no callback here' : 'this listener was started without it (channels option)';
      this.#log.warn(`${n} stored notification(s) on channel '${channel}' wait for a listener: ${why}`, { event: 'unhandled-stored', channel, count: n });
    }
  }

  /**
   * Opens the LISTEN connection as Sequelize opens its own: to `replication.write` when set, through
   * the `beforeConnect`/`afterConnect` hooks (a password from a cloud IAM token), with the
   * `dialectOptions` Sequelize passes on (SSL included); or to `listenConnection` when given (e.g.
   * straight to the server, past a pooler that cannot LISTEN).
   */
  async #openClient(): Promise<Client> {
    const settings = {
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      // Every query on this connection is short (locks, markers, the heartbeat): one that hangs means a dead path.
      query_timeout: LIBRARY_QUERY_DEADLINE_MS,
      application_name: LISTENER_APPLICATION_NAME,
    };
    const manager = this.#sequelize.connectionManager as unknown as SequelizeConnectionManager;
    const own = this.#options.listenConnection;
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

  /** `first`: at start, also check the library is installed and report rows nobody here handles. */
  async #connect(first = false): Promise<void> {
    const client = await this.#openClient();
    oneQueryAtATime(client as unknown as { query: QueryFn });
    client.on('notification', (message) => this.#onNotification(message));
    client.on('error', (error) => this.#onConnectionLost(client, error));
    client.on('end', () => this.#onConnectionLost(client, new Error('connection ended')));
    try {
      // This connection's writes are the in-flight markers (one per batch): they must be visible at
      // once, which an asynchronous commit is, but need not survive a server crash (a marker lost
      // then costs at most one uncharged death). Waiting for the WAL flush would add a disk sync to
      // every batch.
      // And only the library's statements run here, all written with qualified names; built-ins come
      // from pg_catalog whatever another role creates in a schema on the default search_path.
      await client.query('SET synchronous_commit = off; SET search_path = pg_catalog, pg_temp');
      if (first) {
        await this.#checkInstalled(client);
        await this.#reportStrays(client);
      }
      for (const name of [...this.#channels.map((c) => c.name), RECOVER_CHANNEL]) {
        await client.query(`LISTEN ${quoteIdent(name)}`);
      }
      const holders: number[] = [];
      for (let slot = 0; slot < this.#options.concurrency; slot++) holders.push(await takeHolderKey(client, this.#holders[slot] ?? null, holders));
      this.#holders = holders;
      await pruneDeadMarkers(this.#objects, client, holders).catch((error: unknown) => this.#log.debug('could not prune markers', { event: 'prune-failed', error: errorSummary(error) }));
      // Only now may producers count on this listener: it hears every NOTIFY from here on.
      this.#notListening = this.#filter.channels.length ? await holdListening(client, this.#filter.channels) : [];
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    this.#client = client;
    this.#drainLocks = [];
    // Producers that found nobody listening skipped their NOTIFY: the next drain waits for them.
    this.#settle = true;
    if (this.#notListening.length) this.#retryListening();
  }

  /**
   * Another session holds a listening lock exclusively (a producer's probe for an instant, or a
   * role that took it): producers NOTIFY meanwhile, so nothing waits. Try again until held, then
   * settle, for producers that skipped while the lock was free.
   */
  #retryListening(): void {
    if (this.#listeningRetry || this.#stopping) return;
    let tries = 0;
    const retry = async () => {
      this.#listeningRetry = null;
      const client = this.#client;
      if (!client || this.#stopping) return;
      try {
        this.#notListening = await holdListening(client, this.#notListening);
      } catch (error) {
        this.#log.debug('could not take listening locks', { event: 'listening-lock-failed', error: errorSummary(error) });
      }
      if (this.#notListening.length) {
        // A producer's probe holds it for an instant only: say so once it is plainly held.
        if (++tries === 1) {
          this.#log.warn('another session holds the listening lock of some channels; producers wake this listener meanwhile, trying again every second', { event: 'listening-lock-held', channels: this.#notListening });
        }
        this.#listeningRetry = setTimeout(() => void retry(), LISTENING_RETRY_MS);
        this.#listeningRetry.unref?.();
      } else {
        this.#settle = true;
        this.wake();
      }
    };
    this.#listeningRetry = setTimeout(() => void retry(), 10);
    this.#listeningRetry.unref?.();
  }

  #onConnectionLost(client: Client, error: Error): void {
    if (this.#stopping || client !== this.#client) return;
    this.#client = null;
    this.#drainLocks = []; // session locks end with the connection
    this.#stopBeat();
    this.#log.warn('LISTEN connection lost; reconnecting', { event: 'connection-lost', error: errorSummary(error) });
    client.end().catch(() => undefined);
    this.#reconnecting ??= this.#reconnect().finally(() => { this.#reconnecting = null; });
  }

  async #reconnect(): Promise<void> {
    for (let attempt = 1; !this.#stopping; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, jitteredBackoff(attempt, this.#options.minDelayMs, this.#options.maxDelayMs)));
      if (this.#stopping) return;
      try {
        await this.#connect();
        this.stats.reconnects++;
        this.#log.info('reconnected; sweeping for notifications sent meanwhile', { event: 'reconnected', attempt });
        this.#tell('reconnected', { attempt });
        this.wake();
        return;
      } catch (error) {
        this.#log.warn('reconnect failed', { event: 'reconnect-failed', attempt, error: errorSummary(error) });
      }
    }
  }

  async #checkConnection(): Promise<void> {
    const client = this.#client;
    if (!client || this.#stopping || this.#checking) return;
    this.#checking = true;
    try {
      const { text, values } = dueCheck(this.#objects, this.#filter);
      const result = await bounded(client.query<{ due: boolean }>(text, values), Math.max(1000, this.#options.heartbeatMs / 2), () => new Error('heartbeat timed out'));
      if (result.rows[0]?.due) this.wake();
    } catch (error) {
      this.#onConnectionLost(client, error as Error);
    } finally {
      this.#checking = false;
    }
  }

  #onNotification(message: Notification): void {
    if (message.channel === RECOVER_CHANNEL) {
      this.#log.info('recovery requested', { event: 'recover-requested' });
      this.wake();
      return;
    }
    const channel = this.#channels.find((c) => c.name === message.channel);
    if (!channel) return;
    if (channel.durable) this.wake();
    else void this.#broadcast(channel, message.payload ?? '');
  }

  async #broadcast(channel: AnyChannel, text: string): Promise<void> {
    try {
      const message = decodeMessage(channel, text, null);
      if (this.#options.contextFilter && !jsonContains(message.context, this.#options.contextFilter)) return;
      const transaction = await this.#sequelize.transaction();
      const afterCommit: AfterCommitHook[] = [];
      try {
        await this.#run(channel, message, transaction, 1, null, afterCommit);
        await transaction.commit();
      } catch (error) {
        await this.#rollback(transaction);
        throw error;
      }
      await this.#afterCommit(afterCommit, channel.name);
      this.stats.broadcasts++;
      this.#tell('broadcast', channel.name);
    } catch (error) {
      this.#log.error(`broadcast callback on '${channel.name}' failed (broadcasts are not retried)`, { event: 'broadcast-failed', channel: channel.name, error: errorText(error) });
      if (this.listenerCount('error') > 0) this.emit('error', error);
    }
  }

  /**
   * Runs a message's callbacks, in registration order, within the channel's time limit. When time
   * is up the signal aborts and this rejects with CallbackTimeoutError; the caller rolls the
   * transaction back, which ends the callback's use of it.
   */
  async #run(
    channel: AnyChannel,
    message: unknown,
    transaction: Transaction,
    attempt: number,
    id: string | null,
    afterCommit: AfterCommitHook[],
  ): Promise<void> {
    await this.#runCallbacks(channel, this.#host.callbacks(channel.name), transaction, afterCommit, [{ channel: channel.name, id, attempt }],
      (callback, base) => callback(message, { ...base, attempt }));
  }

  /**
   * Runs a batch callback over the messages of one channel from one claim (`onBatch`), within the
   * channel's time limit, as #run does for one message.
   */
  async #runBatchCallbacks(channel: AnyChannel, items: readonly GroupItem[], transaction: Transaction, afterCommit: AfterCommitHook[]): Promise<void> {
    const messages = items.map((item) => item.message);
    const attempts = items.map((item) => item.attempt);
    await this.#runCallbacks(channel, this.#host.batchCallbacks(channel.name), transaction, afterCommit,
      items.map((item, i) => ({ channel: channel.name, id: item.row.id, attempt: attempts[i] })),
      (callback, base) => callback(messages, { ...base, attempts }));
  }

  /**
   * Runs `callbacks` in registration order (each through `call`), within the channel's time limit.
   * When time is up the signal aborts and this rejects with CallbackTimeoutError; the caller rolls
   * the transaction back, which ends the callbacks' use of it. `starts`: the messages it runs, for
   * the message:start and message:done events.
   */
  async #runCallbacks(
    channel: AnyChannel,
    callbacks: readonly Function[],
    transaction: Transaction,
    afterCommit: AfterCommitHook[],
    starts: readonly MessageStart[],
    call: (callback: Function, base: { transaction: Transaction; signal: AbortSignal; afterCommit: (hook: AfterCommitHook) => void }) => unknown,
  ): Promise<void> {
    const id = starts.length === 1 ? starts[0].id : null;
    const timeoutMs = this.#timeoutOf(channel);
    const controller = new AbortController();
    // The message's after-commit hooks wait here, and join the transaction's only if it succeeds.
    const pending: AfterCommitHook[] = [];
    const register = (hook: AfterCommitHook) => {
      if (typeof hook !== 'function') throw new TypeError(`afterCommit(hook): the hook must be a function, got ${typeof hook}`);
      if (!controller.signal.aborted) pending.push(hook);
    };
    // With callbacks at once on one transaction, the batch redirects it once (#claimAndRun).
    const restore = this.#sharedAfterCommit.has(transaction) ? () => undefined : redirectAfterCommit(transaction, register);
    const startedAt = performance.now();
    if (this.listenerCount('message:start') > 0) for (const start of starts) this.#tell('message:start', start);
    const base = { transaction, signal: controller.signal, afterCommit: register };
    const work = (async () => {
      for (const callback of callbacks) {
        // Timed out during an earlier callback of this message: the rest must not run.
        if (controller.signal.aborted) return;
        await inClsTransaction(this.#sequelize, transaction, () => call(callback, base));
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new CallbackTimeoutError(channel.name, id, timeoutMs);
        controller.abort(error);
        reject(error);
      }, timeoutMs);
    });
    // A callback still running after its time is up may reject later: nobody waits for it any more.
    work.catch(() => undefined);
    const done = (ok: boolean, error?: unknown) => {
      if (this.listenerCount('message:done') === 0) return;
      const durationMs = Math.round((performance.now() - startedAt) * 1000) / 1000;
      for (const start of starts) this.#tell('message:done', ok ? { ...start, durationMs, ok } : { ...start, durationMs, ok, error });
    };
    try {
      await Promise.race([work, expired]);
      afterCommit.push(...pending);
      done(true);
    } catch (error) {
      done(false, error);
      throw error;
    } finally {
      clearTimeout(timer);
      restore();
    }
  }

  /** Emits an event; a handler that throws is logged, and never taken for the message's own failure. */
  #tell<K extends keyof ListenerEvents & string>(event: K, ...args: ListenerEvents[K]): void {
    try {
      (this.emit as (name: string, ...rest: unknown[]) => boolean)(event, ...args);
    } catch (error) {
      this.#log.error(`a '${event}' event handler threw`, { event: 'event-handler-failed', name: event, error: errorText(error) });
    }
  }

  /** Runs a committed transaction's after-commit hooks in order; one that throws is logged, and the others still run. */
  async #afterCommit(hooks: readonly AfterCommitHook[], channel: string | null): Promise<void> {
    for (const hook of hooks) {
      try {
        await hook();
      } catch (error) {
        this.#log.error('an after-commit hook failed (the notification stays processed)', { event: 'after-commit-failed', channel, error: errorText(error) });
      }
    }
  }

  /**
   * Rolls back, quietly (Sequelize would print to stdout), killing the connection when that fails;
   * then marks the transaction finished, so that a callback still holding it cannot run a query on a
   * connection now back in the pool.
   */
  async #rollback(transaction: Transaction): Promise<void> {
    const t = transaction as Transaction & { finished?: string; connection?: PgConnection; cleanup(): void; forceCleanup(): Promise<void> };
    if (t.finished) return;
    try {
      if (!t.connection) return;
      await bounded(this.#sequelize.getQueryInterface().rollbackTransaction(transaction, {}), 5000, () => new Error('ROLLBACK did not answer within 5 s'));
      t.cleanup();
    } catch (error) {
      this.#log.warn('rolling back a batch failed; closing its connection', { event: 'rollback-failed', error: errorSummary(error) });
      destroySocket(t.connection);
      await t.forceCleanup().catch(() => undefined);
    } finally {
      t.finished = 'rollback';
      for (const savepoint of (t as unknown as { savepoints?: Array<{ finished?: string }> }).savepoints ?? []) savepoint.finished ??= 'rollback';
    }
  }

  /** A library query in a batch transaction, bounded: a hang means a dead network path, so the connection is destroyed. */
  async #library<T>(transaction: Transaction, what: string, promise: Promise<T>): Promise<T> {
    return bounded(promise, LIBRARY_QUERY_DEADLINE_MS, () => {
      destroySocket((transaction as { connection?: PgConnection }).connection);
      return new Error(`${what} did not answer within ${LIBRARY_QUERY_DEADLINE_MS} ms; its connection was closed`);
    });
  }

  /** After a callback threw: is the transaction's connection still there? Asked of the connection itself. */
  async #connectionAlive(transaction: Transaction): Promise<boolean> {
    // A callback that committed or rolled back the transaction itself: its own doing, not a lost connection.
    if ((transaction as { finished?: string }).finished) return true;
    try {
      await bounded(this.#sequelize.query('SELECT 1', { transaction }), 5000, () => new Error('probe timed out'));
      return true;
    } catch (error) {
      // "current transaction is aborted" (the callback's query failed) comes from a live server.
      return !isConnectionFailure(error);
    }
  }

  /**
   * Claims batches until there is nothing left. While claims keep finding rows (two in a row, or a
   * full one) the listener holds its channels' drain locks, so producers skip their NOTIFYs, and
   * it keeps claiming without them. Once a claim comes back empty it lets go and settles: it waits
   * until every producer that skipped a NOTIFY has committed, then claims once more. The same
   * settling follows (re)connecting, for producers that found nobody listening. Settling never
   * blocks processing: past SETTLE_BOUND_MS (a producer transaction left open, or another role
   * holding the lock) it claims at every look.
   */
  async #drain(): Promise<void> {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const { batchSize } = this.#options;
    const started = { at: Date.now(), processed: this.stats.processed, failed: this.stats.failed, claimed: this.#claimedTotal };
    this.#tell('drain:start');
    try {
      let claimed = 0;
      let full = false;
      let streak = 0;
      let settleDelay = SETTLE_FIRST_MS;
      let settlingSince = 0;
      while (!this.#stopping) {
        if (!this.#pending && !full && !(claimed > 0 && this.#drainLocks.length)) {
          if (this.#drainLocks.length) await this.#releaseDrainLocks(false);
          if (!this.#settle) break;
          if (!(await this.#skippedProducersDone())) {
            settlingSince ||= Date.now();
            await new Promise((resolve) => setTimeout(resolve, settleDelay));
            settleDelay = Math.min(settleDelay * 2, SETTLE_MAX_MS);
            if (Date.now() - settlingSince >= SETTLE_BOUND_MS) {
              claimed = await this.#batch();
              full = claimed === batchSize;
              if (claimed > 0) this.#log.debug('claimed while producers that skipped their NOTIFY are still open', { event: 'claimed-after-skip', claimed });
            }
            continue;
          }
          this.#settle = false; // one more claim sees their rows
        }
        this.#pending = false;
        const round = await this.#round();
        ({ claimed, full } = round);
        streak = await this.#afterClaim(streak, round.total, full);
      }
      if (!this.#stopping) await this.#scheduleRetry();
    } catch (error) {
      // A lost pool connection or a database restart: keep the rows (the transaction rolled back) and try again.
      this.#log.error('drain failed; retrying shortly', { event: 'drain-failed', error: errorText(error) });
      if (this.listenerCount('error') > 0) this.emit('error', error);
      if (!this.#stopping) {
        this.#retryTimer = setTimeout(() => this.wake(), this.#options.minDelayMs * 10);
      }
    } finally {
      this.#tell('drain:end', {
        claimed: this.#claimedTotal - started.claimed,
        processed: this.stats.processed - started.processed,
        failed: this.stats.failed - started.failed,
        durationMs: Date.now() - started.at,
      });
    }
  }

  /**
   * After a claim that found `claimed` rows: the drain locks once two claims in a row found rows or
   * one came back full (a backlog). Returns the new count of claims in a row that found rows.
   */
  async #afterClaim(streak: number, claimed: number, full: boolean): Promise<number> {
    const next = claimed > 0 ? streak + 1 : 0;
    if (next >= 2 || full) await this.#takeDrainLocks(full);
    return next;
  }

  /**
   * One claim with `concurrency` 1. With more, that many claim loops at once, each claiming again
   * while its claims come back full or a wake-up came in meanwhile (taking the drain locks on a
   * backlog, as the drain does), until all of them find the queue drained. Resolves what the last
   * claims found (`claimed`, `full`), as one claim's result, and the rows claimed in all (`total`).
   */
  async #round(): Promise<{ claimed: number; full: boolean; total: number }> {
    const { batchSize, concurrency } = this.#options;
    if (concurrency === 1) {
      const claimed = await this.#batch(0);
      return { claimed, full: claimed === batchSize, total: claimed };
    }
    let total = 0;
    const loop = async (slot: number): Promise<{ claimed: number; full: boolean }> => {
      for (let streak = 0; ;) {
        const claimed = await this.#batch(slot);
        total += claimed;
        const full = claimed === batchSize;
        if (this.#stopping) return { claimed, full };
        streak = await this.#afterClaim(streak, claimed, full);
        if (full) continue;
        if (this.#pending) {
          this.#pending = false;
          continue;
        }
        return { claimed, full };
      }
    };
    // Every loop ends before the drain goes on (or fails): none is left claiming behind it.
    const settled = await Promise.allSettled(Array.from({ length: concurrency }, (_, slot) => loop(slot)));
    const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) throw failed.reason;
    const last = settled.map((result) => (result as PromiseFulfilledResult<{ claimed: number; full: boolean }>).value);
    return { claimed: last.reduce((sum, result) => sum + result.claimed, 0), full: last.some((result) => result.full), total };
  }

  /**
   * One claim transaction; returns how many notifications it claimed. By default the batch runs
   * without savepoints (two round trips less per message); if a callback throws, the transaction
   * rolls back and the batch is claimed again in careful mode, a savepoint per message, where the
   * failed message is recorded for retry without running again. The messages before it in the
   * batch do run again: their database writes were rolled back, so exactly-once holds for those;
   * their other effects were at-least-once anyway. `savepoints: 'always'` avoids such re-runs.
   * A callback that times out abandons the whole transaction (its callback may still be using it),
   * in either mode, and the batch is claimed again with that failure known too.
   */
  async #batch(slot = 0): Promise<number> {
    let known: Map<string, unknown> | null = this.#options.savepoints === 'always' ? new Map() : null;
    let outcome!: BatchOutcome;
    // Nothing is claimed while a notification runs alone (see #alone).
    while (this.#aloneTurn) await this.#aloneTurn;
    this.#inBatch++;
    try {
      for (;;) {
        try {
          outcome = await this.#claimAndRun(known, slot);
          break;
        } catch (error) {
          if (error instanceof GroupFailed) {
            // Run again carefully: the group in a savepoint (split into single messages if it throws),
            // or, after a timeout, split from the start.
            known ??= new Map();
            if (error.split) known.set(splitKey(error.channel), true);
            continue;
          }
          if (!(error instanceof CallbackFailed)) throw error;
          known ??= new Map();
          known.set(error.id, error.error);
        }
      }
    } finally {
      this.#inBatch--;
    }
    const { claimed, processed, failures, suspects } = outcome;
    this.#claimedTotal += claimed;
    this.stats.batches++;
    this.stats.processed += processed.length;
    if (claimed > 0) this.#log.info('batch', { event: 'batch', claimed, processed: processed.length, failed: failures.length, suspects: suspects.length });
    if (processed.length) this.#tell('processed', processed);
    this.#reportFailures(failures);
    if (suspects.length) {
      await this.#alone(async () => {
        for (const row of suspects) {
          if (this.#stopping) break;
          await this.#runAlone(row, slot);
        }
      });
    }
    // Markers of dead listeners whose rows are all done now go (idle heartbeats stay one query).
    if (suspects.length && this.#client && this.#holders.length) {
      await pruneDeadMarkers(this.#objects, this.#client, this.#holders).catch((error: unknown) => this.#log.debug('could not prune markers', { event: 'prune-failed', error: errorSummary(error) }));
    }
    return claimed;
  }

  /**
   * Runs `work` (notifications a dead process held, each run alone) while no other claim loop of
   * this listener has a batch in hand: a notification that kills its process then takes nothing
   * else with it. The other loops wait to claim until it is done.
   */
  async #alone(work: () => Promise<void>): Promise<void> {
    while (this.#aloneTurn) await this.#aloneTurn;
    let done!: () => void;
    this.#aloneTurn = new Promise<void>((resolve) => { done = resolve; });
    try {
      while (this.#inBatch > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      await work();
    } finally {
      this.#aloneTurn = null;
      done();
    }
  }

  #reportFailures(failures: readonly Failure[]): void {
    this.stats.failed += failures.length;
    for (const failure of failures) {
      const outcome = failure.failedForGood ? 'failed for good (failed_at set; it will not be claimed again)' : 'kept for retry';
      const log = failure.failedForGood ? this.#log.error : this.#log.warn;
      log.call(this.#log, `callback on '${failure.channel}' failed for notification ${failure.id}; ${outcome}`, { id: failure.id, channel: failure.channel, error: errorSummary(failure.error) });
      this.#tell('failed', failure);
    }
  }

  #failureRecord(row: ClaimedRow, channel: AnyChannel, error: unknown, precharged = false): FailureRecord {
    return {
      id: row.id,
      error: errorText(error),
      delayMs: backoffDelay(precharged ? row.attempts : row.attempts + 1, channel.retry),
      maxAttempts: channel.retry.maxAttempts,
      // A payload that is not a message of its channel fails the same way every time; a callback
      // can say the same of its own failure.
      permanent: error instanceof MalformedPayloadError || isNonRetryable(error),
      precharged,
    };
  }

  /**
   * `known` null: the fast pass, no savepoints. Otherwise the careful pass: a savepoint per message,
   * and messages whose failure is already known are recorded without running again.
   */
  async #claimAndRun(known: Map<string, unknown> | null, slot: number): Promise<BatchOutcome> {
    const holder = this.#holders[slot] as number | undefined;
    const processed: string[] = [];
    const failures: Failure[] = [];
    const suspects: ClaimedRow[] = [];
    const afterCommit: AfterCommitHook[] = [];
    const transaction = await this.#sequelize.transaction();
    let rows: ClaimedRow[];
    try {
      rows = await this.#library(transaction, 'claim', claimBatch(this.#objects, this.#sequelize, transaction, this.#filter, this.#options.batchSize, {
        holder: holder ?? 0, timeoutMs: this.#claimTimeoutMs,
      }));
      // Committed before any callback runs: if this process dies now, the next claim knows these ids.
      if (rows.length && holder !== undefined) {
        const ids = rows.map((row) => row.id);
        await this.#library(transaction, 'in-flight marker', markInflight(this.#objects, this.#client ?? this.#sequelize, holder, ids));
      }
      const fail = async (row: ClaimedRow, channel: AnyChannel, error: unknown) => {
        const { failedForGood } = await this.#library(transaction, 'failure record', recordFailure(this.#objects, this.#sequelize, transaction, this.#failureRecord(row, channel, error)));
        failures.push({ id: row.id, channel: row.channel, error, failedForGood });
      };
      /**
       * Runs one unit (a message, or a batch callback's messages) in a savepoint when careful, on
       * the transaction when not. Resolves the error of a careful unit that failed (rolled back to
       * its savepoint), or null; throws `failed(error)` to have the batch run again, carefully.
       */
      const runUnit = async (work: (t: Transaction) => Promise<void>, failed: (error: unknown) => Error): Promise<{ error: unknown } | null> => {
        const savepoint = known ? await this.#sequelize.transaction({ transaction }) : null;
        try {
          await work(savepoint ?? transaction);
          if (savepoint) await savepoint.commit();
          return null;
        } catch (error) {
          // The callback may still be using the transaction: abandon all of it.
          if (error instanceof CallbackTimeoutError) throw failed(error);
          // Only a failure of this transaction's own connection is connection loss: no attempt is charged.
          if (!(await this.#connectionAlive(transaction))) throw error;
          if (!savepoint) throw failed(error);
          await this.#sequelize.getQueryInterface().rollbackTransaction(savepoint, {});
          (savepoint as { finished?: string }).finished = 'rollback';
          return { error };
        }
      };
      // Messages of channels with batch callbacks, by channel, in claim order: run after the others.
      const groups = new Map<AnyChannel, GroupItem[]>();
      // The fast pass with callbackConcurrency: the messages, to run several at once after the loop.
      const atOnce: Array<() => Promise<void>> | null = !known && this.#options.callbackConcurrency > 1 ? [] : null;
      // The server ends a transaction idle for timeoutMs + 5 s. Callbacks that never query (an HTTP
      // call, an e-mail) leave a fast batch idle across all of them: touch it between messages.
      let touched = Date.now();
      const touch = async () => {
        if (!known && Date.now() - touched > this.#claimTimeoutMs / 2) {
          await this.#library(transaction, 'keep-alive', this.#sequelize.query('SELECT 1', { transaction }));
          touched = Date.now();
        }
      };
      for (const row of rows) {
        if (row.suspect) {
          suspects.push(row);
          continue;
        }
        const channel = this.#channels.find((c) => c.name === row.channel)!;
        let message: unknown;
        try {
          message = decodeMessage(channel, row.payload, row.id);
        } catch (error) {
          // A malformed payload ran no callback and wrote nothing: no savepoint needed to keep it.
          await fail(row, channel, error);
          continue;
        }
        if (known?.has(row.id)) {
          await fail(row, channel, known.get(row.id));
          continue;
        }
        if (this.#host.batchCallbacks(channel.name).length > 0) {
          groups.set(channel, [...(groups.get(channel) ?? []), { row, message, attempt: row.attempts + 1 }]);
          continue;
        }
        const unit = async () => {
          const failure = await runUnit((t) => this.#run(channel, message, t, row.attempts + 1, row.id, afterCommit), (error) => new CallbackFailed(row.id, error));
          if (failure) await fail(row, channel, failure.error);
          else processed.push(row.id);
        };
        if (atOnce) atOnce.push(unit);
        else {
          await touch();
          await unit();
        }
      }
      if (atOnce?.length) {
        // A failure fails the fast pass (runUnit throws): the batch is redone one message at a time.
        this.#sharedAfterCommit.add(transaction);
        const restore = redirectAfterCommit(transaction, (hook) => afterCommit.push(hook));
        const connection = (transaction as unknown as { connection: { query: QueryFn } }).connection;
        const ownQuery = oneQueryAtATime(connection);
        try {
          await runAtOnce(atOnce, this.#options.callbackConcurrency);
        } finally {
          ownQuery();
          restore();
          this.#sharedAfterCommit.delete(transaction);
        }
      }
      for (const [channel, items] of groups) {
        await touch();
        // All at once, unless a timeout said to split it; a careful pass splits a group that throws.
        if (!known?.has(splitKey(channel.name)) && !(known && items.length === 1)) {
          const failure = await runUnit((t) => this.#runBatchCallbacks(channel, items, t, afterCommit),
            (error) => new GroupFailed(channel.name, error instanceof CallbackTimeoutError));
          if (!failure) {
            processed.push(...items.map((item) => item.row.id));
            continue;
          }
        }
        // One message at a time, so that the one that fails fails alone.
        for (const item of items) {
          await touch();
          const failure = await runUnit((t) => this.#runBatchCallbacks(channel, [item], t, afterCommit), (error) => new CallbackFailed(item.row.id, error));
          if (failure) await fail(item.row, channel, failure.error);
          else processed.push(item.row.id);
        }
      }
      await this.#library(transaction, 'delete', deleteProcessed(this.#objects, this.#sequelize, transaction, processed));
      await this.#library(transaction, 'commit', transaction.commit());
    } catch (error) {
      await this.#rollback(transaction);
      throw error;
    }
    await this.#afterCommit(afterCommit, null);
    return { claimed: rows.length, processed, failures, suspects };
  }

  /**
   * Runs a notification a dead process held, alone, in its own transaction. Its attempt is charged
   * first (committed, with PROCESS_DIED as the error), so that if it kills this process too, the
   * charge stays; otherwise the run's own outcome replaces it. A message that keeps killing its
   * process thus uses up its attempts and is failed, while every other notification goes on.
   */
  async #runAlone(suspect: ClaimedRow, slot: number): Promise<void> {
    const channel = this.#channels.find((c) => c.name === suspect.channel)!;
    const attempt = suspect.attempts + 1;
    const charged = await chargeBeforeRunningAlone(this.#objects, this.#sequelize, suspect, {
      holder: this.#holders[slot] ?? 0, error: PROCESS_DIED, delayMs: backoffDelay(attempt, channel.retry), maxAttempts: channel.retry.maxAttempts,
    });
    if (!charged) return; // another listener took it first
    this.stats.ranAlone++;
    this.#log.warn(`running notification ${suspect.id} on '${channel.name}' alone: the listener that held it in a batch went away (its process died, or its connection was gone for over 10 s)`, { event: 'running-alone', id: suspect.id, attempt, maxAttempts: channel.retry.maxAttempts });
    await this.#beforeRunningAlone?.({ id: suspect.id, channel: channel.name, attempt, maxAttempts: channel.retry.maxAttempts });
    try {
      await this.#runCharged(suspect, channel, attempt);
    } finally {
      this.#tell('ranAlone', suspect.id);
    }
  }

  /**
   * Locks a charged suspect for its run. Another listener's claim that met it as a suspect too, in
   * the instant before the charge, holds its row until that claim's batch ends: wait for it (never
   * leave a charged suspect to a later batch, which it could take down with it). Null once it is done.
   */
  async #lockAlone(transaction: Transaction, suspect: ClaimedRow, channel: AnyChannel): Promise<ClaimedRow | null> {
    for (let waitMs = 20, told = false; ; waitMs = Math.min(waitMs * 2, 500)) {
      const row = await this.#library(transaction, 'lock', lockOne(this.#objects, this.#sequelize, transaction, suspect.id, this.#timeoutOf(channel)));
      if (row !== 'held') return row;
      if (!told) this.#log.debug(`notification ${suspect.id} is held by another claim; waiting to run it alone`, { event: 'alone-held', id: suspect.id });
      told = true;
      await sleep(waitMs);
    }
  }

  /** The run of a suspect whose attempt is charged: its outcome replaces the charge's error. */
  async #runCharged(suspect: ClaimedRow, channel: AnyChannel, attempt: number): Promise<void> {
    let failure: unknown = null;
    const afterCommit: AfterCommitHook[] = [];
    const transaction = await this.#sequelize.transaction();
    let row: ClaimedRow | null = null;
    try {
      row = await this.#lockAlone(transaction, suspect, channel);
      if (row) {
        try {
          const message = decodeMessage(channel, row.payload, row.id);
          if (this.#host.batchCallbacks(channel.name).length > 0) await this.#runBatchCallbacks(channel, [{ row, message, attempt }], transaction, afterCommit);
          else await this.#run(channel, message, transaction, attempt, row.id, afterCommit);
        } catch (error) {
          if (error instanceof CallbackTimeoutError || !(await this.#connectionAlive(transaction))) throw error;
          failure = error;
        }
        if (failure === null) await this.#library(transaction, 'delete', deleteProcessed(this.#objects, this.#sequelize, transaction, [row.id]));
      }
      // A plain failure is recorded after the rollback below; success commits here.
      if (failure === null) await this.#library(transaction, 'commit', transaction.commit());
    } catch (error) {
      await this.#rollback(transaction);
      if (!(error instanceof CallbackTimeoutError) && !(error instanceof MalformedPayloadError)) throw error;
      failure = error;
    }
    if (failure === null) {
      await this.#afterCommit(afterCommit, channel.name);
      if (row) {
        this.stats.processed++;
        this.#tell('processed', [row.id]);
      }
      return;
    }
    if (!(transaction as { finished?: string }).finished) await this.#rollback(transaction);
    // The attempt was charged before the run: replace the "process died" error with what happened.
    const record = this.#failureRecord({ ...suspect, attempts: attempt }, channel, failure, true);
    const { failedForGood } = await this.#sequelize.transaction((t) => recordFailure(this.#objects, this.#sequelize, t, record));
    this.#reportFailures([{ id: suspect.id, channel: channel.name, error: failure, failedForGood }]);
  }

  /**
   * Takes the drain locks this listener lacks (at most every DRAIN_LOCK_RETRY_MS). With all of them
   * held and a full batch in hand, wakes the other listeners instead: producers no longer do.
   */
  async #takeDrainLocks(backlog: boolean): Promise<void> {
    // A listener with a context filter does not claim everything, so it cannot stand in for a NOTIFY.
    if (this.#options.contextFilter && Object.keys(this.#options.contextFilter).length > 0) return;
    const client = this.#client;
    const missing = this.#filter.channels.filter((c) => !this.#drainLocks.includes(c));
    if (!client || Date.now() - this.#drainLocksTriedAt < DRAIN_LOCK_RETRY_MS) return;
    if (missing.length === 0 && !backlog) return;
    this.#drainLocksTriedAt = Date.now();
    try {
      if (missing.length) {
        // The beat first: producers trust a drain lock only while it is fresh.
        if (this.#drainLocks.length === 0) await drainBeat(this.#objects, client);
        this.#drainLocks.push(...await takeDrainLocks(client, missing));
        if (this.#drainLocks.length) this.#startBeat();
      } else {
        await wakeListeners(client, this.#drainLocks);
      }
    } catch (error) {
      this.#log.debug('could not take drain locks', { event: 'drain-lock-failed', error: errorSummary(error) });
    }
  }

  #startBeat(): void {
    if (this.#beat) return;
    const beat = () => {
      const client = this.#client;
      if (!client || this.#drainLocks.length === 0) {
        this.#beat = null;
        return;
      }
      drainBeat(this.#objects, client).catch((error: unknown) => this.#log.debug('could not beat', { event: 'beat-failed', error: errorSummary(error) }));
      this.#beat = setTimeout(beat, DRAIN_BEAT_MS);
      this.#beat.unref?.();
    };
    this.#beat = setTimeout(beat, DRAIN_BEAT_MS);
    this.#beat.unref?.();
  }

  #stopBeat(): void {
    if (this.#beat) clearTimeout(this.#beat);
    this.#beat = null;
  }

  async #releaseDrainLocks(wakeOthers: boolean): Promise<void> {
    const client = this.#client;
    const held = this.#drainLocks;
    this.#drainLocks = [];
    this.#stopBeat();
    this.#settle = true;
    if (!client) return;
    try {
      await releaseDrainLocks(client, held);
      if (wakeOthers) await wakeListeners(client, held);
    } catch (error) {
      this.#log.debug('could not release drain locks', { event: 'drain-lock-release-failed', error: errorSummary(error) });
    }
  }

  async #skippedProducersDone(): Promise<boolean> {
    const client = this.#client;
    // Without a LISTEN connection there is nothing to wait for: the reconnect settles again.
    if (!client) return true;
    try {
      return await skippedProducersDone(client, this.#filter.channels);
    } catch (error) {
      this.#log.debug('could not check for producers that skipped their NOTIFY', { event: 'skipped-check-failed', error: errorSummary(error) });
      return true;
    }
  }

  async #scheduleRetry(): Promise<void> {
    const due = await nextDueInMs(this.#objects, this.#sequelize, this.#filter);
    if (due === null || this.#stopping) return;
    // Due now yet not claimed: another listener holds those rows. Look again later in case it dies.
    const delay = due <= 0 ? HELD_ROWS_RECHECK_MS : Math.ceil(due) + 5;
    this.#retryTimer = setTimeout(() => this.wake(), Math.min(delay, 2 ** 31 - 1));
    this.#retryTimer.unref?.();
  }
}

/** The pg client under a Sequelize connection, as far as closing it goes. */
interface PgConnection { connection?: { stream?: { destroy(): void } } }

/** Closes a connection's socket at once: pg then fails whatever waits on it (end() would wait for a dead peer). */
function destroySocket(connection: PgConnection | undefined): void {
  connection?.connection?.stream?.destroy();
}
