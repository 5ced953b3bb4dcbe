/**
 * The batch runner: one claim transaction at a time per claim loop. It runs claim passes
 * (lib/listener/claim-pass.ts) until one commits: a fast pass first, then, when a callback throws,
 * a careful pass with that failure known. It reports what the batch did, and runs alone, charged
 * first, the notifications a dead process held (lib/listener/run-alone.ts). The drain
 * (lib/listener/drain.ts) decides when to claim.
 */
import { pruneDeadMarkers } from '../db/inflight';
import { type BatchOutcome, ClaimPass, type ClaimPassParts } from './claim-pass';
import { CallbackFailed, GroupFailed, reportFailures, splitKey } from './failures';
import { type AloneParts, runAlone } from './run-alone';
import type { ClaimedRow } from '../db/store';
import type { Lifetime } from './parts';

/** What the batch runner works with. */
export interface BatchRunnerParts extends ClaimPassParts, AloneParts {
  readonly options: ClaimPassParts['options'] & { readonly savepoints: 'on-failure' | 'always' };
  readonly lifetime: Lifetime;
}

export class BatchRunner {
  readonly #parts: BatchRunnerParts;
  /** Claim loops with a batch in hand (see #alone). */
  #inBatch = 0;
  /** Set while notifications run alone: no claim loop claims meanwhile. */
  #aloneTurn: Promise<void> | null = null;

  constructor(parts: BatchRunnerParts) {
    this.#parts = parts;
  }

  /**
   * One claim transaction; returns how many notifications it claimed. By default the batch runs
   * without savepoints (two round trips less per message); if a callback throws, the transaction
   * rolls back and the batch is claimed again in careful mode, a savepoint per message, where the
   * failed message is recorded for retry without running again. The messages before it in the
   * batch do run again: their database writes were rolled back, so exactly-once holds for those;
   * their other effects were at-least-once anyway. `savepoints: 'always'` avoids such re-runs.
   * A callback that times out abandons the whole transaction (its callback may still be using it),
   * in either mode, and the batch is claimed again with that failure known too.
   */
  async batch(slot = 0): Promise<number> {
    // Nothing is claimed while a notification runs alone (see #alone).
    while (this.#aloneTurn) await this.#aloneTurn;
    this.#inBatch++;
    let outcome: BatchOutcome;
    try {
      outcome = await this.#passes(slot);
    } finally {
      this.#inBatch--;
    }
    this.#report(outcome);
    if (outcome.suspects.length) await this.#runSuspects(outcome.suspects, slot);
    return outcome.claimed;
  }

  /** Claim passes until one commits, each careful pass knowing the failures of those before it. */
  async #passes(slot: number): Promise<BatchOutcome> {
    let known: Map<string, unknown> | null = this.#parts.options.savepoints === 'always' ? new Map() : null;
    for (;;) {
      try {
        return await new ClaimPass(this.#parts, known, slot).run();
      } catch (error) {
        if (error instanceof GroupFailed) {
          // Run again carefully: the group in a savepoint (split into single messages if it throws),
          // or, after a timeout, split from the start.
          known ??= new Map();
          if (error.split) known.set(splitKey(error.channel), true);
          continue;
        }
        if (!(error instanceof CallbackFailed)) throw error;
        known ??= new Map();
        known.set(error.id, error.error);
      }
    }
  }

  #report({ claimed, processed, processedChannels, failures, suspects }: BatchOutcome): void {
    const { stats, log, events } = this.#parts;
    stats.batchDone(processed.length);
    // Per batch: at debug, so that a busy listener's info lines stay few.
    if (claimed > 0) log.debug('batch', { event: 'batch', claimed, processed: processed.length, failed: failures.length, suspects: suspects.length });
    if (processed.length) events.tell('processed', processed, processedChannels);
    reportFailures(this.#parts, failures);
  }

  /** Runs the suspects alone; then markers of dead listeners whose rows are all done go (idle heartbeats stay one query). */
  async #runSuspects(suspects: readonly ClaimedRow[], slot: number): Promise<void> {
    await this.#alone(async () => {
      for (const row of suspects) {
        if (this.#parts.lifetime.stopping) break;
        await runAlone(this.#parts, row, slot);
      }
    });
    const { connection, holders, objects, log } = this.#parts;
    const client = connection.client;
    if (client && holders.holders.length) {
      await pruneDeadMarkers(objects, client, holders.holders, holders.backend).catch((error: unknown) => log.debug('could not prune markers', { event: 'prune-failed', err: error }));
    }
  }

  /**
   * Runs `work` (notifications a dead process held, each run alone) while no other claim loop of
   * this listener has a batch in hand: a notification that kills its process then takes nothing
   * else with it. The other loops wait to claim until it is done.
   */
  async #alone(work: () => Promise<void>): Promise<void> {
    while (this.#aloneTurn) await this.#aloneTurn;
    let done!: () => void;
    this.#aloneTurn = new Promise<void>((resolve) => { done = resolve; });
    try {
      while (this.#inBatch > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      await work();
    } finally {
      this.#aloneTurn = null;
      done();
    }
  }
}
