/**
 * What a listener keeps on its LISTEN connection, set up again on each new one: the library check
 * and the report of rows nobody here handles (at start), its holder keys, the listening locks, the
 * paused channels, its status report. It answers the connection's hooks: notifications (wake-ups,
 * broadcasts, pause and recover orders), the heartbeat, a loss and a reconnect.
 */
import type { Client, Notification } from 'pg';
import type { LibraryObjects } from '../db/objects';
import { pruneDeadMarkers } from '../db/inflight';
import { libraryProblem } from '../db/library-check';
import { refuseReadOnly } from '../db/writable';
import { dueCheck, pendingSql, storedChannelsSql } from '../db/store';
import { selectBounded } from '../db/select';
import { installedObjects } from '../db/catalog';
import { labelLibrary } from '../triggers/render';
import type { Logger } from '../ops/logger';
import { type BroadcastContext, runBroadcast } from './broadcasts';
import type { ListenerChannels } from './channel-set';
import type { ConnectionHooks } from './connection';
import type { Drain } from './drain';
import type { DrainLocks } from './drain-locks';
import type { Holders } from './holders';
import type { ListeningLocks } from './listening-locks';
import { PAUSE_CHANNEL, RECOVER_CHANNEL } from './control-channels';
import type { PausedChannels } from './paused';
import { bounded } from './query-guards';
import type { ListenerReport } from './report';
import type { StatsCounter } from './stats';
import type { CleanupWatch, ClientSource, EventSink } from './parts';
import { type CleanupRow, toCleanupStatus } from '../db/cleanup';
import { connectionFailureKind } from '../error-text';

/** How far the start-up warning about other channels' stored rows counts each channel's (`more than …` past it). */
const STRAY_COUNT_CAP = 10_000;

/** What the session works with: the listener's other parts. */
export interface SessionParts {
  readonly objects: LibraryObjects;
  readonly connection: ClientSource;
  readonly channels: ListenerChannels;
  readonly paused: PausedChannels;
  readonly listening: ListeningLocks;
  readonly locks: DrainLocks;
  readonly drain: Drain;
  readonly holders: Holders;
  readonly report: ListenerReport;
  readonly broadcasts: BroadcastContext;
  readonly stats: StatsCounter;
  readonly events: EventSink;
  readonly log: Logger;
  readonly cleanup: CleanupWatch;
  readonly options: { readonly concurrency: number; readonly heartbeatMs: number };
}

export class ListenSession implements ConnectionHooks {
  readonly #parts: SessionParts;

  constructor(parts: SessionParts) {
    this.#parts = parts;
  }

  /**
   * At start, the library check and the report of rows nobody here handles; then its holder keys
   * (one per claim loop, the same ones again after a reconnect when free), the pruning of dead
   * listeners' markers, and the listening locks, after which producers count on it.
   */
  async setUp(client: Client, first: boolean): Promise<void> {
    const { objects, holders, listening, paused, report, drain, log } = this.#parts;
    if (first) {
      await this.#checkInstalled(client);
      await this.#reportStrays(client);
      await this.#reportUntriggered(client);
    }
    await holders.take(client, this.#parts.options.concurrency);
    await pruneDeadMarkers(objects, client, holders.holders, holders.backend).catch((error: unknown) => log.debug('could not prune markers', { event: 'prune-failed', err: error }));
    // Only now may producers count on this listener: it hears every NOTIFY from here on.
    await listening.hold(client);
    // After LISTEN: a pause or resume committed from here on reaches it as a NOTIFY.
    if (await paused.read(client)) drain.wake();
    // Who it is, for pgpubsub status (again after a reconnect: a new connection is a new row).
    await report.send(client);
  }

  connected(): void {
    this.#parts.locks.forget();
    // Producers that found nobody listening skipped their NOTIFY: the next drain waits for them.
    this.#parts.drain.owesSettle();
    this.#parts.listening.connected();
  }

  lost(): void {
    this.#parts.locks.forget(); // session locks end with the connection
  }

  reconnected(attempt: number): void {
    this.#parts.stats.reconnected();
    this.#parts.log.info('reconnected; sweeping for notifications sent meanwhile', { event: 'reconnected', attempt });
    this.#parts.events.tell('reconnected', { attempt });
    this.#parts.drain.wake();
  }

  notification(message: Notification): void {
    const { drain, log } = this.#parts;
    if (message.channel === PAUSE_CHANNEL) {
      this.#pauseAnnounced(message.payload ?? '');
      return;
    }
    if (message.channel === RECOVER_CHANNEL) {
      log.info('recovery requested', { event: 'recover-requested' });
      drain.wake();
      return;
    }
    const channel = this.#parts.channels.find(message.channel);
    if (!channel) return;
    if (channel.durable) drain.wake();
    else void runBroadcast(this.#parts.broadcasts, channel, message.payload ?? '');
  }

  /**
   * One query: is anything due? Also the backstop for a pause or resume order this connection
   * missed, and (when the cleanup watch wants it) what holds back cleanup. A server error in that
   * last part, not the connection's, hands the watch back its own reads, and the beat runs without it.
   */
  async heartbeat(client: Client): Promise<void> {
    const { cleanup, objects, paused, drain, options } = this.#parts;
    const withCleanup = cleanup.wanted();
    const { text, values } = dueCheck(objects, paused.filter, { cleanup: withCleanup });
    const limitMs = Math.max(1000, options.heartbeatMs / 2);
    let result;
    try {
      result = await bounded(client.query<{ due: boolean; paused: string[]; cleanup?: CleanupRow | null }>(text, values), limitMs, () => new Error('heartbeat timed out'));
    } catch (error) {
      // A server's error on a live connection (not one that says the connection or the server went).
      if (!withCleanup || connectionFailureKind(error) !== 'server') throw error;
      cleanup.unreadable(error);
      await this.heartbeat(client);
      return;
    }
    const [row] = result.rows;
    if (row && paused.apply(row.paused)) drain.wake();
    if (row?.due) drain.wake();
    if (withCleanup && row) cleanup.saw(toCleanupStatus(row.cleanup));
  }

  /** As it stops, on the connection's last use: its status row and its in-flight markers go. */
  async withdraw(client: Client): Promise<void> {
    await this.#parts.report.withdraw(client);
    await this.#parts.holders.clear(this.#parts.objects, client);
  }

  /** A pause or resume of one of ours: stop claiming it at once, then read the paused channels again. */
  #pauseAnnounced(named: string): void {
    const { paused, drain, log } = this.#parts;
    paused.announced(named);
    const client = this.#parts.connection.client;
    if (!client) return;
    // A resume: what the channel stored meanwhile is drained now.
    void paused.read(client).then((resumed) => { if (resumed || !paused.isPaused(named)) drain.wake(); }, (error: unknown) => {
      log.warn('could not read the paused channels', { event: 'paused-read-failed', err: error });
      paused.restore();
    });
  }

  /** Refuses a database whose library objects are missing, older or newer than this code's (LIBRARY_VERSION). */
  async #checkInstalled(client: Client): Promise<void> {
    const problem = await libraryProblem(client, this.#parts.objects.schema, 'listen');
    if (problem) throw problem;
    if (this.#parts.channels.durable.length) await refuseReadOnly(client);
  }

  /**
   * Warns about each model channel this listener has a callback for but that no installed trigger
   * sends on (in any schema): its table's changes are not recorded, so the callback never runs. The
   * commonest first-hour slip: the library migrated, the trigger migration not.
   */
  async #reportUntriggered(client: Client): Promise<void> {
    const model = this.#parts.channels.all.filter((channel) => channel.kind === 'model');
    if (model.length === 0) return;
    const schema = this.#parts.objects.schema;
    const installed = new Set((await installedObjects(client)).flatMap(({ label }) => (label && labelLibrary(label) === schema ? [label.channel] : [])));
    for (const channel of model) {
      if (installed.has(channel.name)) continue;
      this.#parts.log.warn(`channel '${channel.name}' has a callback here, but no trigger sends on it in this database: changes to ${channel.modelName} `
        + `(${channel.schema}.${channel.table}) are not recorded. Install its trigger: npx pgpubsub migration:generate, then npx sequelize-cli db:migrate `
        + '(or npx pgpubsub triggers sync)', { event: 'no-trigger', channel: channel.name });
    }
  }

  /**
   * Warns about stored rows on channels this listener does not process: they wait for a listener
   * that does. Index-served whatever the backlog: the stored channels found by a skip scan of
   * notification_due (one probe per channel), each one's rows counted up to STRAY_COUNT_CAP from
   * the index (selectBounded: a sequential scan would read the table up to that channel's rows).
   */
  async #reportStrays(client: Client): Promise<void> {
    const n = this.#parts.objects.notificationTable;
    const rows = await selectBounded<{ channel: string; n: number }>(client,
      `WITH RECURSIVE ${storedChannelsSql(n, 'stored', `${pendingSql('s')} AND s.head IS NOT FALSE`)}
       SELECT stored.channel, (SELECT pg_catalog.count(*) FROM (SELECT FROM ${n} AS s WHERE s.channel = stored.channel AND ${pendingSql('s')} AND s.head IS NOT FALSE LIMIT $2) AS c)::int AS n
         FROM stored WHERE stored.channel IS NOT NULL AND NOT (stored.channel = ANY ($1::text[])) ORDER BY stored.channel`,
      [this.#parts.channels.durable, STRAY_COUNT_CAP + 1],
    );
    for (const { channel, n } of rows) {
      const why = this.#parts.channels.strayReason(channel);
      const count = n > STRAY_COUNT_CAP ? `more than ${STRAY_COUNT_CAP}` : String(n);
      this.#parts.log.warn(`${count} stored notification(s) on channel '${channel}' wait for a listener: ${why}`, { event: 'unhandled-stored', channel, count: Math.min(n, STRAY_COUNT_CAP), ...(n > STRAY_COUNT_CAP ? { more: true } : {}) });
    }
  }
}
