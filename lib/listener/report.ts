/**
 * What a listener says of itself in the database: its host and process id,
 * since when it runs, and per channel its counts and the highest lag of the messages it started
 * within the last minute. Written on its LISTEN connection when it connects, and then every 5 s
 * while it processes (an idle listener writes nothing: W4 counts its statements), so
 * `pgpubsub status`, the metrics and the dashboard, in any process on any host, read the same.
 * A report that fails is logged and tried again at the next one: it never stops processing.
 */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import type { Client } from 'pg';
import type { LibraryObjects } from '../db/objects';
import { errorSummary } from '../error-text';
import type { ListenerEvents } from './types';
import type { Logger } from '../ops/logger';

export const REPORT_EVERY_MS = 5000;
/** The lag a report gives is the highest of this many report intervals (a minute). */
const LAG_INTERVALS = 12;

/** One channel in a report (`listener.channels` in the database). */
export interface ChannelReport {
  /** The highest lag of the messages started within the last minute, in ms; null when none started. */
  lagMs: number | null;
  processed: number;
  failed: number;
}

interface Tally {
  /** Per report interval, the highest lag seen (newest last). */
  lags: (number | null)[];
  processed: number;
  failed: number;
}

export class ListenerReport {
  readonly #objects: LibraryObjects;
  readonly #log: Logger;
  readonly #startedAt = new Date();
  readonly #tallies = new Map<string, Tally>();
  #warned = false;
  /** Something happened since the last report. */
  #dirty = false;

  constructor(objects: LibraryObjects, log: Logger, channels: readonly string[], events: EventEmitter<ListenerEvents>) {
    this.#objects = objects;
    this.#log = log;
    for (const channel of channels) this.#tallies.set(channel, { lags: [null], processed: 0, failed: 0 });
    events.on('processed', (_ids, names) => { this.#dirty = true; for (const name of names) this.#tally(name).processed++; });
    events.on('failed', ({ channel }) => { this.#dirty = true; this.#tally(channel).failed++; });
  }

  /** A stored message's lag as its callbacks started (called by the callback runner for each, not through an event). */
  sawLag(channel: string, lagMs: number): void {
    this.#dirty = true;
    const { lags } = this.#tally(channel);
    const last = lags.length - 1;
    if (lagMs > (lags[last] ?? -Infinity)) lags[last] = lagMs;
  }

  #tally(channel: string): Tally {
    let tally = this.#tallies.get(channel);
    if (!tally) this.#tallies.set(channel, tally = { lags: [null], processed: 0, failed: 0 });
    return tally;
  }

  /** The report as stored. */
  channels(): Record<string, ChannelReport> {
    const out: Record<string, ChannelReport> = {};
    for (const [channel, tally] of this.#tallies) {
      const seen = tally.lags.filter((lag): lag is number => lag !== null);
      out[channel] = { lagMs: seen.length ? Math.round(Math.max(...seen)) : null, processed: tally.processed, failed: tally.failed };
    }
    return out;
  }

  /** Every 5 s: a new interval, and a report if anything happened since the last. */
  async tick(client: Client | null): Promise<void> {
    const due = this.#dirty && client !== null;
    if (due) await this.send(client);
    else this.#rotate();
  }

  /** Writes the report on `client`, then starts a new interval. */
  async send(client: Client): Promise<void> {
    this.#dirty = false;
    try {
      await client.query(`SELECT ${this.#objects.reportFunction}($1, $2, $3, $4::jsonb)`, [os.hostname(), process.pid, this.#startedAt, JSON.stringify(this.channels())]);
      this.#warned = false;
    } catch (error) {
      const fields = { event: 'report-failed', err: error };
      // Said once until a report succeeds again (a revoked grant would say it every 5 s).
      if (!this.#warned) this.#log.warn(`could not report this listener's status (pgpubsub status will not show its host, pid and lag): ${errorSummary(error)}`, fields);
      else this.#log.debug('could not report', fields);
      this.#warned = true;
    }
    this.#rotate();
  }

  #rotate(): void {
    for (const tally of this.#tallies.values()) {
      tally.lags.push(null);
      if (tally.lags.length > LAG_INTERVALS) tally.lags.shift();
    }
  }

  /** Deletes its row as it stops (a row left behind is ignored by readers, and deleted by the next report of any listener). */
  async withdraw(client: Client): Promise<void> {
    await client.query(`SELECT ${this.#objects.reportFunction}(NULL, NULL, NULL, NULL)`).catch(() => undefined);
  }
}
