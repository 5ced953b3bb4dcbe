/**
 * The listener's public types: its options, events and statistics (re-exported by lib/index.ts).
 * Its parts import them from here, so nothing imports back from lib/listener/listener.ts. Nothing
 * here imports pg: an app's TypeScript needs no @types/pg to read the library's declarations.
 */
import type { Sequelize } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import type { NotificationContext } from '../channels/context';
import type { ChannelName } from '../channels/names';
import type { LibraryObjects } from '../db/objects';
import type { Logger } from '../ops/logger';

export interface ListenOptions {
  /** Channel names to process (default: every channel with a callback). Checked by the compiler when the app fills in `Register`. */
  channels?: readonly ChannelName[];
  /** Notifications claimed per transaction. Default 100. */
  batchSize?: number;
  /**
   * Claim transactions at once in this process, each on its own pool connection (so the pool
   * needs at least `concurrency + 1` connections). Default 1: see docs/callbacks-and-listeners.md,
   * "Concurrency", for when more helps (callbacks that wait on the network) and when it does not.
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
   * Warns (event `cleanup-held-back`), once per holder, when a transaction, prepared transaction or
   * replication slot has kept vacuum from cleaning the notification table for this long, in ms.
   * Default 300000 (5 minutes); false: never.
   */
  cleanupWarnAfterMs?: number | false;
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
  /**
   * Batch callbacks get each stored row as it is (RawMessage), not decoded against the model: a
   * relay passes the notification on unchanged (lib/relay/relay.ts).
   */
  readonly rawBatches?: boolean;
}

/** A stored notification as a relay's batch callback gets it (ListenerHost.rawBatches). */
export interface RawMessage {
  id: string;
  channel: string;
  /** The stored payload, the JSON text as the trigger or notify() wrote it. */
  payload: string;
  /** 1 on the first attempt, 2 on the first retry, … */
  attempt: number;
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
