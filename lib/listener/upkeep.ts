/**
 * The listener's periodic work beside the drain: its status report every REPORT_EVERY_MS (written
 * only when something happened), and with `failedRetentionMs` the purge of old failures, at start
 * and then hourly. Each timer is unref'd: neither keeps a process alive.
 */
import type { Sequelize } from 'sequelize';
import type { LibraryObjects } from '../db/objects';
import { purgeFailed } from '../db/store';
import { errorSummary } from '../error-text';
import type { Logger } from '../ops/logger';
import { type ListenerReport, REPORT_EVERY_MS } from './report';
import type { ClientSource, Lifetime } from './parts';

/** failedRetentionMs: how often the old failures are purged, and how much one purge deletes at most. */
const RETENTION_EVERY_MS = 3_600_000;
const RETENTION_BATCH = 1000;
const RETENTION_BATCHES = 10;

export class Upkeep {
  readonly #sequelize: Sequelize;
  readonly #objects: LibraryObjects;
  readonly #log: Logger;
  readonly #lifetime: Lifetime;
  #reportTimer: NodeJS.Timeout | null = null;
  #retention: NodeJS.Timeout | null = null;

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
      this.#log.warn('could not purge old failed notifications', { event: 'failed-purge-failed', error: errorSummary(error) });
    }
    if (this.#lifetime.stopping) return;
    this.#retention = setTimeout(() => void this.purgeOldFailures(retentionMs), RETENTION_EVERY_MS);
    this.#retention.unref?.();
  }

  stop(): void {
    for (const timer of [this.#retention, this.#reportTimer]) if (timer) clearTimeout(timer);
  }
}
