/**
 * One pass of a claim transaction, in named steps: claim a batch and record it in flight (fold
 * the updates of coalescing channels into it), run each message's callbacks (one at a time, several
 * at once, or a channel's batch callbacks), delete what succeeded and record what failed, commit,
 * then run the after-commit hooks. The batch runner (lib/listener/batch-runner.ts) runs passes
 * until one commits: a fast one first, a careful one when a callback fails.
 */
import type { Sequelize, Transaction } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import { markInflight } from '../db/inflight';
import type { LibraryObjects } from '../db/objects';
import { type ClaimedRow, deleteProcessed, foldUpdates, recordFailure, settleHeads } from '../db/store';
import { claimStatement } from '../db/claim';
import { CallbackTimeoutError, SinkUnavailableError } from '../errors';
import type { Logger } from '../ops/logger';
import { type AfterCommitHook, type CallbackRunner, type GroupItem, redirectAfterCommit } from './callbacks';
import type { ListenerChannels } from './channel-set';
import type { ClaimCursors } from './claim-cursors';
import { CallbackFailed, GroupFailed, failureRecord, splitKey } from './failures';
import { type QueryFn, oneQueryAtATime } from './query-guards';
import type { ClaimScope, ClientSource, HolderKeys } from './parts';
import type { Failure } from './types';
import { type Overrun, chargeOverruns } from './overrun';
import { openWithClaim } from './open-claim';
import { runAtOnce } from './run-at-once';

/** What a claim pass works with. */
export interface ClaimPassParts {
  readonly sequelize: Sequelize;
  readonly objects: LibraryObjects;
  readonly channels: ListenerChannels;
  readonly callbacks: CallbackRunner;
  readonly options: { readonly batchSize: number; readonly callbackConcurrency: number };
  readonly scope: ClaimScope;
  /** Where each claim loop's walks resume (lib/listener/claim-cursors.ts). */
  readonly cursors: ClaimCursors;
  readonly holders: HolderKeys;
  readonly connection: ClientSource;
  readonly log: Logger;
}

/** One claim transaction's result. */
export interface BatchOutcome {
  claimed: number;
  processed: string[];
  /** The channel of each processed id, in the same order. */
  processedChannels: string[];
  failures: Failure[];
  /** Claimed rows a dead process held: run alone once this batch has committed. */
  suspects: ClaimedRow[];
}

/** A unit of callbacks (a message, or a batch callback's messages) run on the pass's transaction. */
type Unit = (t: Transaction) => Promise<void>;

export class ClaimPass {
  readonly #parts: ClaimPassParts;
  /** null: the fast pass, no savepoints. Otherwise the careful pass: a savepoint per message, and the failures already known. */
  readonly #known: ReadonlyMap<string, unknown> | null;
  /** The claim loop's holder key (none before the first connection's set-up). */
  readonly #holder: number | undefined;
  readonly #slot: number;
  readonly #processed: string[] = [];
  readonly #failures: Failure[] = [];
  readonly #suspects: ClaimedRow[] = [];
  readonly #afterCommit: AfterCommitHook[] = [];
  /** Messages whose callbacks ran past their time limit (the event loop was blocked): charged if the transaction is lost. */
  readonly #overruns: Overrun[] = [];
  /** Coalescing channels: the ids of the updates folded into each claimed head. */
  #folded = new Map<string, string[]>();
  #touched = 0;

  constructor(parts: ClaimPassParts, known: ReadonlyMap<string, unknown> | null, slot: number) {
    this.#parts = parts;
    this.#known = known;
    this.#holder = parts.holders.holders[slot] as number | undefined;
    this.#slot = slot;
  }

  async run(): Promise<BatchOutcome> {
    const { callbacks } = this.#parts;
    await this.#settleOrdered();
    const { transaction, rows } = await this.#claim();
    try {
      await this.#mark(transaction, rows);
      await this.#runRows(transaction, rows);
      await this.#commit(transaction);
      this.#parts.cursors.advance(this.#slot, rows);
    } catch (error) {
      await callbacks.rollback(transaction);
      // Not a callback's failure (that one is recorded by the careful pass): the transaction was lost.
      if (this.#overruns.length && !(error instanceof CallbackFailed || error instanceof GroupFailed)) {
        await chargeOverruns(this.#parts, this.#overruns)
          .catch((chargeError: unknown) => this.#parts.log.warn('could not charge the callbacks that ran past their time limit', { event: 'overrun-charge-failed', err: chargeError }));
      }
      throw error;
    }
    await callbacks.runAfterCommit(this.#afterCommit, null);
    return this.#outcome(rows);
  }

  /** Ordered channels: rows known to wait behind an earlier one are marked first, outside the batch. */
  async #settleOrdered(): Promise<void> {
    const { channels, scope, objects, sequelize, log } = this.#parts;
    const ordered = channels.ordered.size ? scope.claimable.channels.filter((name) => channels.ordered.has(name)) : [];
    if (!ordered.length || this.#known) return;
    await settleHeads(objects, sequelize, ordered)
      .catch((error: unknown) => log.debug('could not mark waiting ordered rows', { event: 'settle-failed', err: error }));
  }

  /** Opens the batch's transaction with its claim (one round trip); rolled back if that fails. */
  async #claim(): Promise<{ transaction: Transaction; rows: ClaimedRow[] }> {
    const { objects, sequelize, callbacks, channels, cursors } = this.#parts;
    const filter = this.#parts.scope.claimable;
    const resume = cursors.resume(this.#slot, filter);
    const claim = claimStatement(objects, filter, this.#parts.options.batchSize, { holder: this.#holder ?? 0, timeoutMs: channels.claimTimeoutMs, resume });
    const { transaction, rows, claimMs } = await openWithClaim(sequelize, claim, callbacks);
    // (The claim's own time: not the wait for a pool connection, which the app's traffic may set.)
    if (!resume) cursors.walked(this.#slot, claimMs);
    return { transaction, rows };
  }

  /** Marks the batch in flight, and folds coalescing channels' pending updates into their heads. */
  async #mark(transaction: Transaction, rows: readonly ClaimedRow[]): Promise<void> {
    const { objects, sequelize, callbacks, channels, connection } = this.#parts;
    const holder = this.#holder;
    // Committed before any callback runs: if this process dies now, the next claim knows these ids.
    if (rows.length && holder !== undefined) {
      const ids = rows.map((row) => row.id);
      await callbacks.library(transaction, 'in-flight marker', markInflight(objects, connection.client ?? sequelize, holder, ids, rows[0].xact ?? null, this.#parts.holders.backend));
    }
    // Coalescing channels: a row's pending updates fold into the one claimed (deleted with it).
    const coalescing = channels.coalescing.size ? rows.filter((row) => !row.suspect && channels.coalescing.has(row.channel)) : [];
    if (coalescing.length) this.#folded = await callbacks.library(transaction, 'fold', foldUpdates(objects, sequelize, transaction, coalescing));
  }

  /**
   * Runs the claimed rows' callbacks: one message at a time, or with callbackConcurrency (the fast
   * pass) several at once after the loop; messages of channels with batch callbacks, by channel in
   * claim order, after the others. Suspects are set aside, to run alone after the commit.
   */
  async #runRows(transaction: Transaction, rows: readonly ClaimedRow[]): Promise<void> {
    const known = this.#known;
    const groups = new Map<AnyChannel, GroupItem[]>();
    const atOnce: Array<() => Promise<void>> | null = !known && this.#parts.options.callbackConcurrency > 1 ? [] : null;
    this.#touched = Date.now();
    for (const row of rows) {
      if (row.suspect) {
        this.#suspects.push(row);
        continue;
      }
      const channel = this.#parts.channels.get(row.channel);
      let message: unknown;
      try {
        message = this.#parts.channels.messageOf(channel, row, row.attempts + 1);
      } catch (error) {
        // A malformed payload ran no callback and wrote nothing: no savepoint needed to keep it.
        await this.#fail(transaction, row, channel, error);
        continue;
      }
      if (known?.has(row.id)) {
        await this.#fail(transaction, row, channel, known.get(row.id));
        continue;
      }
      if (this.#parts.channels.takesBatches(channel.name)) {
        let group = groups.get(channel);
        if (!group) groups.set(channel, group = []);
        group.push({ row, message, attempt: row.attempts + 1 });
        continue;
      }
      const unit = () => this.#runMessage(transaction, row, channel, message);
      if (atOnce) atOnce.push(unit);
      else {
        await this.#touch(transaction);
        await unit();
      }
    }
    if (atOnce?.length) await this.#runAtOnce(transaction, atOnce);
    for (const [channel, items] of groups) await this.#runGroup(transaction, channel, items);
  }

  /** One message's callbacks: processed, or (careful) its failure recorded. */
  async #runMessage(transaction: Transaction, row: ClaimedRow, channel: AnyChannel, message: unknown): Promise<void> {
    const started = performance.now();
    const timeoutMs = this.#parts.channels.timeoutOf(channel);
    try {
      await this.#runMessageUnit(transaction, row, channel, message);
    } finally {
      const tookMs = performance.now() - started;
      if (tookMs > timeoutMs) this.#overruns.push({ row, channel, timeoutMs, tookMs });
    }
  }

  async #runMessageUnit(transaction: Transaction, row: ClaimedRow, channel: AnyChannel, message: unknown): Promise<void> {
    const failure = await this.#runUnit(transaction, (t) => this.#parts.callbacks.run(channel, message, t, row.attempts + 1, row, this.#afterCommit), (error) => new CallbackFailed(row.id, error));
    if (failure) await this.#fail(transaction, row, channel, failure.error);
    else this.#processed.push(row.id);
  }

  /**
   * The fast pass with callbackConcurrency: the messages at once, their queries taking turns on the
   * transaction's connection. A failure fails the fast pass (#runUnit throws): the batch is redone
   * one message at a time.
   */
  async #runAtOnce(transaction: Transaction, units: ReadonlyArray<() => Promise<void>>): Promise<void> {
    const { callbacks } = this.#parts;
    callbacks.sharedAfterCommit.add(transaction);
    const restore = redirectAfterCommit(transaction, (hook) => this.#afterCommit.push(hook));
    const connection = (transaction as unknown as { connection: { query: QueryFn } }).connection;
    const ownQuery = oneQueryAtATime(connection);
    try {
      await runAtOnce(units, this.#parts.options.callbackConcurrency);
    } finally {
      ownQuery();
      restore();
      callbacks.sharedAfterCommit.delete(transaction);
    }
  }

  /** A channel's batch callbacks: all at once, unless a timeout said to split it; a careful pass splits a group that throws. */
  async #runGroup(transaction: Transaction, channel: AnyChannel, items: readonly GroupItem[]): Promise<void> {
    const { callbacks } = this.#parts;
    const known = this.#known;
    await this.#touch(transaction);
    if (!known?.has(splitKey(channel.name)) && !(known && items.length === 1)) {
      const failure = await this.#runUnit(transaction, (t) => callbacks.runBatch(channel, items, t, this.#afterCommit),
        (error) => new GroupFailed(channel.name, error instanceof CallbackTimeoutError));
      if (!failure) {
        this.#processed.push(...items.map((item) => item.row.id));
        return;
      }
    }
    // One message at a time, so that the one that fails fails alone.
    for (const item of items) {
      await this.#touch(transaction);
      const failure = await this.#runUnit(transaction, (t) => callbacks.runBatch(channel, [item], t, this.#afterCommit), (error) => new CallbackFailed(item.row.id, error));
      if (failure) await this.#fail(transaction, item.row, channel, failure.error);
      else this.#processed.push(item.row.id);
    }
  }

  /**
   * Runs one unit in a savepoint when careful, on the transaction when not. Resolves the error of a
   * careful unit that failed (rolled back to its savepoint), or null; throws `failed(error)` to have
   * the batch run again, carefully.
   */
  async #runUnit(transaction: Transaction, work: Unit, failed: (error: unknown) => Error): Promise<{ error: unknown } | null> {
    const { sequelize, callbacks } = this.#parts;
    const savepoint = this.#known ? await sequelize.transaction({ transaction }) : null;
    try {
      await work(savepoint ?? transaction);
      if (savepoint) await savepoint.commit();
      return null;
    } catch (error) {
      // The callback may still be using the transaction: abandon all of it.
      if (error instanceof CallbackTimeoutError) throw failed(error);
      // Where a relay sends messages is down: no message's fault, so none is charged (the drain fails and is retried).
      if (error instanceof SinkUnavailableError) throw error;
      // Only a failure of this transaction's own connection is connection loss: no attempt is charged.
      if (!(await callbacks.connectionAlive(transaction))) throw error;
      if (!savepoint) throw failed(error);
      await sequelize.getQueryInterface().rollbackTransaction(savepoint, {});
      (savepoint as { finished?: string }).finished = 'rollback';
      return { error };
    }
  }

  async #fail(transaction: Transaction, row: ClaimedRow, channel: AnyChannel, error: unknown): Promise<void> {
    const { objects, sequelize, callbacks } = this.#parts;
    const { failedForGood } = await callbacks.library(transaction, 'failure record', recordFailure(objects, sequelize, transaction, failureRecord(row, channel, error)));
    this.#failures.push({ id: row.id, channel: row.channel, error, failedForGood });
  }

  /**
   * The server ends a transaction idle for timeoutMs + 5 s. Callbacks that never query (an HTTP
   * call, an e-mail) leave a fast batch idle across all of them: touch it between messages.
   */
  async #touch(transaction: Transaction): Promise<void> {
    if (!this.#known && Date.now() - this.#touched > this.#parts.channels.claimTimeoutMs / 2) {
      await this.#parts.callbacks.library(transaction, 'keep-alive', this.#parts.sequelize.query('SELECT 1', { transaction }));
      this.#touched = Date.now();
    }
  }

  /** Deletes what was processed (a processed head takes the updates folded into it along), and commits. */
  async #commit(transaction: Transaction): Promise<void> {
    const { objects, sequelize, callbacks } = this.#parts;
    const processed = this.#processed;
    if (this.#folded.size) processed.splice(0, processed.length, ...processed.flatMap((id) => [id, ...(this.#folded.get(id) ?? [])]));
    await callbacks.library(transaction, 'delete', deleteProcessed(objects, sequelize, transaction, processed));
    await callbacks.library(transaction, 'commit', transaction.commit());
  }

  #outcome(rows: readonly ClaimedRow[]): BatchOutcome {
    const channelOf = new Map(rows.map((row) => [row.id, row.channel]));
    for (const [head, ids] of this.#folded) for (const id of ids) channelOf.set(id, channelOf.get(head)!);
    const processed = this.#processed;
    return { claimed: rows.length, processed, processedChannels: processed.map((id) => channelOf.get(id)!), failures: this.#failures, suspects: this.#suspects };
  }
}
