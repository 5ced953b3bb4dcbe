/**
 * Paused channels (`pgpubsub channels pause`): claimed by no listener until resumed. This keeps
 * what this listener's claims take (its ClaimScope): its durable channels without the paused ones.
 * It reads them on each new LISTEN connection, when a pause or resume is announced on
 * PAUSE_CHANNEL (lib/listener/control-channels.ts), and with every heartbeat (the backstop for an
 * announcement missed).
 */
import type { Client } from 'pg';
import type { LibraryObjects } from '../db/objects';
import { type ClaimFilter, pausedSql } from '../db/store';
import type { Logger } from '../ops/logger';
import type { ClaimScope } from './parts';

export class PausedChannels implements ClaimScope {
  readonly #objects: LibraryObjects;
  readonly #log: Logger;
  /** The listener's own filter: its durable channels and its context filter. */
  readonly filter: ClaimFilter;
  #claimable: ClaimFilter;
  #paused: string[] = [];

  constructor(objects: LibraryObjects, log: Logger, filter: ClaimFilter) {
    this.#objects = objects;
    this.#log = log;
    this.filter = filter;
    this.#claimable = filter;
  }

  get claimable(): ClaimFilter {
    return this.#claimable;
  }

  isPaused(channel: string): boolean {
    return this.#paused.includes(channel);
  }

  /** Reads which of its channels are paused; true when one was resumed (drain it now). */
  async read(client: Client): Promise<boolean> {
    if (this.filter.channels.length === 0) return false;
    const { rows } = await client.query<{ channel: string }>(pausedSql(this.#objects), [this.filter.channels]);
    return this.apply(rows.map((row) => row.channel));
  }

  /** Claims leave the paused channels out from now on; true when a channel was resumed (drain it now). */
  apply(paused: string[]): boolean {
    const resumed = this.#paused.filter((channel) => !paused.includes(channel));
    const newly = paused.filter((channel) => !this.#paused.includes(channel));
    this.#paused = paused;
    this.#claimable = paused.length ? { ...this.filter, channels: this.filter.channels.filter((c) => !paused.includes(c)) } : this.filter;
    if (newly.length) this.#log.info(`paused: ${newly.join(', ')}; not claiming until resumed`, { event: 'paused', channels: newly });
    if (resumed.length) this.#log.info(`resumed: ${resumed.join(', ')}`, { event: 'resumed', channels: resumed });
    return resumed.length > 0;
  }

  /**
   * A pause or resume of channel `named` was announced: stop claiming it at once, before the
   * wake-ups that follow the announcement start a drain, and until the paused channels are read
   * again (a resume is then undone).
   */
  announced(named: string): void {
    if (this.filter.channels.includes(named) && !this.#paused.includes(named)) {
      this.#claimable = { ...this.#claimable, channels: this.#claimable.channels.filter((c) => c !== named) };
    }
  }

  /** After a failed read: claims go back to what was last read (the heartbeat reads again). */
  restore(): void {
    this.apply(this.#paused);
  }
}
