/**
 * Running alone the notifications a dead process held. Each is charged its attempt first
 * (committed, with PROCESS_DIED as the error), so that if it kills this process too, the charge
 * stays; otherwise the run's own outcome replaces it. A message that keeps killing its process thus
 * uses up its attempts and is failed, while every other notification goes on.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sequelize, Transaction } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import { chargeBeforeRunningAlone } from '../db/inflight';
import type { LibraryObjects } from '../db/objects';
import { type ClaimedRow, deleteProcessed, lockOne, recordFailure } from '../db/store';
import { CallbackTimeoutError, MalformedPayloadError, SinkUnavailableError } from '../errors';
import type { AfterCommitHook, CallbackRunner } from './callbacks';
import type { ListenerChannels } from './channel-set';
import { type FailureReportParts, PROCESS_DIED, backoffDelay, failureRecord, reportFailures } from './failures';
import type { HolderKeys } from './parts';
import { LISTENER_TRANSACTION } from './open-claim';
import type { ListenOptions } from './types';

/** What running alone works with. */
export interface AloneParts extends FailureReportParts {
  readonly sequelize: Sequelize;
  readonly objects: LibraryObjects;
  readonly channels: ListenerChannels;
  readonly callbacks: CallbackRunner;
  readonly holders: HolderKeys;
  readonly beforeRunningAlone: ListenOptions['beforeRunningAlone'];
}

/** Runs a notification a dead process held, alone, in its own transaction (claim loop `slot`'s holder key charges it). */
export async function runAlone(parts: AloneParts, suspect: ClaimedRow, slot: number): Promise<void> {
  const channel = parts.channels.get(suspect.channel);
  const attempt = suspect.attempts + 1;
  const charged = await chargeBeforeRunningAlone(parts.objects, parts.sequelize, suspect, {
    holder: parts.holders.holders[slot] ?? 0, backend: parts.holders.backend, error: PROCESS_DIED, delayMs: backoffDelay(attempt, channel.retry), maxAttempts: channel.retry.maxAttempts,
  });
  if (!charged) return; // another listener took it first
  parts.stats.ranAlone();
  parts.log.warn(`running notification ${suspect.id} on '${channel.name}' alone: the listener that held it in a batch went away (its process died, or its connection was gone for over 10 s)`, { event: 'running-alone', id: suspect.id, attempt, maxAttempts: channel.retry.maxAttempts });
  await parts.beforeRunningAlone?.({ id: suspect.id, channel: channel.name, attempt, maxAttempts: channel.retry.maxAttempts });
  try {
    await runCharged(parts, suspect, channel, attempt);
  } finally {
    parts.events.tell('ranAlone', suspect.id);
  }
}

/**
 * Locks a charged suspect for its run. Another listener's claim that met it as a suspect too, in
 * the instant before the charge, holds its row until that claim's batch ends: wait for it (never
 * leave a charged suspect to a later batch, which it could take down with it). Null once it is done.
 */
async function lockAlone(parts: AloneParts, transaction: Transaction, suspect: ClaimedRow, channel: AnyChannel): Promise<ClaimedRow | null> {
  for (let waitMs = 20, told = false; ; waitMs = Math.min(waitMs * 2, 500)) {
    const row = await parts.callbacks.library(transaction, 'lock', lockOne(parts.objects, parts.sequelize, transaction, suspect.id, parts.channels.timeoutOf(channel)));
    if (row !== 'held') return row;
    if (!told) parts.log.debug(`notification ${suspect.id} is held by another claim; waiting to run it alone`, { event: 'alone-held', id: suspect.id });
    told = true;
    await sleep(waitMs);
  }
}

/** The run of a suspect whose attempt is charged: its outcome replaces the charge's error. */
async function runCharged(parts: AloneParts, suspect: ClaimedRow, channel: AnyChannel, attempt: number): Promise<void> {
  const { callbacks } = parts;
  const afterCommit: AfterCommitHook[] = [];
  const transaction = await parts.sequelize.transaction(LISTENER_TRANSACTION);
  let outcome: { row: ClaimedRow | null; failure: unknown };
  try {
    outcome = await runLocked(parts, transaction, suspect, channel, attempt, afterCommit);
  } catch (error) {
    await callbacks.rollback(transaction);
    if (!(error instanceof CallbackTimeoutError) && !(error instanceof MalformedPayloadError)) throw error;
    outcome = { row: null, failure: error };
  }
  const { row, failure } = outcome;
  if (failure === null) {
    await callbacks.runAfterCommit(afterCommit, channel.name);
    if (row) {
      parts.stats.processedAlone();
      parts.events.tell('processed', [row.id], [row.channel]);
    }
    return;
  }
  if (!(transaction as { finished?: string }).finished) await callbacks.rollback(transaction);
  // The attempt was charged before the run: replace the "process died" error with what happened.
  const record = failureRecord({ ...suspect, attempts: attempt }, channel, failure, true);
  const { failedForGood } = await parts.sequelize.transaction(LISTENER_TRANSACTION, (t) => recordFailure(parts.objects, parts.sequelize, t, record));
  reportFailures(parts, [{ id: suspect.id, channel: channel.name, error: failure, failedForGood }]);
}

/**
 * Locks the suspect and runs its callbacks; deletes it and commits when they succeed. Resolves the
 * row (null when it was done meanwhile) and a plain failure (recorded after the rollback); throws
 * a timeout, a malformed payload or a lost connection.
 */
async function runLocked(parts: AloneParts, transaction: Transaction, suspect: ClaimedRow, channel: AnyChannel, attempt: number, afterCommit: AfterCommitHook[]): Promise<{ row: ClaimedRow | null; failure: unknown }> {
  const { callbacks } = parts;
  let failure: unknown = null;
  const row = await lockAlone(parts, transaction, suspect, channel);
  if (row) {
    try {
      const message = parts.channels.messageOf(channel, row, attempt);
      if (parts.channels.takesBatches(channel.name)) await callbacks.runBatch(channel, [{ row, message, attempt }], transaction, afterCommit);
      else await callbacks.run(channel, message, transaction, attempt, row, afterCommit);
    } catch (error) {
      if (error instanceof CallbackTimeoutError || error instanceof SinkUnavailableError || !(await callbacks.connectionAlive(transaction))) throw error;
      failure = error;
    }
    if (failure === null) await callbacks.library(transaction, 'delete', deleteProcessed(parts.objects, parts.sequelize, transaction, [row.id]));
  }
  // A plain failure is recorded after the rollback in runCharged; success commits here.
  if (failure === null) await callbacks.library(transaction, 'commit', transaction.commit());
  return { row, failure };
}
