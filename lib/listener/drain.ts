/**
 * The drain: claims batches until there is nothing left. Its rules and modes are the pure step
 * function of lib/listener/drain-machine.ts; this performs its actions (claims through the batch
 * runner, the drain locks, waits) and tells it what came of them. Wake-ups while a drain runs fold
 * into one more pass; after it, a timer looks again when the next retry comes due.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sequelize } from 'sequelize';
import type { LibraryObjects } from '../db/objects';
import { nextDueInMs } from '../db/store';
import { errorText } from '../error-text';
import { SinkUnavailableError } from '../errors';
import type { Logger } from '../ops/logger';
import type { DrainLocks } from './drain-locks';
import { type DrainAction, type DrainFacts, type DrainReply, type DrainTiming, afterClaim, drainRetryDelayMs, nextDrain, startDrain } from './drain-machine';
import type { StatsCounter } from './stats';
import type { ClaimScope, EventSink, Lifetime } from './parts';

/**
 * While a listener waits for producers that skipped their NOTIFY to commit (after it lets go of its
 * drain locks, or starts), it looks again after 5 ms, doubling up to 1 s; after settling 1 s without
 * seeing every skipping producer end, it claims at each look anyway.
 */
const DRAIN_TIMING: DrainTiming = { settleFirstMs: 5, settleMaxMs: 1000, settleBoundMs: 1000 };

/** How soon to look again at due rows that another listener holds locked. */
const HELD_ROWS_RECHECK_MS = 1000;
/** After this many drains in a row fail, the listener is failing: it logs so once, and is not ready. */
export const FAILING_AFTER = 3;

/** One claim transaction (BatchRunner.batch): how many notifications it claimed. */
export interface Claimer {
  batch(slot: number): Promise<number>;
}

/** What the drain works with. */
export interface DrainParts {
  readonly sequelize: Sequelize;
  readonly objects: LibraryObjects;
  readonly claimer: Claimer;
  readonly locks: DrainLocks;
  readonly scope: ClaimScope;
  readonly options: { readonly batchSize: number; readonly concurrency: number; readonly minDelayMs: number; readonly maxDelayMs: number };
  readonly stats: StatsCounter;
  readonly events: EventSink;
  readonly log: Logger;
  readonly lifetime: Lifetime;
}

/** What a round of claims found: its last claims (`claimed`, `full`) as one claim's result, and the rows claimed in all. */
interface RoundResult {
  claimed: number;
  full: boolean;
  total: number;
}

export class Drain {
  readonly #parts: DrainParts;
  /** A wake-up (NOTIFY, `wake()`) came in since the last claim began. */
  #pending = false;
  /** Set when producers may have skipped a NOTIFY this listener must make up for (see drain-machine.ts). */
  #settle = true;
  #draining: Promise<void> | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  /** Rows claimed by this listener's batches, for drain:end. */
  #claimedTotal = 0;
  #failuresInARow = 0;

  /** Drains that failed in a row (0 once one succeeds): FAILING_AFTER or more, the listener is failing. */
  get failuresInARow(): number {
    return this.#failuresInARow;
  }

  constructor(parts: DrainParts) {
    this.#parts = parts;
  }

  /** Asks for a drain; several requests while one runs fold into one more pass. */
  wake(): void {
    if (this.#parts.lifetime.stopping || this.#parts.scope.claimable.channels.length === 0) return;
    this.#pending = true;
    if (!this.#draining) {
      this.#draining = this.#drain().finally(() => {
        this.#draining = null;
        // A wake-up that came in after the last claim (e.g. a NOTIFY committed by our own callback) starts another pass.
        if (this.#pending) this.wake();
      });
    }
  }

  /** Resolves when no drain is running. */
  async idle(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  /** Producers may have skipped a NOTIFY (nobody listened, or a lock was free): the next drain waits for them. */
  owesSettle(): void {
    this.#settle = true;
  }

  /** No more retries; resolves once the drain in hand (its batch) is done. */
  async stop(): Promise<void> {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#draining;
  }

  async #drain(): Promise<void> {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const before = this.#parts.stats.snapshot();
    const started = { at: Date.now(), claimed: this.#claimedTotal };
    this.#parts.events.tell('drain:start');
    try {
      for (let step = startDrain(DRAIN_TIMING, this.#facts()); !this.#parts.lifetime.stopping;) {
        const reply = await this.#perform(step.action);
        if (!reply) break;
        step = nextDrain(step, reply, DRAIN_TIMING, this.#facts());
      }
      if (!this.#parts.lifetime.stopping) await this.#scheduleRetry();
      if (this.#failuresInARow >= FAILING_AFTER) this.#parts.log.info('drains succeed again', { event: 'drain-recovered', failed: this.#failuresInARow });
      this.#failuresInARow = 0;
    } catch (error) {
      // A lost pool connection or a database restart: keep the rows (the transaction rolled back) and try again.
      this.#failuresInARow++;
      this.#parts.log.error('drain failed; retrying shortly', { event: 'drain-failed', error: errorText(error), err: error });
      if (this.#failuresInARow === FAILING_AFTER) {
        this.#parts.log.error(`${FAILING_AFTER} drains in a row failed: this listener processes nothing until that is fixed, and says it is not ready (/readyz)`, {
          event: 'drain-failing', err: error,
        });
      }
      this.#parts.events.reportError(error);
      if (!this.#parts.lifetime.stopping) {
        // Jittered (half to one and a half times): listeners whose drains failed together (a server
        // restart) do not retry in step, each claim meeting the other's at the same instant.
        const delay = drainRetryDelayMs(this.#failuresInARow, error instanceof SinkUnavailableError, this.#parts.options);
        this.#retryTimer = setTimeout(() => this.wake(), delay * (0.5 + Math.random()));
      }
    } finally {
      const after = this.#parts.stats.snapshot();
      this.#parts.events.tell('drain:end', {
        claimed: this.#claimedTotal - started.claimed,
        processed: after.processed - before.processed,
        failed: after.failed - before.failed,
        durationMs: Date.now() - started.at,
      });
    }
  }

  #facts(): DrainFacts {
    return { pending: this.#pending, holdingLocks: this.#parts.locks.holding, settleOwed: this.#settle, now: Date.now() };
  }

  /** Performs one of the drain's actions; null for 'finish'. */
  async #perform(action: DrainAction): Promise<DrainReply | null> {
    switch (action.do) {
      case 'claim': {
        if (action.settled) this.#settle = false; // one more claim sees the skipped producers' rows
        this.#pending = false;
        return { to: 'claim', ...(await this.#round()) };
      }
      case 'claim-while-settling': {
        const claimed = await this.#batch(0);
        if (claimed > 0) this.#parts.log.debug('claimed while producers that skipped their NOTIFY are still open', { event: 'claimed-after-skip', claimed });
        return { to: 'claim-while-settling', claimed, full: claimed === this.#parts.options.batchSize };
      }
      case 'take-drain-locks':
        await this.#parts.locks.take(action.backlog);
        return { to: 'take-drain-locks' };
      case 'release-drain-locks':
        await this.#parts.locks.release(false);
        this.#settle = true;
        return { to: 'release-drain-locks' };
      case 'check-skipped':
        return { to: 'check-skipped', done: await this.#parts.locks.skippedProducersDone() };
      case 'wait':
        await sleep(action.ms);
        return { to: 'wait' };
      case 'finish':
        return null;
    }
  }

  /**
   * One claim with `concurrency` 1. With more, that many claim loops at once (#loop), until all of
   * them find the queue drained.
   */
  async #round(): Promise<RoundResult> {
    const { batchSize, concurrency } = this.#parts.options;
    if (concurrency === 1) {
      const claimed = await this.#batch(0);
      return { claimed, full: claimed === batchSize, total: claimed };
    }
    const startedAt = this.#claimedTotal;
    // Every loop ends before the drain goes on (or fails): none is left claiming behind it.
    const settled = await Promise.allSettled(Array.from({ length: concurrency }, (_, slot) => this.#loop(slot)));
    const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) throw failed.reason;
    const last = settled.map((result) => (result as PromiseFulfilledResult<{ claimed: number; full: boolean }>).value);
    return { claimed: last.reduce((sum, result) => sum + result.claimed, 0), full: last.some((result) => result.full), total: this.#claimedTotal - startedAt };
  }

  /**
   * A claim loop of a round: claims again while its claims come back full or a wake-up came in
   * meanwhile, taking the drain locks on a backlog (afterClaim, as the drain does).
   */
  async #loop(slot: number): Promise<{ claimed: number; full: boolean }> {
    for (let streak = 0; ;) {
      const claimed = await this.#batch(slot);
      const full = claimed === this.#parts.options.batchSize;
      if (this.#parts.lifetime.stopping) return { claimed, full };
      const next = afterClaim(streak, claimed, full);
      if (next.takeLocks) await this.#parts.locks.take(full);
      streak = next.streak;
      if (full) continue;
      if (this.#pending) {
        this.#pending = false;
        continue;
      }
      return { claimed, full };
    }
  }

  async #batch(slot: number): Promise<number> {
    const claimed = await this.#parts.claimer.batch(slot);
    this.#claimedTotal += claimed;
    return claimed;
  }

  async #scheduleRetry(): Promise<void> {
    const { claimable } = this.#parts.scope;
    if (claimable.channels.length === 0) return;
    const due = await nextDueInMs(this.#parts.objects, this.#parts.sequelize, claimable);
    if (due === null || this.#parts.lifetime.stopping) return;
    // Due now yet not claimed: another listener holds those rows. Look again later in case it dies.
    const delay = due <= 0 ? HELD_ROWS_RECHECK_MS : Math.ceil(due) + 5;
    this.#retryTimer = setTimeout(() => this.wake(), Math.min(delay, 2 ** 31 - 1));
    this.#retryTimer.unref?.();
  }
}
