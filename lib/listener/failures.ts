/**
 * A callback's failure, as the batch runner records and reports it: the errors that have a batch
 * run again carefully, the row's failure record (its backoff, whether it can ever succeed), and the
 * report (counted, logged, emitted).
 */
import type { AnyChannel, RetryPolicy } from '../channels/channel';
import type { ClaimedRow, FailureRecord } from '../db/store';
import { errorText } from '../error-text';
import { MalformedPayloadError, NonRetryableError } from '../errors';
import type { Logger } from '../ops/logger';
import { jitteredBackoff } from '../process/backoff';
import type { StatsCounter } from './stats';
import type { EventSink } from './parts';
import type { Failure } from './types';

/** Thrown out of a batch to roll it back and run it again carefully, this message's failure known. */
export class CallbackFailed extends Error {
  constructor(readonly id: string, readonly error: unknown) {
    super(`a callback failed for notification ${id}; the batch is run again with that failure recorded`);
  }
}

/** A batch callback failed in a fast pass (or timed out): the batch is run again, carefully. */
export class GroupFailed extends Error {
  constructor(readonly channel: string, readonly split: boolean) {
    super(`a batch callback on '${channel}' failed; the batch is run again${split ? ', one message at a time' : ' with savepoints'}`);
  }
}

/** The key in a careful pass's known failures saying: run this channel's batch callbacks one message at a time. */
export const splitKey = (channel: string) => `split:${channel}`;

/** What a notification that was running alone when its process died gets as its `last_error`. */
export const PROCESS_DIED = 'ProcessDied: the listener process died (exit, crash, kill or out of memory) while running this notification alone, after the listener that held it in a batch went away too';

/** A NonRetryableError, also from another copy of this package (compared by name and code). */
function isNonRetryable(error: unknown): boolean {
  return error instanceof NonRetryableError
    || ((error as { name?: unknown })?.name === 'NonRetryableError' && (error as { code?: unknown }).code === 'PGPUBSUB_NON_RETRYABLE');
}

/** The retry delay of a failed notification's `attempt` under its channel's policy. */
export function backoffDelay(attempt: number, retry: Required<RetryPolicy>, random = Math.random): number {
  return jitteredBackoff(attempt, retry.backoffMs, retry.maxBackoffMs, random);
}

/** What is stored of a failure; `precharged`: its attempt was charged before the run (a run alone). */
export function failureRecord(row: ClaimedRow, channel: AnyChannel, error: unknown, precharged = false): FailureRecord {
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

/** Where failures are reported. */
export interface FailureReportParts {
  readonly stats: StatsCounter;
  readonly log: Logger;
  readonly events: EventSink;
}

/** Counts, logs (an error when failed for good, else a warning) and emits `failed` for each. */
export function reportFailures(parts: FailureReportParts, failures: readonly Failure[]): void {
  parts.stats.failed(failures.length);
  for (const failure of failures) {
    const outcome = failure.failedForGood ? 'failed for good (failed_at set; it will not be claimed again)' : 'kept for retry';
    const log = failure.failedForGood ? parts.log.error : parts.log.warn;
    log.call(parts.log, `callback on '${failure.channel}' failed for notification ${failure.id}; ${outcome}`, {
      event: 'callback-failed', id: failure.id, channel: failure.channel, failedForGood: failure.failedForGood, err: failure.error,
    });
    parts.events.tell('failed', failure);
  }
}
