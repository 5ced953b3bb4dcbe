/**
 * The batch runner: one claim transaction at a time per claim loop. It claims a batch, records it
 * in flight, runs each message's callbacks (or a channel's batch callbacks) in the claim's
 * transaction, deletes what succeeded and records what failed, and commits; a callback that throws
 * has the batch run again carefully, a savepoint per message. It also runs alone, charged first,
 * the notifications a dead process held. The drain (lib/listener/listener.ts) decides when to claim.
 */
import type { Client } from 'pg';
import type { Sequelize, Transaction } from 'sequelize';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AnyChannel, RetryPolicy } from '../channels/channel';
import { jitteredBackoff } from '../process/backoff';
import { type AfterCommitHook, type CallbackRunner, type GroupItem, type QueryFn, oneQueryAtATime, redirectAfterCommit } from './callbacks';
import type { LibraryObjects } from '../db/objects';
import { errorSummary, errorText } from '../error-text';
import { CallbackTimeoutError, MalformedPayloadError, NonRetryableError } from '../errors';
import { chargeBeforeRunningAlone, markInflight, pruneDeadMarkers } from '../db/inflight';
import type { ResolvedListenOptions } from './options';
import type { Failure, ListenerEvents, ListenerHost, ListenerStats, ListenOptions } from './listener';
import type { Logger } from '../ops/logger';
import { decodeMessage } from '../channels/message';
import { type ClaimFilter, type ClaimedRow, type FailureRecord, claimBatch, deleteProcessed, foldUpdates, lockOne, recordFailure, settleHeads } from '../db/store';

/**
 * Runs `tasks`, at most `limit` at once, in order of start. After a failure it starts no more,
 * waits for those running, and throws: a failure of the connection first (it is no message's
 * fault), else the first failure.
 */
async function runAtOnce(tasks: ReadonlyArray<() => Promise<void>>, limit: number): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const lane = async () => {
    while (next < tasks.length && errors.length === 0) {
      const task = tasks[next++];
      try {
        await task();
      } catch (error) {
        errors.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, lane));
  if (errors.length) throw errors.find((error) => !(error instanceof CallbackFailed)) ?? errors[0];
}

/** A NonRetryableError, also from another copy of this package (compared by name and code). */
function isNonRetryable(error: unknown): boolean {
  return error instanceof NonRetryableError
    || ((error as { name?: unknown })?.name === 'NonRetryableError' && (error as { code?: unknown }).code === 'PGPUBSUB_NON_RETRYABLE');
}

/** Thrown out of a batch to roll it back and run it again carefully, this message's failure known. */
class CallbackFailed extends Error {
  constructor(readonly id: string, readonly error: unknown) {
    super(`a callback failed for notification ${id}; the batch is run again with that failure recorded`);
  }
}

/** A batch callback failed in a fast pass (or timed out): the batch is run again, carefully. */
class GroupFailed extends Error {
  constructor(readonly channel: string, readonly split: boolean) {
    super(`a batch callback on '${channel}' failed; the batch is run again${split ? ', one message at a time' : ' with savepoints'}`);
  }
}

/** The key in a careful pass's known failures saying: run this channel's batch callbacks one message at a time. */
const splitKey = (channel: string) => `split:${channel}`;

/** What a notification that was running alone when its process died gets as its `last_error`. */
const PROCESS_DIED = 'ProcessDied: the listener process died (exit, crash, kill or out of memory) while running this notification alone, after the listener that held it in a batch went away too';

/** The retry delay of a failed notification's `attempt` under its channel's policy. */
function backoffDelay(attempt: number, retry: Required<RetryPolicy>, random = Math.random): number {
  return jitteredBackoff(attempt, retry.backoffMs, retry.maxBackoffMs, random);
}

/** One claim transaction's result. */
interface BatchOutcome {
  claimed: number;
  processed: string[];
  /** The channel of each processed id, in the same order. */
  processedChannels: string[];
  failures: Failure[];
  /** Claimed rows a dead process held: run alone once this batch has committed. */
  suspects: ClaimedRow[];
}

/** What the batch runner needs from its listener. */
export interface BatchRunnerContext {
  readonly sequelize: Sequelize;
  readonly objects: LibraryObjects;
  readonly host: ListenerHost;
  readonly options: ResolvedListenOptions;
  /** The listener's channels, and the filter its claims use (its durable channels, its context filter). */
  readonly channels: readonly AnyChannel[];
  readonly filter: ClaimFilter;
  /** The longest time limit of the listener's durable channels: what the claim sets on the server. */
  readonly claimTimeoutMs: number;
  readonly log: Logger;
  readonly stats: ListenerStats;
  readonly callbacks: CallbackRunner;
  readonly beforeRunningAlone: ListenOptions['beforeRunningAlone'];
  timeoutOf(channel: AnyChannel): number;
  tell<K extends keyof ListenerEvents & string>(event: K, ...args: ListenerEvents[K]): void;
  /** The holder keys of the claim loops (one per `concurrency`), held on the LISTEN connection. */
  holders(): readonly number[];
  /** The LISTEN connection; null while reconnecting. */
  client(): Client | null;
  stopping(): boolean;
}

export class BatchRunner {
  readonly #ctx: BatchRunnerContext;
  readonly #callbacks: CallbackRunner;
  /** Claim loops with a batch in hand (see #alone). */
  #inBatch = 0;
  /** Set while notifications run alone: no claim loop claims meanwhile. */
  #aloneTurn: Promise<void> | null = null;
  /** The listener's channels ordered by row, and those of them that coalesce (fixed for its life). */
  readonly #ordered: ReadonlySet<string>;
  readonly #coalescing: ReadonlySet<string>;

  constructor(ctx: BatchRunnerContext) {
    this.#ctx = ctx;
    const model = ctx.channels.flatMap((c) => (c.kind === 'model' && c.ordering ? [c] : []));
    this.#ordered = new Set(model.map((c) => c.name));
    this.#coalescing = new Set(model.filter((c) => c.coalesce).map((c) => c.name));
    this.#callbacks = ctx.callbacks;
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
    let known: Map<string, unknown> | null = this.#ctx.options.savepoints === 'always' ? new Map() : null;
    let outcome!: BatchOutcome;
    // Nothing is claimed while a notification runs alone (see #alone).
    while (this.#aloneTurn) await this.#aloneTurn;
    this.#inBatch++;
    try {
      for (;;) {
        try {
          outcome = await this.#claimAndRun(known, slot);
          break;
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
    } finally {
      this.#inBatch--;
    }
    const { claimed, processed, processedChannels, failures, suspects } = outcome;
    this.#ctx.stats.batches++;
    this.#ctx.stats.processed += processed.length;
    if (claimed > 0) this.#ctx.log.info('batch', { event: 'batch', claimed, processed: processed.length, failed: failures.length, suspects: suspects.length });
    if (processed.length) this.#ctx.tell('processed', processed, processedChannels);
    this.#reportFailures(failures);
    if (suspects.length) {
      await this.#alone(async () => {
        for (const row of suspects) {
          if (this.#ctx.stopping()) break;
          await this.#runAlone(row, slot);
        }
      });
    }
    // Markers of dead listeners whose rows are all done now go (idle heartbeats stay one query).
    const client = this.#ctx.client();
    if (suspects.length && client && this.#ctx.holders().length) {
      await pruneDeadMarkers(this.#ctx.objects, client, this.#ctx.holders()).catch((error: unknown) => this.#ctx.log.debug('could not prune markers', { event: 'prune-failed', error: errorSummary(error) }));
    }
    return claimed;
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

  #reportFailures(failures: readonly Failure[]): void {
    this.#ctx.stats.failed += failures.length;
    for (const failure of failures) {
      const outcome = failure.failedForGood ? 'failed for good (failed_at set; it will not be claimed again)' : 'kept for retry';
      const log = failure.failedForGood ? this.#ctx.log.error : this.#ctx.log.warn;
      log.call(this.#ctx.log, `callback on '${failure.channel}' failed for notification ${failure.id}; ${outcome}`, { id: failure.id, channel: failure.channel, error: errorSummary(failure.error) });
      this.#ctx.tell('failed', failure);
    }
  }

  #failureRecord(row: ClaimedRow, channel: AnyChannel, error: unknown, precharged = false): FailureRecord {
    return {
      id: row.id,
      error: errorText(error),
      delayMs: backoffDelay(precharged ? row.attempts : row.attempts + 1, channel.retry),
      maxAttempts: channel.retry.maxAttempts,
      // A payload that is not a message of its channel fails the same way every time; a callback
      // can say the same of its own failure.
      permanent: error instanceof MalformedPayloadError || isNonRetryable(error),
      precharged,
    };
  }

  /**
   * `known` null: the fast pass, no savepoints. Otherwise the careful pass: a savepoint per message,
   * and messages whose failure is already known are recorded without running again.
   */
  async #claimAndRun(known: Map<string, unknown> | null, slot: number): Promise<BatchOutcome> {
    const holder = this.#ctx.holders()[slot] as number | undefined;
    const processed: string[] = [];
    const failures: Failure[] = [];
    const suspects: ClaimedRow[] = [];
    const afterCommit: AfterCommitHook[] = [];
    // Ordered channels: rows known to wait behind an earlier one are marked first, outside the batch.
    const ordered = this.#ordered.size ? this.#ctx.filter.channels.filter((name) => this.#ordered.has(name)) : [];
    if (ordered.length && !known) {
      await settleHeads(this.#ctx.objects, this.#ctx.sequelize, ordered)
        .catch((error: unknown) => this.#ctx.log.debug('could not mark waiting ordered rows', { event: 'settle-failed', error: errorSummary(error) }));
    }
    const transaction = await this.#ctx.sequelize.transaction();
    let rows: ClaimedRow[];
    let folded = new Map<string, string[]>();
    try {
      rows = await this.#callbacks.library(transaction, 'claim', claimBatch(this.#ctx.objects, this.#ctx.sequelize, transaction, this.#ctx.filter, this.#ctx.options.batchSize, {
        holder: holder ?? 0, timeoutMs: this.#ctx.claimTimeoutMs,
      }));
      // Committed before any callback runs: if this process dies now, the next claim knows these ids.
      if (rows.length && holder !== undefined) {
        const ids = rows.map((row) => row.id);
        await this.#callbacks.library(transaction, 'in-flight marker', markInflight(this.#ctx.objects, this.#ctx.client() ?? this.#ctx.sequelize, holder, ids));
      }
      // Coalescing channels: a row's pending updates fold into the one claimed (deleted with it).
      const coalescing = this.#coalescing.size ? rows.filter((row) => !row.suspect && this.#coalescing.has(row.channel)) : [];
      if (coalescing.length) folded = await this.#callbacks.library(transaction, 'fold', foldUpdates(this.#ctx.objects, this.#ctx.sequelize, transaction, coalescing));
      const fail = async (row: ClaimedRow, channel: AnyChannel, error: unknown) => {
        const { failedForGood } = await this.#callbacks.library(transaction, 'failure record', recordFailure(this.#ctx.objects, this.#ctx.sequelize, transaction, this.#failureRecord(row, channel, error)));
        failures.push({ id: row.id, channel: row.channel, error, failedForGood });
      };
      /**
       * Runs one unit (a message, or a batch callback's messages) in a savepoint when careful, on
       * the transaction when not. Resolves the error of a careful unit that failed (rolled back to
       * its savepoint), or null; throws `failed(error)` to have the batch run again, carefully.
       */
      const runUnit = async (work: (t: Transaction) => Promise<void>, failed: (error: unknown) => Error): Promise<{ error: unknown } | null> => {
        const savepoint = known ? await this.#ctx.sequelize.transaction({ transaction }) : null;
        try {
          await work(savepoint ?? transaction);
          if (savepoint) await savepoint.commit();
          return null;
        } catch (error) {
          // The callback may still be using the transaction: abandon all of it.
          if (error instanceof CallbackTimeoutError) throw failed(error);
          // Only a failure of this transaction's own connection is connection loss: no attempt is charged.
          if (!(await this.#callbacks.connectionAlive(transaction))) throw error;
          if (!savepoint) throw failed(error);
          await this.#ctx.sequelize.getQueryInterface().rollbackTransaction(savepoint, {});
          (savepoint as { finished?: string }).finished = 'rollback';
          return { error };
        }
      };
      // Messages of channels with batch callbacks, by channel, in claim order: run after the others.
      const groups = new Map<AnyChannel, GroupItem[]>();
      // The fast pass with callbackConcurrency: the messages, to run several at once after the loop.
      const atOnce: Array<() => Promise<void>> | null = !known && this.#ctx.options.callbackConcurrency > 1 ? [] : null;
      // The server ends a transaction idle for timeoutMs + 5 s. Callbacks that never query (an HTTP
      // call, an e-mail) leave a fast batch idle across all of them: touch it between messages.
      let touched = Date.now();
      const touch = async () => {
        if (!known && Date.now() - touched > this.#ctx.claimTimeoutMs / 2) {
          await this.#callbacks.library(transaction, 'keep-alive', this.#ctx.sequelize.query('SELECT 1', { transaction }));
          touched = Date.now();
        }
      };
      for (const row of rows) {
        if (row.suspect) {
          suspects.push(row);
          continue;
        }
        const channel = this.#ctx.channels.find((c) => c.name === row.channel)!;
        let message: unknown;
        try {
          message = decodeMessage(channel, row.payload, row.id);
        } catch (error) {
          // A malformed payload ran no callback and wrote nothing: no savepoint needed to keep it.
          await fail(row, channel, error);
          continue;
        }
        if (known?.has(row.id)) {
          await fail(row, channel, known.get(row.id));
          continue;
        }
        if (this.#ctx.host.batchCallbacks(channel.name).length > 0) {
          let group = groups.get(channel);
          if (!group) groups.set(channel, group = []);
          group.push({ row, message, attempt: row.attempts + 1 });
          continue;
        }
        const unit = async () => {
          const failure = await runUnit((t) => this.#callbacks.run(channel, message, t, row.attempts + 1, row, afterCommit), (error) => new CallbackFailed(row.id, error));
          if (failure) await fail(row, channel, failure.error);
          else processed.push(row.id);
        };
        if (atOnce) atOnce.push(unit);
        else {
          await touch();
          await unit();
        }
      }
      if (atOnce?.length) {
        // A failure fails the fast pass (runUnit throws): the batch is redone one message at a time.
        this.#callbacks.sharedAfterCommit.add(transaction);
        const restore = redirectAfterCommit(transaction, (hook) => afterCommit.push(hook));
        const connection = (transaction as unknown as { connection: { query: QueryFn } }).connection;
        const ownQuery = oneQueryAtATime(connection);
        try {
          await runAtOnce(atOnce, this.#ctx.options.callbackConcurrency);
        } finally {
          ownQuery();
          restore();
          this.#callbacks.sharedAfterCommit.delete(transaction);
        }
      }
      for (const [channel, items] of groups) {
        await touch();
        // All at once, unless a timeout said to split it; a careful pass splits a group that throws.
        if (!known?.has(splitKey(channel.name)) && !(known && items.length === 1)) {
          const failure = await runUnit((t) => this.#callbacks.runBatch(channel, items, t, afterCommit),
            (error) => new GroupFailed(channel.name, error instanceof CallbackTimeoutError));
          if (!failure) {
            processed.push(...items.map((item) => item.row.id));
            continue;
          }
        }
        // One message at a time, so that the one that fails fails alone.
        for (const item of items) {
          await touch();
          const failure = await runUnit((t) => this.#callbacks.runBatch(channel, [item], t, afterCommit), (error) => new CallbackFailed(item.row.id, error));
          if (failure) await fail(item.row, channel, failure.error);
          else processed.push(item.row.id);
        }
      }
      // A processed head takes the updates folded into it along.
      if (folded.size) processed.splice(0, processed.length, ...processed.flatMap((id) => [id, ...(folded.get(id) ?? [])]));
      await this.#callbacks.library(transaction, 'delete', deleteProcessed(this.#ctx.objects, this.#ctx.sequelize, transaction, processed));
      await this.#callbacks.library(transaction, 'commit', transaction.commit());
    } catch (error) {
      await this.#callbacks.rollback(transaction);
      throw error;
    }
    await this.#callbacks.runAfterCommit(afterCommit, null);
    const channelOf = new Map(rows.map((row) => [row.id, row.channel]));
    for (const [head, ids] of folded) for (const id of ids) channelOf.set(id, channelOf.get(head)!);
    return { claimed: rows.length, processed, processedChannels: processed.map((id) => channelOf.get(id)!), failures, suspects };
  }

  /**
   * Runs a notification a dead process held, alone, in its own transaction. Its attempt is charged
   * first (committed, with PROCESS_DIED as the error), so that if it kills this process too, the
   * charge stays; otherwise the run's own outcome replaces it. A message that keeps killing its
   * process thus uses up its attempts and is failed, while every other notification goes on.
   */
  async #runAlone(suspect: ClaimedRow, slot: number): Promise<void> {
    const channel = this.#ctx.channels.find((c) => c.name === suspect.channel)!;
    const attempt = suspect.attempts + 1;
    const charged = await chargeBeforeRunningAlone(this.#ctx.objects, this.#ctx.sequelize, suspect, {
      holder: this.#ctx.holders()[slot] ?? 0, error: PROCESS_DIED, delayMs: backoffDelay(attempt, channel.retry), maxAttempts: channel.retry.maxAttempts,
    });
    if (!charged) return; // another listener took it first
    this.#ctx.stats.ranAlone++;
    this.#ctx.log.warn(`running notification ${suspect.id} on '${channel.name}' alone: the listener that held it in a batch went away (its process died, or its connection was gone for over 10 s)`, { event: 'running-alone', id: suspect.id, attempt, maxAttempts: channel.retry.maxAttempts });
    await this.#ctx.beforeRunningAlone?.({ id: suspect.id, channel: channel.name, attempt, maxAttempts: channel.retry.maxAttempts });
    try {
      await this.#runCharged(suspect, channel, attempt);
    } finally {
      this.#ctx.tell('ranAlone', suspect.id);
    }
  }

  /**
   * Locks a charged suspect for its run. Another listener's claim that met it as a suspect too, in
   * the instant before the charge, holds its row until that claim's batch ends: wait for it (never
   * leave a charged suspect to a later batch, which it could take down with it). Null once it is done.
   */
  async #lockAlone(transaction: Transaction, suspect: ClaimedRow, channel: AnyChannel): Promise<ClaimedRow | null> {
    for (let waitMs = 20, told = false; ; waitMs = Math.min(waitMs * 2, 500)) {
      const row = await this.#callbacks.library(transaction, 'lock', lockOne(this.#ctx.objects, this.#ctx.sequelize, transaction, suspect.id, this.#ctx.timeoutOf(channel)));
      if (row !== 'held') return row;
      if (!told) this.#ctx.log.debug(`notification ${suspect.id} is held by another claim; waiting to run it alone`, { event: 'alone-held', id: suspect.id });
      told = true;
      await sleep(waitMs);
    }
  }

  /** The run of a suspect whose attempt is charged: its outcome replaces the charge's error. */
  async #runCharged(suspect: ClaimedRow, channel: AnyChannel, attempt: number): Promise<void> {
    let failure: unknown = null;
    const afterCommit: AfterCommitHook[] = [];
    const transaction = await this.#ctx.sequelize.transaction();
    let row: ClaimedRow | null = null;
    try {
      row = await this.#lockAlone(transaction, suspect, channel);
      if (row) {
        try {
          const message = decodeMessage(channel, row.payload, row.id);
          if (this.#ctx.host.batchCallbacks(channel.name).length > 0) await this.#callbacks.runBatch(channel, [{ row, message, attempt }], transaction, afterCommit);
          else await this.#callbacks.run(channel, message, transaction, attempt, row, afterCommit);
        } catch (error) {
          if (error instanceof CallbackTimeoutError || !(await this.#callbacks.connectionAlive(transaction))) throw error;
          failure = error;
        }
        if (failure === null) await this.#callbacks.library(transaction, 'delete', deleteProcessed(this.#ctx.objects, this.#ctx.sequelize, transaction, [row.id]));
      }
      // A plain failure is recorded after the rollback below; success commits here.
      if (failure === null) await this.#callbacks.library(transaction, 'commit', transaction.commit());
    } catch (error) {
      await this.#callbacks.rollback(transaction);
      if (!(error instanceof CallbackTimeoutError) && !(error instanceof MalformedPayloadError)) throw error;
      failure = error;
    }
    if (failure === null) {
      await this.#callbacks.runAfterCommit(afterCommit, channel.name);
      if (row) {
        this.#ctx.stats.processed++;
        this.#ctx.tell('processed', [row.id], [row.channel]);
      }
      return;
    }
    if (!(transaction as { finished?: string }).finished) await this.#callbacks.rollback(transaction);
    // The attempt was charged before the run: replace the "process died" error with what happened.
    const record = this.#failureRecord({ ...suspect, attempts: attempt }, channel, failure, true);
    const { failedForGood } = await this.#ctx.sequelize.transaction((t) => recordFailure(this.#ctx.objects, this.#ctx.sequelize, t, record));
    this.#reportFailures([{ id: suspect.id, channel: channel.name, error: failure, failedForGood }]);
  }
}
