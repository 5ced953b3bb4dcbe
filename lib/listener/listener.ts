import type { ChannelName } from '../channels/names';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, Notification } from 'pg';
import type { Sequelize } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import type { NotificationContext } from '../channels/context';
import type { LibraryObjects } from '../db/objects';
import { errorSummary, errorText } from '../error-text';
import { ListenOptionsError } from '../errors';
import { clearInflight, pruneDeadMarkers, takeHolderKey } from '../db/inflight';
import { type ResolvedListenOptions, resolveListenOptions } from './options';
import { type Logger, consoleLogger, toLogger } from '../ops/logger';
import { libraryProblem } from '../db/library-check';
import { type ClaimFilter, dueCheck, nextDueInMs, pausedSql, pendingSql, purgeFailed } from '../db/store';
import { BatchRunner } from './batch-runner';
import { type BroadcastContext, runBroadcast } from './broadcasts';
import { CallbackRunner, bounded } from './callbacks';
import { ListenConnection } from './connection';
import { ListenerReport, REPORT_EVERY_MS } from './report';
import { type DrainAction, type DrainFacts, type DrainReply, type DrainTiming, afterClaim, nextDrain, startDrain } from './drain-machine';
import { drainBeat, holdListening, releaseDrainLocks, skippedProducersDone, takeDrainLocks, wakeListeners } from '../db/wake-locks';

/** The application_name of a listener's LISTEN connection (pg_stat_activity shows it). */
export { LISTENER_APPLICATION_NAME } from './options';

/** Channel on which `recover()` asks every running listener to drain now. */
export const RECOVER_CHANNEL = 'pgpubsub_recover';
/** Channel on which a pause or resume (admin.pause/resume) tells every running listener to read the paused channels again. */
export const PAUSE_CHANNEL = 'pgpubsub_pause';

/** failedRetentionMs: how often the old failures are purged, and how much one purge deletes at most. */
const RETENTION_EVERY_MS = 3_600_000;
const RETENTION_BATCH = 1000;
const RETENTION_BATCHES = 10;

/** How often a listener that lacks a channel's listening lock (another role holds it) tries again. */
const LISTENING_RETRY_MS = 1000;
/** How often a listener that holds drain locks says so to producers (they trust a lock for 1 s). */
const DRAIN_BEAT_MS = 250;
/**
 * While a listener waits for producers that skipped their NOTIFY to commit (after it lets go of its
 * drain locks, or starts), it looks again after 5 ms, doubling up to 1 s; after settling 1 s without
 * seeing every skipping producer end, it claims at each look anyway.
 */
const DRAIN_TIMING: DrainTiming = { settleFirstMs: 5, settleMaxMs: 1000, settleBoundMs: 1000 };
/** At most this often a listener that holds drain locks tries for the ones it lacks, or wakes the others to help with a backlog. */
const DRAIN_LOCK_RETRY_MS = 200;

/** How soon to look again at due rows that another listener holds locked. */
const HELD_ROWS_RECHECK_MS = 1000;

export interface ListenOptions {
  /** Channel names to process (default: every channel with a callback). Checked by the compiler when the app fills in `Register`. */
  channels?: readonly ChannelName[];
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
   * Deletes notifications that failed for good longer ago than this (ms), at start and then
   * hourly, at most 10,000 a run, in batches of 1,000. Default: kept until purged
   * (`pgpubsub failed purge`).
   */
  failedRetentionMs?: number;
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


/** A message whose callbacks are about to run (`message:start`). */
export interface MessageStart {
  channel: string;
  /** The stored notification's id; null for a broadcast. */
  id: string | null;
  /** 1 on the first attempt, 2 on the first retry, … */
  attempt: number;
  /**
   * How long ago its producing transaction began (the stored created_at, by the server's clock at
   * the claim, plus the time since here), in ms: the lag from write to processing. Null for a broadcast.
   */
  lagMs: number | null;
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
  /** The ids whose processing committed (a batch, or one run alone), and the channel of each. */
  processed: [ids: string[], channels: string[]];
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
 * Its parts: lib/listener/connection.ts keeps the LISTEN connection (connect, LISTEN, reconnect,
 * heartbeat); this class sets up what it holds there (holder keys, listening and drain locks) and
 * performs the drain, whose rules are the pure step function of lib/listener/drain-machine.ts;
 * lib/listener/batch-runner.ts runs one claim transaction (and what a dead process held, alone);
 * lib/listener/callbacks.ts runs callbacks within their time limit; lib/listener/broadcasts.ts runs broadcasts. The
 * wake-up protocol is explained once, in lib/db/wake-locks.ts.
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
  readonly #log: Logger;
  readonly #channels: AnyChannel[];
  readonly #filter: ClaimFilter;
  /** What its claims (and the looks for due rows) take: #filter without the paused channels. */
  #claimable: ClaimFilter;
  /** Its channels that are paused (`pgpubsub channels pause`): claimed by none until resumed. */
  #paused: string[] = [];
  /** The longest time limit of this listener's durable channels: what the claim sets on the server. */
  readonly #claimTimeoutMs: number;
  readonly #connection: ListenConnection;
  /** This listener's key in pgpubsub_inflight, an advisory lock held on the LISTEN connection. */
  /** The holder keys of this listener's claim loops (one per `concurrency`), held on its LISTEN connection. */
  #holders: number[] = [];
  #stopping = false;
  #pending = false;
  #draining: Promise<void> | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #listeningRetry: NodeJS.Timeout | null = null;
  #retention: NodeJS.Timeout | null = null;
  #beat: NodeJS.Timeout | null = null;
  readonly #report: ListenerReport;
  /** listen({ channels }) named its channels: the others are not its business. */
  readonly #channelsGiven: boolean;
  #reportTimer: NodeJS.Timeout | null = null;
  /** Channels whose listening lock another session holds exclusively: tried again every LISTENING_RETRY_MS. */
  #notListening: string[] = [];
  /** Channels whose drain lock this listener holds on its LISTEN connection (producers skip their NOTIFYs). */
  #drainLocks: string[] = [];
  #drainLocksTriedAt = 0;
  readonly #callbacks: CallbackRunner;
  readonly #runner: BatchRunner;
  readonly #broadcastContext: BroadcastContext;
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
    this.#channelsGiven = options.channels !== undefined;
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
    this.#claimable = this.#filter;
    this.#claimTimeoutMs = Math.max(...this.#channels.map((c) => this.#timeoutOf(c)));
    const tell: BroadcastContext['tell'] = (event, ...args) => this.#tell(event, ...args);
    const timeoutOf = (channel: AnyChannel) => this.#timeoutOf(channel);
    this.#callbacks = new CallbackRunner({
      sequelize: this.#sequelize, host, log: this.#log, timeoutOf, tell, listens: (event) => this.listenerCount(event) > 0,
      sawLag: (channel, lagMs) => this.#report.sawLag(channel, lagMs),
    });
    const listener = this;
    this.#runner = new BatchRunner({
      sequelize: this.#sequelize, objects: this.#objects, host, options: this.#options, channels: this.#channels,
      get filter() { return listener.#claimable; },
      claimTimeoutMs: this.#claimTimeoutMs, log: this.#log, stats: this.stats, callbacks: this.#callbacks,
      beforeRunningAlone: options.beforeRunningAlone, timeoutOf, tell,
      holders: () => this.#holders, client: () => this.#connection.client, stopping: () => this.#stopping,
    });
    this.#connection = new ListenConnection({
      sequelize: this.#sequelize, listenConnection: this.#options.listenConnection, log: this.#log,
      minDelayMs: this.#options.minDelayMs, maxDelayMs: this.#options.maxDelayMs, heartbeatMs: this.#options.heartbeatMs,
      channels: [...this.#channels.map((c) => c.name), RECOVER_CHANNEL, PAUSE_CHANNEL],
      setUp: (client, first) => this.#setUp(client, first),
      connected: () => {
        this.#drainLocks = [];
        // Producers that found nobody listening skipped their NOTIFY: the next drain waits for them.
        this.#settle = true;
        if (this.#notListening.length) this.#retryListening();
      },
      lost: () => {
        this.#drainLocks = []; // session locks end with the connection
        this.#stopBeat();
      },
      reconnected: (attempt) => {
        this.stats.reconnects++;
        this.#log.info('reconnected; sweeping for notifications sent meanwhile', { event: 'reconnected', attempt });
        this.#tell('reconnected', { attempt });
        this.wake();
      },
      notification: (message) => this.#onNotification(message),
      heartbeat: async (client) => {
        // Also the backstop for a pause or resume order this connection missed.
        const { text, values } = dueCheck(this.#objects, this.#filter);
        const result = await bounded(client.query<{ due: boolean; paused: string[] }>(text, values), Math.max(1000, this.#options.heartbeatMs / 2), () => new Error('heartbeat timed out'));
        const [row] = result.rows;
        if (row) this.#applyPaused(row.paused);
        if (row?.due) this.wake();
      },
      stopping: () => this.#stopping,
    });
    this.#report = new ListenerReport(this.#objects, this.#log, this.#channels.map((c) => c.name), this);
    this.#broadcastContext = {
      sequelize: this.#sequelize, callbacks: this.#callbacks, contextFilter: this.#options.contextFilter, log: this.#log, stats: this.stats, tell,
      reportError: (error) => { if (this.listenerCount('error') > 0) this.emit('error', error); },
    };
  }

  #timeoutOf(channel: AnyChannel): number {
    return channel.timeoutMs ?? this.#options.timeoutMs;
  }

  /**
   * Checks that the library is installed, connects, LISTENs, reports stored rows no listener here
   * handles, and (with recover) drains what is stored. Resolves once listening.
   */
  async start(): Promise<this> {
    await this.#connection.start();
    this.#reportTimer = setInterval(() => {
      if (!this.#stopping) void this.#report.tick(this.#connection.client);
    }, REPORT_EVERY_MS);
    this.#reportTimer.unref?.();
    this.#log.info('listening', { event: 'listening', channels: this.#channels.map((c) => c.name) });
    // A durable channel nobody here handles stores notifications that only a listener elsewhere can take.
    if (!this.#channelsGiven) {
      for (const channel of this.#host.channels()) {
        if (!channel.durable || this.#host.callbacks(channel.name).length + this.#host.batchCallbacks(channel.name).length > 0) continue;
        this.#log.warn(`durable channel '${channel.name}' has no callback in this process: its notifications are stored and wait for a listener that has one (register one with sequelize.pgpubsub.on(…), or leave the channel out of the definitions)`, {
          event: 'no-callback', channel: channel.name,
        });
      }
    }
    // The first drain starts now, so idle() covers it; handlers attached once listen() resolves still
    // see all of its events, which all follow database round trips.
    if (this.#options.recover) {
      const before = this.stats.processed;
      this.wake();
      void this.idle().then(() => this.#log.info('start-up recovery finished', { event: 'recovered', processed: this.stats.processed - before }));
    }
    if (this.#options.failedRetentionMs !== undefined) void this.#purgeOldFailures(this.#options.failedRetentionMs);
    return this;
  }

  /** failedRetentionMs: a bounded purge now, and again in an hour. */
  async #purgeOldFailures(retentionMs: number): Promise<void> {
    this.#retention = null;
    if (this.#stopping) return;
    try {
      const purged = await purgeFailed(this.#objects, this.#sequelize, retentionMs, { batch: RETENTION_BATCH, batches: RETENTION_BATCHES });
      if (purged > 0) this.#log.info(`purged ${purged} notification(s) that failed over ${retentionMs} ms ago`, { event: 'failed-purged', count: purged });
    } catch (error) {
      this.#log.warn('could not purge old failed notifications', { event: 'failed-purge-failed', error: errorSummary(error) });
    }
    if (this.#stopping) return;
    this.#retention = setTimeout(() => void this.#purgeOldFailures(retentionMs), RETENTION_EVERY_MS);
    this.#retention.unref?.();
  }

  /** Stops claiming, lets the batch in hand finish, closes the LISTEN connection. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const timer of [this.#retryTimer, this.#listeningRetry, this.#beat, this.#retention, this.#reportTimer]) if (timer) clearTimeout(timer);
    await this.#draining;
    // Producers skipped their NOTIFYs for us: wake the other listeners, who take over what is left.
    if (this.#drainLocks.length) await this.#releaseDrainLocks(true);
    await this.#connection.close(async (client) => {
      await this.#report.withdraw(client);
      if (this.#holders.length) await clearInflight(this.#objects, client, this.#holders);
    });
    this.#log.info('stopped', { event: 'stopped', ...this.stats });
  }

  /** Listening: started, not stopping, its LISTEN connection up (false while it reconnects). What a readiness probe asks. */
  get listening(): boolean {
    return !this.#stopping && this.#connection.client !== null;
  }

  /** Asks for a drain; several requests while one runs fold into one more pass. */
  wake(): void {
    if (this.#stopping || this.#claimable.channels.length === 0) return;
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
   * What this listener keeps on each new LISTEN connection: at start, the library check and the
   * report of rows nobody here handles; then its holder keys (one per claim loop, the same ones
   * again after a reconnect when free), the pruning of dead listeners' markers, and the listening
   * locks, after which producers count on it.
   */
  async #setUp(client: Client, first: boolean): Promise<void> {
    if (first) {
      await this.#checkInstalled(client);
      await this.#reportStrays(client);
    }
    const holders: number[] = [];
    for (let slot = 0; slot < this.#options.concurrency; slot++) holders.push(await takeHolderKey(client, this.#holders[slot] ?? null, holders));
    this.#holders = holders;
    await pruneDeadMarkers(this.#objects, client, holders).catch((error: unknown) => this.#log.debug('could not prune markers', { event: 'prune-failed', error: errorSummary(error) }));
    // Only now may producers count on this listener: it hears every NOTIFY from here on.
    this.#notListening = this.#filter.channels.length ? await holdListening(client, this.#filter.channels) : [];
    // After LISTEN: a pause or resume committed from here on reaches it as a NOTIFY.
    await this.#readPaused(client);
    // Who it is, for pgpubsub status (again after a reconnect: a new connection is a new row).
    await this.#report.send(client);
  }

  /** Reads which of its channels are paused. */
  async #readPaused(client: Client): Promise<void> {
    if (this.#filter.channels.length === 0) return;
    const { rows } = await client.query<{ channel: string }>(pausedSql(this.#objects), [this.#filter.channels]);
    this.#applyPaused(rows.map((row) => row.channel));
  }

  /** Claims leave the paused channels out from now on; a channel resumed is drained at once. */
  #applyPaused(paused: string[]): void {
    const resumed = this.#paused.filter((channel) => !paused.includes(channel));
    const newly = paused.filter((channel) => !this.#paused.includes(channel));
    this.#paused = paused;
    this.#claimable = paused.length ? { ...this.#filter, channels: this.#filter.channels.filter((c) => !paused.includes(c)) } : this.#filter;
    if (newly.length) this.#log.info(`paused: ${newly.join(', ')}; not claiming until resumed`, { event: 'paused', channels: newly });
    if (resumed.length) {
      this.#log.info(`resumed: ${resumed.join(', ')}`, { event: 'resumed', channels: resumed });
      this.wake();
    }
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
      const client = this.#connection.client;
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

  #onNotification(message: Notification): void {
    if (message.channel === PAUSE_CHANNEL) {
      // A pause or resume of one of ours: stop claiming it at once, before the wake-ups that follow
      // this NOTIFY start a drain, and until the paused channels are read again (a resume is then undone).
      const named = message.payload ?? '';
      if (this.#filter.channels.includes(named) && !this.#paused.includes(named)) {
        this.#claimable = { ...this.#claimable, channels: this.#claimable.channels.filter((c) => c !== named) };
      }
      const client = this.#connection.client;
      if (client) {
        // A resume: what the channel stored meanwhile is drained now.
        void this.#readPaused(client).then(() => { if (!this.#paused.includes(named)) this.wake(); }, (error: unknown) => {
          this.#log.warn('could not read the paused channels', { event: 'paused-read-failed', error: errorSummary(error) });
          // Claims go back to what was last read; the heartbeat reads again.
          this.#applyPaused(this.#paused);
        });
      }
      return;
    }
    if (message.channel === RECOVER_CHANNEL) {
      this.#log.info('recovery requested', { event: 'recover-requested' });
      this.wake();
      return;
    }
    const channel = this.#channels.find((c) => c.name === message.channel);
    if (!channel) return;
    if (channel.durable) this.wake();
    else void runBroadcast(this.#broadcastContext, channel, message.payload ?? '');
  }

  /** Emits an event; a handler that throws is logged, and never taken for the message's own failure. */
  #tell<K extends keyof ListenerEvents & string>(event: K, ...args: ListenerEvents[K]): void {
    try {
      (this.emit as (name: string, ...rest: unknown[]) => boolean)(event, ...args);
    } catch (error) {
      this.#log.error(`a '${event}' event handler threw`, { event: 'event-handler-failed', name: event, error: errorText(error) });
    }
  }

  /**
   * Claims batches until there is nothing left: the drain's rules and modes are the step function
   * in lib/listener/drain-machine.ts; this performs its actions and tells it what came of them.
   */
  async #drain(): Promise<void> {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const started = { at: Date.now(), processed: this.stats.processed, failed: this.stats.failed, claimed: this.#claimedTotal };
    this.#tell('drain:start');
    try {
      for (let step = startDrain(DRAIN_TIMING, this.#drainFacts()); !this.#stopping;) {
        const reply = await this.#perform(step.action);
        if (!reply) break;
        step = nextDrain(step, reply, DRAIN_TIMING, this.#drainFacts());
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

  #drainFacts(): DrainFacts {
    return { pending: this.#pending, holdingLocks: this.#drainLocks.length > 0, settleOwed: this.#settle, now: Date.now() };
  }

  /** Performs one of the drain's actions; null for 'finish'. */
  async #perform(action: DrainAction): Promise<DrainReply | null> {
    switch (action.do) {
      case 'claim': {
        if (action.settled) this.#settle = false; // one more claim sees the skipped producers' rows
        this.#pending = false;
        return { to: 'claim', ...(await this.#round()) };
      }
      case 'claim-while-settling': {
        const claimed = await this.#batch();
        if (claimed > 0) this.#log.debug('claimed while producers that skipped their NOTIFY are still open', { event: 'claimed-after-skip', claimed });
        return { to: 'claim-while-settling', claimed, full: claimed === this.#options.batchSize };
      }
      case 'take-drain-locks':
        await this.#takeDrainLocks(action.backlog);
        return { to: 'take-drain-locks' };
      case 'release-drain-locks':
        await this.#releaseDrainLocks(false);
        return { to: 'release-drain-locks' };
      case 'check-skipped':
        return { to: 'check-skipped', done: await this.#skippedProducersDone() };
      case 'wait':
        await sleep(action.ms);
        return { to: 'wait' };
      case 'finish':
        return null;
    }
  }

  /** A claim loop's drain-lock rule (afterClaim in lib/listener/drain-machine.ts), performed. */
  async #afterClaim(streak: number, claimed: number, full: boolean): Promise<number> {
    const next = afterClaim(streak, claimed, full);
    if (next.takeLocks) await this.#takeDrainLocks(full);
    return next.streak;
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

  /** One claim transaction (see BatchRunner.batch); returns how many notifications it claimed. */
  async #batch(slot = 0): Promise<number> {
    const claimed = await this.#runner.batch(slot);
    this.#claimedTotal += claimed;
    return claimed;
  }

  /**
   * Takes the drain locks this listener lacks (at most every DRAIN_LOCK_RETRY_MS). With all of them
   * held and a full batch in hand, wakes the other listeners instead: producers no longer do.
   */
  async #takeDrainLocks(backlog: boolean): Promise<void> {
    // A listener with a context filter does not claim everything, so it cannot stand in for a NOTIFY.
    if (this.#options.contextFilter && Object.keys(this.#options.contextFilter).length > 0) return;
    const client = this.#connection.client;
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
      const client = this.#connection.client;
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
    const client = this.#connection.client;
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
    const client = this.#connection.client;
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
    if (this.#claimable.channels.length === 0) return;
    const due = await nextDueInMs(this.#objects, this.#sequelize, this.#claimable);
    if (due === null || this.#stopping) return;
    // Due now yet not claimed: another listener holds those rows. Look again later in case it dies.
    const delay = due <= 0 ? HELD_ROWS_RECHECK_MS : Math.ceil(due) + 5;
    this.#retryTimer = setTimeout(() => this.wake(), Math.min(delay, 2 ** 31 - 1));
    this.#retryTimer.unref?.();
  }
}
