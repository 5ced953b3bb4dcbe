/**
 * The listening locks: one per durable channel, held shared on the LISTEN connection. While a
 * listener holds a channel's, producers count on it to hear their NOTIFYs (and may skip them while
 * it drains). The protocol is explained once, in lib/db/wake-locks.ts.
 */
import type { Client } from 'pg';
import { holdListening } from '../db/wake-locks';
import type { Logger } from '../ops/logger';
import type { ClientSource, Lifetime } from './parts';

/** How often a listener that lacks a channel's listening lock (another role holds it) tries again. */
const LISTENING_RETRY_MS = 1000;

/** What a lock regained asks of the drain: settle for the producers that skipped meanwhile, then drain. */
export interface SettleAndWake {
  owesSettle(): void;
  wake(): void;
}

export class ListeningLocks {
  readonly #connection: ClientSource;
  readonly #log: Logger;
  readonly #lifetime: Lifetime;
  readonly #drain: SettleAndWake;
  /** The listener's durable channels: one listening lock each. */
  readonly #channels: readonly string[];
  /** Channels whose listening lock another session holds exclusively: tried again every LISTENING_RETRY_MS. */
  #missing: string[] = [];
  #retry: NodeJS.Timeout | null = null;

  constructor(connection: ClientSource, log: Logger, lifetime: Lifetime, drain: SettleAndWake, channels: readonly string[]) {
    this.#connection = connection;
    this.#log = log;
    this.#lifetime = lifetime;
    this.#drain = drain;
    this.#channels = channels;
  }

  /** Takes them on a new connection: only now may producers count on this listener. */
  async hold(client: Client): Promise<void> {
    this.#missing = this.#channels.length ? await holdListening(client, this.#channels) : [];
  }

  /** The connection is in use: try again for the locks it could not take. */
  connected(): void {
    if (this.#missing.length) this.#retryMissing();
  }

  stop(): void {
    if (this.#retry) clearTimeout(this.#retry);
  }

  /**
   * Another session holds a listening lock exclusively (a producer's probe for an instant, or a
   * role that took it): producers NOTIFY meanwhile, so nothing waits. Try again until held, then
   * settle, for producers that skipped while the lock was free.
   */
  #retryMissing(): void {
    if (this.#retry || this.#lifetime.stopping) return;
    let tries = 0;
    const retry = async () => {
      this.#retry = null;
      const client = this.#connection.client;
      if (!client || this.#lifetime.stopping) return;
      try {
        this.#missing = await holdListening(client, this.#missing);
      } catch (error) {
        this.#log.debug('could not take listening locks', { event: 'listening-lock-failed', err: error });
      }
      if (this.#missing.length) {
        // A producer's probe holds it for an instant only: say so once it is plainly held.
        if (++tries === 1) {
          this.#log.warn('another session holds the listening lock of some channels; producers wake this listener meanwhile, trying again every second', { event: 'listening-lock-held', channels: this.#missing });
        }
        this.#retry = setTimeout(() => void retry(), LISTENING_RETRY_MS);
        this.#retry.unref?.();
      } else {
        this.#drain.owesSettle();
        this.#drain.wake();
      }
    };
    this.#retry = setTimeout(() => void retry(), 10);
    this.#retry.unref?.();
  }
}
