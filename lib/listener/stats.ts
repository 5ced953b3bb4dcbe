/**
 * The listener's counters, in one place: the batch runner, the broadcasts and the connection tell
 * this object what happened, and only it adds to the counts. `listener.stats` is a snapshot of them.
 */
import type { ListenerStats } from './types';

export class StatsCounter {
  #processed = 0;
  #ranAlone = 0;
  #failed = 0;
  #broadcasts = 0;
  #batches = 0;
  #reconnects = 0;

  /** A claim transaction ended (committed, or found nothing): `processed` notifications in it. */
  batchDone(processed: number): void {
    this.#batches++;
    this.#processed += processed;
  }

  /** A notification run alone (one a dead process held) committed. */
  processedAlone(): void {
    this.#processed++;
  }

  /** `n` notifications failed (kept for a retry, or failed for good). */
  failed(n: number): void {
    this.#failed += n;
  }

  /** A notification a dead process held was charged and is about to run alone. */
  ranAlone(): void {
    this.#ranAlone++;
  }

  /** A broadcast's callbacks ran and committed. */
  broadcast(): void {
    this.#broadcasts++;
  }

  /** The LISTEN connection is back. */
  reconnected(): void {
    this.#reconnects++;
  }

  /** The counts now, as a plain object (what `listener.stats` gives, logs and sends to a supervisor). */
  snapshot(): Readonly<ListenerStats> {
    return Object.freeze({
      processed: this.#processed, ranAlone: this.#ranAlone, failed: this.#failed,
      broadcasts: this.#broadcasts, batches: this.#batches, reconnects: this.#reconnects,
    });
  }
}
