import { EventEmitter } from 'node:events';
import type { Sequelize } from 'sequelize';
import { type Logger, consoleLogger, toLogger } from '../ops/logger';
import { BatchRunner } from './batch-runner';
import { ClaimCursors } from './claim-cursors';
import { CallbackRunner } from './callbacks';
import { ListenerChannels } from './channel-set';
import { ListenConnection } from './connection';
import { Drain } from './drain';
import { DrainLocks } from './drain-locks';
import { ListenerEventSink } from './events';
import { Holders } from './holders';
import { ListeningLocks } from './listening-locks';
import { type ResolvedListenOptions, resolveListenOptions } from './options';
import { PAUSE_CHANNEL, RECOVER_CHANNEL } from './control-channels';
import { PausedChannels } from './paused';
import { ListenerReport } from './report';
import { ListenSession } from './session';
import { StatsCounter } from './stats';
import type { ListenerEvents, ListenerHost, ListenerStats, ListenOptions } from './types';
import { Upkeep } from './upkeep';

/** The application_name of a listener's LISTEN connection (pg_stat_activity shows it). */
export { LISTENER_APPLICATION_NAME } from './options';
export { PAUSE_CHANNEL, RECOVER_CHANNEL } from './control-channels';

/**
 * A listening process's engine. It holds its own pg.Client for LISTEN (never a pool connection),
 * wakes on NOTIFY, and drains durable notifications in batches through pool transactions: claim
 * with SKIP LOCKED, run each message's callbacks, delete the successes, keep the failures with
 * their error and a backoff, commit once.
 *
 * This class makes its parts, once, and wires them with values and small interfaces
 * (lib/listener/types.ts); none of them holds the listener:
 * - lib/listener/connection.ts keeps the LISTEN connection (connect, LISTEN, reconnect, heartbeat);
 *   lib/listener/session.ts keeps what the listener holds on it (holders.ts: holder keys;
 *   listening-locks.ts; paused.ts: the paused channels) and answers its notifications;
 * - lib/listener/drain.ts performs the drain, whose rules are the pure step function of
 *   lib/listener/drain-machine.ts, with the drain locks of lib/listener/drain-locks.ts;
 * - lib/listener/batch-runner.ts runs one claim transaction (claim-pass.ts) and what a dead process
 *   held, alone (run-alone.ts); lib/listener/callbacks.ts runs callbacks within their time limit;
 *   lib/listener/broadcasts.ts runs broadcasts;
 * - lib/listener/stats.ts counts, lib/listener/report.ts reports the listener's status, and
 *   lib/listener/upkeep.ts runs the timers beside the drain.
 * The wake-up protocol is explained once, in lib/db/wake-locks.ts.
 *
 * Faults it contains (docs/guarantees.md, "Failure model"): a callback that throws or times out is
 * charged an attempt; a lost connection (told by the connection, never by what a callback threw)
 * charges nothing; a message whose process died is run alone next time, its attempt charged first;
 * a payload that can never succeed fails at once.
 *
 * Events: see ListenerEvents.
 */
export class Listener extends EventEmitter<ListenerEvents> {
  readonly #options: ResolvedListenOptions;
  readonly #log: Logger;
  /** Set once by stop(); the parts read it (Lifetime). */
  readonly #life = { stopping: false };
  readonly #stats = new StatsCounter();
  readonly #channels: ListenerChannels;
  readonly #connection: ListenConnection;
  readonly #session: ListenSession;
  readonly #drain: Drain;
  readonly #locks: DrainLocks;
  readonly #listening: ListeningLocks;
  readonly #report: ListenerReport;
  readonly #upkeep: Upkeep;

  constructor(host: ListenerHost, options: ListenOptions = {}) {
    super();
    const { sequelize, objects } = host;
    const log = this.#log = options.logger ? toLogger(options.logger, 'listen({ logger })') : consoleLogger();
    const poolMax = (sequelize as unknown as { config?: { pool?: { max?: number } } }).config?.pool?.max ?? 5;
    const resolved = this.#options = resolveListenOptions(options, poolMax);
    const channels = this.#channels = new ListenerChannels(host, options.channels, resolved.timeoutMs);
    const lifetime = this.#life;
    const stats = this.#stats;
    const events = new ListenerEventSink(this, log);
    const paused = new PausedChannels(objects, log, { channels: channels.durable, context: options.contextFilter });
    const connection = this.#connection = new ListenConnection({
      sequelize, listenConnection: resolved.listenConnection, minDelayMs: resolved.minDelayMs, maxDelayMs: resolved.maxDelayMs, heartbeatMs: resolved.heartbeatMs,
      channels: [...channels.names, RECOVER_CHANNEL, PAUSE_CHANNEL],
    }, log, lifetime);
    const report = this.#report = new ListenerReport(objects, log, channels.names, this);
    const callbacks = new CallbackRunner({ sequelize, host, log, limits: channels, events, lags: report });
    // A listener with a context filter does not claim everything, so it cannot stand in for a NOTIFY.
    const filtered = Boolean(resolved.contextFilter) && Object.keys(resolved.contextFilter ?? {}).length > 0;
    const locks = this.#locks = new DrainLocks(objects, connection, log, channels.durable, !filtered);
    const holders = new Holders();
    const runner = new BatchRunner({
      sequelize, objects, channels, callbacks, options: resolved, scope: paused, cursors: new ClaimCursors(channels.ordered), holders, connection, log, stats, events,
      beforeRunningAlone: options.beforeRunningAlone, lifetime,
    });
    const drain = this.#drain = new Drain({ sequelize, objects, claimer: runner, locks, scope: paused, options: resolved, stats, events, log, lifetime });
    const listening = this.#listening = new ListeningLocks(connection, log, lifetime, drain, channels.durable);
    const broadcasts = { sequelize, callbacks, contextFilter: resolved.contextFilter, log, stats, events };
    const upkeep = this.#upkeep = new Upkeep(sequelize, objects, log, lifetime);
    this.#session = new ListenSession({
      objects, connection, channels, paused, listening, locks, drain, holders, report, broadcasts, stats, events, log, cleanup: upkeep, options: resolved,
    });
  }

  /** The counts so far: a snapshot (processed, ranAlone, failed, broadcasts, batches, reconnects). */
  get stats(): Readonly<ListenerStats> {
    return this.#stats.snapshot();
  }

  /**
   * Checks that the library is installed, connects, LISTENs, reports stored rows no listener here
   * handles, and (with recover) drains what is stored. Resolves once listening.
   */
  async start(): Promise<this> {
    await this.#connection.start(this.#session);
    this.#upkeep.startReports(this.#report, this.#connection);
    this.#log.info('listening', { event: 'listening', channels: this.#channels.names });
    this.#channels.warnUnhandled(this.#log);
    // The first drain starts now, so idle() covers it; handlers attached once listen() resolves still
    // see all of its events, which all follow database round trips.
    if (this.#options.recover) {
      const before = this.#stats.snapshot().processed;
      this.wake();
      void this.idle().then(() => this.#log.info('start-up recovery finished', { event: 'recovered', processed: this.#stats.snapshot().processed - before }));
    }
    if (this.#options.failedRetentionMs !== undefined) void this.#upkeep.purgeOldFailures(this.#options.failedRetentionMs);
    if (this.#options.cleanupWarnAfterMs !== false) this.#upkeep.watchCleanup(this.#options.cleanupWarnAfterMs, this.#options.heartbeatMs);
    return this;
  }

  /** Stops claiming, lets the batch in hand finish, closes the LISTEN connection. */
  async stop(): Promise<void> {
    if (this.#life.stopping) return;
    this.#life.stopping = true;
    this.#upkeep.stop();
    this.#listening.stop();
    this.#locks.stopBeat();
    await this.#drain.stop();
    // Producers skipped their NOTIFYs for us: wake the other listeners, who take over what is left.
    if (this.#locks.holding) await this.#locks.release(true);
    await this.#connection.close((client) => this.#session.withdraw(client));
    this.#log.info('stopped', { event: 'stopped', ...this.#stats.snapshot() });
  }

  /** Listening: started, not stopping, its LISTEN connection up (false while it reconnects). What a readiness probe asks. */
  get listening(): boolean {
    return !this.#life.stopping && this.#connection.client !== null;
  }

  /**
   * Drains that failed in a row, 0 once one succeeds (a lost connection, a role that cannot write).
   * From 3 on the listener processes nothing until that is fixed: a readiness probe says not ready.
   */
  get drainFailures(): number {
    return this.#drain.failuresInARow;
  }

  /** Asks for a drain; several requests while one runs fold into one more pass. */
  wake(): void {
    this.#drain.wake();
  }

  /** Resolves when no drain is running (for tests and graceful shutdown). */
  async idle(): Promise<void> {
    await this.#drain.idle();
  }
}
