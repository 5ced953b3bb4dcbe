/**
 * The drain locks this listener holds on its LISTEN connection while it drains a backlog: with
 * them held, producers skip their NOTIFYs and trust the listener to claim their rows. A beat every
 * DRAIN_BEAT_MS keeps them fresh. The protocol is explained once, in lib/db/wake-locks.ts.
 */
import type { LibraryObjects } from '../db/objects';
import { drainBeat, releaseDrainLocks, skippedProducersDone, takeDrainLocks, wakeListeners } from '../db/wake-locks';
import type { Logger } from '../ops/logger';
import type { ClientSource } from './parts';

/** How often a listener that holds drain locks says so to producers (they trust a lock for DRAIN_BEAT_FRESH_MS, lib/db/protocol.ts). */
const DRAIN_BEAT_MS = 250;
/** At most this often a listener that holds drain locks tries for the ones it lacks, or wakes the others to help with a backlog. */
const DRAIN_LOCK_RETRY_MS = 200;

export class DrainLocks {
  readonly #objects: LibraryObjects;
  readonly #connection: ClientSource;
  readonly #log: Logger;
  /** The listener's durable channels: one drain lock each. */
  readonly #channels: readonly string[];
  /** A listener with a context filter does not claim everything, so it cannot stand in for a NOTIFY. */
  readonly #enabled: boolean;
  #held: string[] = [];
  #triedAt = 0;
  #beat: NodeJS.Timeout | null = null;

  constructor(objects: LibraryObjects, connection: ClientSource, log: Logger, channels: readonly string[], enabled: boolean) {
    this.#objects = objects;
    this.#connection = connection;
    this.#log = log;
    this.#channels = channels;
    this.#enabled = enabled;
  }

  get holding(): boolean {
    return this.#held.length > 0;
  }

  /**
   * Takes the drain locks this listener lacks (at most every DRAIN_LOCK_RETRY_MS). With all of them
   * held and a full batch in hand, wakes the other listeners instead: producers no longer do.
   */
  async take(backlog: boolean): Promise<void> {
    if (!this.#enabled) return;
    const client = this.#connection.client;
    const missing = this.#channels.filter((c) => !this.#held.includes(c));
    if (!client || Date.now() - this.#triedAt < DRAIN_LOCK_RETRY_MS) return;
    if (missing.length === 0 && !backlog) return;
    this.#triedAt = Date.now();
    try {
      if (missing.length) {
        // The beat first: producers trust a drain lock only while it is fresh.
        if (this.#held.length === 0) await drainBeat(this.#objects, client);
        this.#held.push(...await takeDrainLocks(client, missing));
        if (this.#held.length) this.#startBeat();
      } else {
        await wakeListeners(client, this.#held);
      }
    } catch (error) {
      this.#log.debug('could not take drain locks', { event: 'drain-lock-failed', err: error });
    }
  }

  /** Lets go of the drain locks; `wakeOthers` (as it stops): the other listeners take over what is left. */
  async release(wakeOthers: boolean): Promise<void> {
    const client = this.#connection.client;
    const held = this.#held;
    this.forget();
    if (!client) return;
    try {
      await releaseDrainLocks(client, held);
      if (wakeOthers) await wakeListeners(client, held);
    } catch (error) {
      this.#log.debug('could not release drain locks', { event: 'drain-lock-release-failed', err: error });
    }
  }

  /** The connection went (session locks end with it), or a new one starts without any. */
  forget(): void {
    this.#held = [];
    this.stopBeat();
  }

  stopBeat(): void {
    if (this.#beat) clearTimeout(this.#beat);
    this.#beat = null;
  }

  /** Whether every producer that skipped a NOTIFY has committed (true when it cannot tell). */
  async skippedProducersDone(): Promise<boolean> {
    const client = this.#connection.client;
    // Without a LISTEN connection there is nothing to wait for: the reconnect settles again.
    if (!client) return true;
    try {
      return await skippedProducersDone(client, this.#channels);
    } catch (error) {
      this.#log.debug('could not check for producers that skipped their NOTIFY', { event: 'skipped-check-failed', err: error });
      return true;
    }
  }

  #startBeat(): void {
    if (this.#beat) return;
    const beat = () => {
      const client = this.#connection.client;
      if (!client || this.#held.length === 0) {
        this.#beat = null;
        return;
      }
      drainBeat(this.#objects, client).catch((error: unknown) => this.#log.debug('could not beat', { event: 'beat-failed', err: error }));
      this.#beat = setTimeout(beat, DRAIN_BEAT_MS);
      this.#beat.unref?.();
    };
    this.#beat = setTimeout(beat, DRAIN_BEAT_MS);
    this.#beat.unref?.();
  }
}
