import { EventEmitter } from 'node:events';
import type { Client, Notification } from 'pg';
import type { Sequelize, Transaction } from 'sequelize';
import { type AnyChannel, type RetryPolicy } from './channel';
import { type ClaimFilter, type ClaimedRow, claimBatch, dueCheck, deleteProcessed, nextDueInMs, recordFailure } from './claim';
import type { NotificationContext } from './context';
import { PgPubSubError } from './errors';
import { type Logger, consoleLogger } from './logger';
import { decodeMessage } from './message';
import { quoteIdent } from './sql-text';
import { holdListening, releaseDrainLocks, skippedProducersDone, takeDrainLocks, wakeListeners } from './wake-locks';

/** Channel on which `recover()` asks every running listener to drain now. */
export const RECOVER_CHANNEL = 'pgpubsub_recover';

/** Thrown out of a fast (savepoint-free) batch to roll it back and run it again carefully. */
class CallbackFailed extends Error {
  constructor(readonly id: string, readonly error: unknown) {
    super(`a callback failed for notification ${id} in a batch without savepoints`);
  }
}

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
  /** Reconnect backoff bounds, in ms. Default 100 to 10000, with jitter. */
  reconnect?: { minDelayMs?: number; maxDelayMs?: number };
  logger?: Logger;
}

/** What a listener needs from PgPubSub: its Sequelize, channels and callbacks. */
export interface ListenerHost {
  readonly sequelize: Sequelize;
  channel(name: string): AnyChannel;
  channels(): AnyChannel[];
  callbacks(name: string): readonly Function[];
}

export interface ListenerStats {
  processed: number;
  failed: number;
  broadcasts: number;
  batches: number;
  reconnects: number;
}

/** Exponential backoff with jitter: base·2^(n-1), capped, then scaled by a random factor in [0.5, 1). */
export function backoffDelay(attempt: number, retry: Required<RetryPolicy>, random = Math.random): number {
  const exponential = Math.min(retry.maxBackoffMs, retry.backoffMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential * (0.5 + random() / 2));
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
  return text.slice(0, 8000);
}

/** Errors that mean the database connection is gone (server shutdown, terminated backend, network). */
export function isConnectionLoss(error: unknown): boolean {
  const e = error as { name?: string; code?: string; message?: string; parent?: { code?: string; message?: string } } | null;
  const code = e?.parent?.code ?? e?.code ?? '';
  return Boolean(e?.name?.startsWith('SequelizeConnection'))
    || /^(08|57P0)/.test(code)
    || ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT'].includes(code)
    || /Connection terminated|connection is closed|terminating connection|Client has encountered a connection error/i.test(`${e?.message ?? ''} ${e?.parent?.message ?? ''}`);
}

function contains(context: NotificationContext, filter: NotificationContext): boolean {
  return Object.entries(filter).every(([key, value]) => JSON.stringify(context[key]) === JSON.stringify(value));
}

/**
 * A listening process's engine. It holds its own pg.Client for LISTEN (never a pool connection),
 * wakes on NOTIFY, and drains durable notifications in batches through pool transactions: claim
 * with SKIP LOCKED, run each message's callbacks in a savepoint, delete the successes, keep the
 * failures with their error and a backoff, commit once.
 *
 * Events: 'processed' (ids), 'failed' ({ id, channel, error }), 'broadcast' (channel), 'reconnected', and
 * 'error' (a drain or broadcast that failed; emitted only when something listens for it, already logged).
 */
export class Listener extends EventEmitter {
  readonly stats: ListenerStats = { processed: 0, failed: 0, broadcasts: 0, batches: 0, reconnects: 0 };
  readonly #host: ListenerHost;
  readonly #sequelize: Sequelize;
  readonly #options: Required<Omit<ListenOptions, 'channels' | 'contextFilter' | 'reconnect' | 'logger'>> & {
    contextFilter?: NotificationContext; minDelayMs: number; maxDelayMs: number;
  };
  readonly #log: Logger;
  readonly #channels: AnyChannel[];
  readonly #filter: ClaimFilter;
  #client: Client | null = null;
  #stopping = false;
  #pending = false;
  #draining: Promise<void> | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #reconnecting: Promise<void> | null = null;
  #checking = false;
  /** Channels whose drain lock this listener holds on its LISTEN connection (producers skip their NOTIFYs). */
  #drainLocks: string[] = [];
  #drainLocksTriedAt = 0;
  /** Set when producers may have skipped a NOTIFY this listener must make up for (see #drain). */
  #settle = true;

  constructor(host: ListenerHost, options: ListenOptions = {}) {
    super();
    this.#host = host;
    this.#sequelize = host.sequelize;
    this.#log = options.logger ?? consoleLogger();
    const batchSize = options.batchSize ?? 100;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new PgPubSubError('PGPUBSUB_LISTEN_OPTIONS', `listen: batchSize must be a positive integer, got ${JSON.stringify(options.batchSize)}`);
    }
    this.#options = {
      batchSize,
      recover: options.recover ?? true,
      savepoints: options.savepoints ?? 'on-failure',
      heartbeatMs: options.heartbeatMs ?? 60_000,
      contextFilter: options.contextFilter,
      minDelayMs: options.reconnect?.minDelayMs ?? 100,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 10_000,
    };
    const names = options.channels ?? host.channels().filter((c) => host.callbacks(c.name).length > 0).map((c) => c.name);
    if (names.length === 0) {
      throw new PgPubSubError('PGPUBSUB_NO_CALLBACKS', 'listen: no channel has a callback. Register one first, e.g. sequelize.pgpubsub.on(Author, \'author_created\', callback)');
    }
    this.#channels = names.map((name) => {
      const channel = host.channel(name);
      if (host.callbacks(name).length === 0) {
        // Claiming a durable notification with nothing to run would delete it unprocessed.
        throw new PgPubSubError('PGPUBSUB_NO_CALLBACKS', `listen: channel '${name}' has no callback. Register one with sequelize.pgpubsub.on(…) before listening, or leave it out of channels`);
      }
      return channel;
    });
    this.#filter = { channels: this.#channels.filter((c) => c.durable).map((c) => c.name), context: options.contextFilter };
  }

  /** Connects, LISTENs, and (with recover) drains what is stored. Resolves once listening. */
  async start(): Promise<this> {
    await this.#connect();
    // The heartbeat is one query on the LISTEN connection: it proves the connection alive and tells
    // whether anything is due, the backstop for a missed wake-up (e.g. rows a dying listener released).
    this.#heartbeat = setInterval(() => void this.#checkConnection(), this.#options.heartbeatMs);
    this.#heartbeat.unref?.();
    this.#log.info('listening', { channels: this.#channels.map((c) => c.name) });
    // The first drain starts now, so idle() covers it; handlers attached once listen() resolves still
    // see all of its events, which all follow database round trips.
    if (this.#options.recover) this.wake();
    return this;
  }

  /** Stops claiming, lets the batch in hand finish, closes the LISTEN connection. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#draining;
    // Producers skipped their NOTIFYs for us: wake the other listeners, who take over what is left.
    if (this.#drainLocks.length) await this.#releaseDrainLocks(true);
    await this.#reconnecting?.catch(() => undefined);
    const client = this.#client;
    this.#client = null;
    await client?.end().catch(() => undefined);
    this.#log.info('stopped', { ...this.stats });
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

  async #connect(): Promise<void> {
    const config = this.#sequelize.config;
    const pg = (this.#sequelize.connectionManager as unknown as { lib: typeof import('pg') }).lib;
    const dialectOptions = ((this.#sequelize as unknown as { options: object }).options as { dialectOptions?: Record<string, unknown> }).dialectOptions ?? {};
    const client = new pg.Client({
      ...dialectOptions,
      host: config.host,
      port: config.port ? Number(config.port) : undefined,
      user: config.username,
      password: config.password ?? undefined,
      database: config.database,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      application_name: 'pgpubsub-listener',
    });
    client.on('notification', (message) => this.#onNotification(message));
    client.on('error', (error) => this.#onConnectionLost(client, error));
    client.on('end', () => this.#onConnectionLost(client, new Error('connection ended')));
    try {
      await client.connect();
      for (const name of [...this.#channels.map((c) => c.name), RECOVER_CHANNEL]) {
        await client.query(`LISTEN ${quoteIdent(name)}`);
      }
      // Only now may producers count on this listener: it hears every NOTIFY from here on.
      if (this.#filter.channels.length) await holdListening(client, this.#filter.channels);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    this.#client = client;
    this.#drainLocks = [];
    // Producers that found nobody listening skipped their NOTIFY: the next drain waits for them.
    this.#settle = true;
  }

  #onConnectionLost(client: Client, error: Error): void {
    if (this.#stopping || client !== this.#client) return;
    this.#client = null;
    this.#drainLocks = []; // session locks end with the connection
    this.#log.warn('LISTEN connection lost; reconnecting', { error: error.message });
    client.end().catch(() => undefined);
    this.#reconnecting ??= this.#reconnect().finally(() => { this.#reconnecting = null; });
  }

  async #reconnect(): Promise<void> {
    for (let attempt = 1; !this.#stopping; attempt++) {
      const cap = Math.min(this.#options.maxDelayMs, this.#options.minDelayMs * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, Math.round(cap * (0.5 + Math.random() / 2))));
      if (this.#stopping) return;
      try {
        await this.#connect();
        this.stats.reconnects++;
        this.#log.info('reconnected; sweeping for notifications sent meanwhile', { attempt });
        this.emit('reconnected');
        this.wake();
        return;
      } catch (error) {
        this.#log.warn('reconnect failed', { attempt, error: (error as Error).message });
      }
    }
  }

  async #checkConnection(): Promise<void> {
    const client = this.#client;
    if (!client || this.#stopping || this.#checking) return;
    this.#checking = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('heartbeat timed out')), Math.max(1000, this.#options.heartbeatMs / 2));
    });
    try {
      const { text, values } = dueCheck(this.#filter);
      const result = await Promise.race([client.query<{ due: boolean }>(text, values), timeout]);
      if (result.rows[0]?.due) this.wake();
    } catch (error) {
      this.#onConnectionLost(client, error as Error);
    } finally {
      clearTimeout(timer);
      this.#checking = false;
    }
  }

  #onNotification(message: Notification): void {
    if (message.channel === RECOVER_CHANNEL) {
      this.#log.info('recovery requested');
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
      if (this.#options.contextFilter && !contains(message.context, this.#options.contextFilter)) return;
      await this.#sequelize.transaction(async (transaction) => {
        await this.#run(channel.name, message, transaction, 1);
      });
      this.stats.broadcasts++;
      this.emit('broadcast', channel.name);
    } catch (error) {
      this.#log.error(`broadcast callback on '${channel.name}' failed (broadcasts are not retried)`, { error: errorText(error) });
      if (this.listenerCount('error') > 0) this.emit('error', error);
    }
  }

  async #run(name: string, message: unknown, transaction: Transaction, attempt: number): Promise<void> {
    for (const callback of this.#host.callbacks(name)) await callback(message, { transaction, attempt });
  }

  /**
   * Claims batches until there is nothing left. While claims keep finding rows (two in a row, or a
   * full one) the listener holds its channels' drain locks, so producers skip their NOTIFYs, and
   * it keeps claiming without them. Once a claim comes back empty it lets go and settles: it waits
   * until every producer that skipped a NOTIFY has committed, then claims once more. The same
   * settling follows (re)connecting, for producers that found nobody listening.
   */
  async #drain(): Promise<void> {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const { batchSize } = this.#options;
    try {
      let claimed = 0;
      let streak = 0;
      let settleDelay = SETTLE_FIRST_MS;
      while (!this.#stopping) {
        if (!this.#pending && claimed !== batchSize && !(claimed > 0 && this.#drainLocks.length)) {
          if (this.#drainLocks.length) await this.#releaseDrainLocks(false);
          if (!this.#settle) break;
          if (!(await this.#skippedProducersDone())) {
            await new Promise((resolve) => setTimeout(resolve, settleDelay));
            settleDelay = Math.min(settleDelay * 2, SETTLE_MAX_MS);
            continue;
          }
          this.#settle = false; // one more claim sees their rows
        }
        this.#pending = false;
        claimed = await this.#batch();
        streak = claimed > 0 ? streak + 1 : 0;
        if (streak >= 2 || claimed === batchSize) await this.#takeDrainLocks(claimed === batchSize);
      }
      if (!this.#stopping) await this.#scheduleRetry();
    } catch (error) {
      // A lost pool connection or a database restart: keep the rows (the transaction rolled back) and try again.
      this.#log.error('drain failed; retrying shortly', { error: errorText(error) });
      if (this.listenerCount('error') > 0) this.emit('error', error);
      if (!this.#stopping) {
        this.#retryTimer = setTimeout(() => this.wake(), this.#options.minDelayMs * 10);
      }
    }
  }

  /**
   * One claim transaction; returns how many notifications it claimed. By default the batch runs
   * without savepoints (two round trips less per message); if a callback throws, the transaction
   * rolls back and the batch is claimed again in careful mode, a savepoint per message, where the
   * failed message is recorded for retry without running again. The messages before it in the
   * batch do run again: their database writes were rolled back, so exactly-once holds for those;
   * their other effects were at-least-once anyway. `savepoints: 'always'` avoids such re-runs.
   */
  async #batch(): Promise<number> {
    const careful = this.#options.savepoints === 'always';
    const outcome = await this.#claimAndRun(careful ? new Map() : null).catch((error: unknown) => {
      if (error instanceof CallbackFailed) return error;
      throw error;
    });
    const { claimed, processed, failures } = outcome instanceof CallbackFailed
      ? await this.#claimAndRun(new Map([[outcome.id, outcome.error]]))
      : outcome;
    this.stats.batches++;
    this.stats.processed += processed.length;
    this.stats.failed += failures.length;
    if (claimed > 0) this.#log.info('batch', { claimed, processed: processed.length, failed: failures.length });
    if (processed.length) this.emit('processed', processed);
    for (const failure of failures) {
      this.#log.warn(`callback on '${failure.channel}' failed for notification ${failure.id}; kept for retry`, { error: (failure.error as Error)?.message ?? String(failure.error) });
      this.emit('failed', failure);
    }
    return claimed;
  }

  /**
   * `known` null: the fast pass, no savepoints. Otherwise the careful pass: a savepoint per message,
   * and messages whose failure is already known (from the fast pass) are recorded without running again.
   */
  async #claimAndRun(known: Map<string, unknown> | null): Promise<{ claimed: number; processed: string[]; failures: Array<{ id: string; channel: string; error: unknown }> }> {
    const processed: string[] = [];
    const failures: Array<{ id: string; channel: string; error: unknown }> = [];
    const claimed = await this.#sequelize.transaction(async (transaction) => {
      const rows = await claimBatch(this.#sequelize, transaction, this.#filter, this.#options.batchSize);
      const fail = async (row: ClaimedRow, channel: AnyChannel, error: unknown) => {
        failures.push({ id: row.id, channel: row.channel, error });
        await recordFailure(this.#sequelize, transaction, {
          id: row.id,
          error: errorText(error),
          delayMs: backoffDelay(row.attempts + 1, channel.retry),
          maxAttempts: channel.retry.maxAttempts,
        });
      };
      for (const row of rows) {
        const channel = this.#channels.find((c) => c.name === row.channel)!;
        let message: unknown;
        try {
          message = decodeMessage(channel, row.payload, row.id);
        } catch (error) {
          // A malformed payload ran no callback and wrote nothing: no savepoint needed to keep it.
          await fail(row, channel, error);
          continue;
        }
        if (!known) {
          try {
            await this.#run(channel.name, message, transaction, row.attempts + 1);
          } catch (error) {
            // A lost connection is the batch's problem, not the message's: no attempt is charged for it.
            throw isConnectionLoss(error) ? error : new CallbackFailed(row.id, error);
          }
          processed.push(row.id);
          continue;
        }
        if (known.has(row.id)) {
          await fail(row, channel, known.get(row.id));
          continue;
        }
        try {
          await this.#sequelize.transaction({ transaction }, (savepoint) => this.#run(channel.name, message, savepoint, row.attempts + 1));
          processed.push(row.id);
        } catch (error) {
          await fail(row, channel, error);
        }
      }
      await deleteProcessed(this.#sequelize, transaction, processed);
      return rows.length;
    });
    return { claimed, processed, failures };
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
      if (missing.length) this.#drainLocks.push(...await takeDrainLocks(client, missing));
      else await wakeListeners(client, this.#drainLocks);
    } catch (error) {
      this.#log.debug('could not take drain locks', { error: (error as Error).message });
    }
  }

  async #releaseDrainLocks(wakeOthers: boolean): Promise<void> {
    const client = this.#client;
    const held = this.#drainLocks;
    this.#drainLocks = [];
    this.#settle = true;
    if (!client) return;
    try {
      await releaseDrainLocks(client, held);
      if (wakeOthers) await wakeListeners(client, held);
    } catch (error) {
      this.#log.debug('could not release drain locks', { error: (error as Error).message });
    }
  }

  async #skippedProducersDone(): Promise<boolean> {
    const client = this.#client;
    // Without a LISTEN connection there is nothing to wait for: the reconnect settles again.
    if (!client) return true;
    try {
      return await skippedProducersDone(client, this.#filter.channels);
    } catch (error) {
      this.#log.debug('could not check for producers that skipped their NOTIFY', { error: (error as Error).message });
      return true;
    }
  }

  async #scheduleRetry(): Promise<void> {
    const due = await nextDueInMs(this.#sequelize, this.#filter);
    if (due === null || this.#stopping) return;
    // Due now yet not claimed: another listener holds those rows. Look again later in case it dies.
    const delay = due <= 0 ? HELD_ROWS_RECHECK_MS : Math.ceil(due) + 5;
    this.#retryTimer = setTimeout(() => this.wake(), Math.min(delay, 2 ** 31 - 1));
    this.#retryTimer.unref?.();
  }
}
