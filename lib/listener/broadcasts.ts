/**
 * Broadcasts: a NOTIFY on a non-durable channel carries the message itself, and every listener
 * runs it once, at once, in a transaction of its own; nothing is stored, so nothing is retried.
 * A listener's context filter means jsonb containment (`@>`) here too, as in its claims.
 */
import type { Sequelize } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import { type AfterCommitHook, type CallbackRunner } from './callbacks';
import { errorText } from '../error-text';
import type { StatsCounter } from './stats';
import type { EventSink } from './parts';
import type { Logger } from '../ops/logger';
import { decodeMessage } from '../channels/message';

/**
 * Whether `value` contains `pattern` as PostgreSQL's jsonb `@>` has it, so that a broadcast is
 * filtered as a stored notification is: an object contains another when it has each of its keys
 * with a value that contains the other's; an array, when each element of the other is contained
 * in one of its elements; scalars, when equal.
 */
export function jsonContains(value: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) {
    return Array.isArray(value) && pattern.every((wanted) => value.some((item) => jsonContains(item, wanted)));
  }
  if (typeof pattern === 'object' && pattern !== null) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
    return Object.entries(pattern).every(([key, wanted]) => Object.prototype.hasOwnProperty.call(value, key)
      && jsonContains((value as Record<string, unknown>)[key], wanted));
  }
  return value === pattern;
}

/** What running a broadcast works with. */
export interface BroadcastContext {
  readonly sequelize: Sequelize;
  readonly callbacks: CallbackRunner;
  readonly contextFilter: Record<string, unknown> | undefined;
  readonly log: Logger;
  readonly stats: StatsCounter;
  readonly events: EventSink;
}

/** Runs a broadcast's callbacks; a failure is logged (and emitted), never thrown. */
export async function runBroadcast(ctx: BroadcastContext, channel: AnyChannel, text: string): Promise<void> {
  try {
    const message = decodeMessage(channel, text, null);
    if (ctx.contextFilter && !jsonContains(message.context, ctx.contextFilter)) return;
    const transaction = await ctx.sequelize.transaction();
    const afterCommit: AfterCommitHook[] = [];
    try {
      await ctx.callbacks.run(channel, message, transaction, 1, null, afterCommit);
      await transaction.commit();
    } catch (error) {
      await ctx.callbacks.rollback(transaction);
      throw error;
    }
    await ctx.callbacks.runAfterCommit(afterCommit, channel.name);
    ctx.stats.broadcast();
    ctx.events.tell('broadcast', channel.name);
  } catch (error) {
    ctx.log.error(`broadcast callback on '${channel.name}' failed (broadcasts are not retried)`, { event: 'broadcast-failed', channel: channel.name, error: errorText(error), err: error });
    ctx.events.reportError(error);
  }
}
