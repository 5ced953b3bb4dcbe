/**
 * The listener's periodic work beside the drain: its status report every REPORT_EVERY_MS (written
 * only when something happened), with `failedRetentionMs` the purge of old failures, at start
 * and then hourly, and the watch on cleanup (`cleanupWarnAfterMs`): a warning, once per holder,
 * when something has held back the cleanup of the notification table's dead rows that long (read
 * by the heartbeat's statement where it beats often enough: lib/listener/session.ts heartbeat).
 * Each timer is unref'd: none keeps a process alive.
 */
import type { Sequelize } from 'sequelize';
import type { LibraryObjects } from '../db/objects';
import { purgeFailed } from '../db/store';
import { type CleanupStatus, describeHolder, readCleanup } from '../db/cleanup';
import { quoteLiteral } from '../db/sql-text';
import type { Logger } from '../ops/logger';
import { type ListenerReport, REPORT_EVERY_MS } from './report';
import type { CleanupWatch, ClientSource, Lifetime } from './parts';

/** failedRetentionMs: how often the old failures are purged, and how much one purge deletes at most. */
const RETENTION_EVERY_MS = 3_600_000;
const RETENTION_BATCH = 1000;
const RETENTION_BATCHES = 10;

export class Upkeep implements CleanupWatch {
  readonly #sequelize: Sequelize;
  readonly #objects: LibraryObjects;
  readonly #log: Logger;
  readonly #lifetime: Lifetime;
  #reportTimer: NodeJS.Timeout | null = null;
  #retention: NodeJS.Timeout | null = null;
  #cleanupTimer: NodeJS.Timeout | null = null;
  /** The cleanup watch's settings, and when (performance.now()) cleanup was last read; null while it is off. */
  #cleanupWatch: { warnAfterMs: number; every: number; heartbeatMs: number; lastRead: number } | null = null;
  /** The holder seen last (kind, pid or name, xmin) and since when, by this process's clock. */
  #holder: { key: string; since: number; warned: boolean } | null = null;

  constructor(sequelize: Sequelize, objects: LibraryObjects, log: Logger, lifetime: Lifetime) {
    this.#sequelize = sequelize;
    this.#objects = objects;
    this.#log = log;
    this.#lifetime = lifetime;
  }

  /** Reports every REPORT_EVERY_MS on the LISTEN connection (skipped while it reconnects). */
  startReports(report: ListenerReport, connection: ClientSource): void {
    this.#reportTimer = setInterval(() => {
      if (!this.#lifetime.stopping) void report.tick(connection.client);
    }, REPORT_EVERY_MS);
    this.#reportTimer.unref?.();
  }

  /** failedRetentionMs: a bounded purge now, and again in an hour. */
  async purgeOldFailures(retentionMs: number): Promise<void> {
    this.#retention = null;
    if (this.#lifetime.stopping) return;
    try {
      const purged = await purgeFailed(this.#objects, this.#sequelize, retentionMs, { batch: RETENTION_BATCH, batches: RETENTION_BATCHES });
      if (purged > 0) this.#log.info(`purged ${purged} notification(s) that failed over ${retentionMs} ms ago`, { event: 'failed-purged', count: purged });
    } catch (error) {
      this.#log.warn('could not purge old failed notifications', { event: 'failed-purge-failed', err: error });
    }
    if (this.#lifetime.stopping) return;
    this.#retention = setTimeout(() => void this.purgeOldFailures(retentionMs), RETENTION_EVERY_MS);
    this.#retention.unref?.();
  }

  /**
   * Looks every fifth of `warnAfterMs` (at most every minute) at what holds back cleanup, and warns
   * once per holder when it has done so for `warnAfterMs`: by its transaction's start where the
   * server shows it, else since this listener first saw it. When the heartbeat (every `heartbeatMs`)
   * comes at least that often, its statement reads cleanup too (see wanted()), and the watch sends
   * none of its own: an idle listener's one statement a minute. A finer watch reads on its own.
   */
  watchCleanup(warnAfterMs: number, heartbeatMs = Infinity): void {
    const every = Math.min(60_000, Math.max(200, Math.round(warnAfterMs / 5)));
    this.#cleanupWatch = { warnAfterMs, every, heartbeatMs, lastRead: -Infinity };
    if (heartbeatMs > every) this.#readApart();
  }

  /** Whether the heartbeat about to run should read cleanup: the watch rides it and a read is due by the next. */
  wanted(): boolean {
    const watch = this.#cleanupWatch;
    if (!watch || this.#cleanupTimer || this.#lifetime.stopping) return false;
    return performance.now() - watch.lastRead >= watch.every - watch.heartbeatMs / 2;
  }

  /** What the heartbeat read. */
  saw(status: CleanupStatus): void {
    if (!this.#cleanupWatch) return;
    this.#cleanupWatch.lastRead = performance.now();
    this.#judge(status);
  }

  /** The heartbeat could not read cleanup (a revoked catalog view, say): the watch reads apart, as a finer one does. */
  unreadable(error: unknown): void {
    this.#log.debug('the heartbeat could not read what holds back cleanup; the cleanup watch reads it on its own', { event: 'cleanup-read-failed', err: error });
    if (this.#cleanupWatch && !this.#cleanupTimer) this.#readApart();
  }

  #readApart(): void {
    const watch = this.#cleanupWatch!;
    this.#cleanupTimer = setInterval(() => {
      if (!this.#lifetime.stopping) void this.#lookAtCleanup();
    }, watch.every);
    this.#cleanupTimer.unref?.();
  }

  async #lookAtCleanup(): Promise<void> {
    let status: CleanupStatus;
    try {
      status = await readCleanup(this.#objects, this.#sequelize);
    } catch (error) {
      this.#log.debug('could not read what holds back cleanup', { event: 'cleanup-read-failed', err: error });
      return;
    }
    this.#judge(status);
  }

  #judge({ heldBackBy: holder, deadRows }: CleanupStatus): void {
    const warnAfterMs = this.#cleanupWatch!.warnAfterMs;
    if (!holder) {
      this.#holder = null;
      return;
    }
    const key = `${holder.kind}:${holder.pid ?? holder.name}:${holder.xmin}`;
    if (this.#holder?.key !== key) this.#holder = { key, since: Date.now(), warned: false };
    const heldMs = holder.openMs ?? Date.now() - this.#holder.since;
    if (this.#holder.warned || heldMs < warnAfterMs) return;
    this.#holder.warned = true;
    const minutes = Math.round(heldMs / 6000) / 10;
    this.#log.warn(`cleanup of the notification table has been held back for ${minutes} min by ${describeHolder(holder)}: `
      + `${deadRows} dead row(s) stay in the table, and every claim steps over them. End it if it is stuck`
      + `${holder.kind === 'transaction' ? ` (SELECT pg_terminate_backend(${holder.pid}))` : holder.kind === 'prepared transaction' ? ` (ROLLBACK PREPARED ${quoteLiteral(holder.name ?? '')})` : ` (SELECT pg_drop_replication_slot(${quoteLiteral(holder.name ?? '')}))`}`, {
      event: 'cleanup-held-back', kind: holder.kind, backendPid: holder.pid, applicationName: holder.applicationName, user: holder.user,
      holderName: holder.name, heldMs: Math.round(heldMs), xminAge: holder.xminAge, deadRows,
    });
  }

  stop(): void {
    for (const timer of [this.#retention, this.#reportTimer, this.#cleanupTimer]) if (timer) clearTimeout(timer);
  }
}
