/**
 * Running callbacks: a message's callbacks (or a channel's batch callbacks) in a transaction, within
 * the channel's time limit, with afterCommit meaning after the outer commit and the app's CLS
 * transaction set; the hooks after a commit; a quiet rollback; library queries bounded in time.
 * Used by the claim passes (lib/listener/claim-pass.ts), the runs alone (lib/listener/run-alone.ts) and for
 * broadcasts (lib/listener/broadcasts.ts).
 */
import type { Sequelize, Transaction } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import { errorText, isConnectionFailure } from '../error-text';
import { CallbackTimeoutError } from '../errors';
import type { Logger } from '../ops/logger';
import { type ClaimedRow, lagNow } from '../db/store';
import { consumerSpan } from '../ops/tracing';
import type { RawQuery } from '../channels/message';
import { rawQuery } from './raw-query';
import { LIBRARY_QUERY_DEADLINE_MS, type PgConnection, bounded, destroySocket } from './query-guards';
import type { EventSink } from './parts';
import type { ListenerHost, MessageStart } from './types';

/** A hook to run once a notification's transaction has committed. */
export type AfterCommitHook = () => unknown;

/**
 * Points `transaction.afterCommit` at `register` while a message's callbacks run, so that a hook
 * runs after the outer commit: Sequelize runs a savepoint's hooks when the savepoint is released,
 * and a transaction's even when its COMMIT failed. Returns the function that puts it back.
 */
export function redirectAfterCommit(transaction: Transaction, register: (hook: AfterCommitHook) => void): () => void {
  const own = Object.getOwnPropertyDescriptor(transaction, 'afterCommit');
  Object.defineProperty(transaction, 'afterCommit', { value: (hook: AfterCommitHook) => register(hook), configurable: true, writable: true });
  return () => {
    if (own) Object.defineProperty(transaction, 'afterCommit', own);
    else delete (transaction as { afterCommit?: unknown }).afterCommit;
  };
}

/** The CLS namespace of `Sequelize.useCLS()`, on the app's Sequelize class (cls-hooked's API). */
interface ClsNamespace {
  run(fn: (context: unknown) => void): void;
  set(key: string, value: unknown): void;
}

/**
 * Runs `fn` with `transaction` as the CLS transaction when the app uses `Sequelize.useCLS()`, so
 * that a model call without `{ transaction }` joins the notification's transaction (as it would
 * inside a managed `sequelize.transaction(callback)`), and commits or rolls back with it.
 */
export function inClsTransaction<T>(sequelize: Sequelize, transaction: Transaction, fn: () => T): T {
  const cls = (sequelize.constructor as { _cls?: ClsNamespace })._cls;
  if (!cls) return fn();
  let result!: T;
  cls.run(() => {
    cls.set('transaction', transaction);
    result = fn();
  });
  return result;
}

/** The traceparent a message's context carries (see tracing.ts), if any. */
const traceOf = (message: unknown) => (message as { context?: { traceparent?: unknown } } | null)?.context?.traceparent;

/** A message a run of callbacks is for, as its events and its span see it. */
interface MessageRun {
  channel: string;
  id: string | null;
  attempt: number;
  row: ClaimedRow | null;
  traceparent: unknown;
}

/**
 * A run's time limit. Its signal is made when a callback first reads it (an AbortController per
 * message is a measurable share of a fast callback's cost), aborted at once if time is already up.
 */
class Deadline {
  readonly #channel: string;
  readonly #id: string | null;
  readonly #timeoutMs: number;
  #controller: AbortController | null = null;
  #expiredWith: CallbackTimeoutError | null = null;
  #timer: NodeJS.Timeout | undefined;

  constructor(channel: string, id: string | null, timeoutMs: number) {
    this.#channel = channel;
    this.#id = id;
    this.#timeoutMs = timeoutMs;
  }

  get expired(): boolean {
    return this.#expiredWith !== null;
  }

  /** The time-limit error once time is up, else null. */
  readonly expiredWith = (): CallbackTimeoutError | null => this.#expiredWith;

  signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#expiredWith) this.#controller.abort(this.#expiredWith);
    }
    return this.#controller.signal;
  }

  /**
   * Settles with `work`, or rejects when time is up (a callback still running then may reject
   * later: this has settled, so nobody waits for it any more, and its rejection is handled).
   */
  race(work: Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#timer = setTimeout(() => {
        const error = new CallbackTimeoutError(this.#channel, this.#id, this.#timeoutMs);
        this.#expiredWith = error;
        this.#controller?.abort(error);
        reject(error);
      }, this.#timeoutMs);
      work.then(resolve, reject);
    });
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}

/** A claimed message of a channel with batch callbacks. */
export interface GroupItem {
  row: ClaimedRow;
  message: unknown;
  attempt: number;
}

/** A channel's callback time limit (its own `timeoutMs`, or the listener's). */
export interface TimeLimits {
  timeoutOf(channel: AnyChannel): number;
}

/** Where the lag of each stored message is told as its callbacks start (the listener's report keeps the highest). */
export interface LagSink {
  sawLag(channel: string, lagMs: number): void;
}

/** What the callback runner works with. */
export interface CallbackRunnerContext {
  readonly sequelize: Sequelize;
  readonly host: ListenerHost;
  readonly log: Logger;
  readonly limits: TimeLimits;
  /** message:start and message:done go here (built only when someone listens for them). */
  readonly events: EventSink;
  readonly lags?: LagSink;
}

export class CallbackRunner {
  /** Batch transactions whose messages run at once: their afterCommit is redirected once, for the batch. */
  readonly sharedAfterCommit = new WeakSet<Transaction>();
  readonly #ctx: CallbackRunnerContext;

  constructor(ctx: CallbackRunnerContext) {
    this.#ctx = ctx;
  }

  /**
   * Runs a message's callbacks, in registration order, within the channel's time limit. When time
   * is up the signal aborts and this rejects with CallbackTimeoutError; the caller rolls the
   * transaction back, which ends the callback's use of it.
   */
  async run(
    channel: AnyChannel,
    message: unknown,
    transaction: Transaction,
    attempt: number,
    row: ClaimedRow | null,
    afterCommit: AfterCommitHook[],
  ): Promise<void> {
    await this.#runCallbacks(channel, this.#ctx.host.callbacks(channel.name), transaction, afterCommit, [{ channel: channel.name, id: row?.id ?? null, attempt, row, traceparent: traceOf(message) }],
      (callback, { transaction: t, afterCommit: register, signal, query }) => callback(message, { transaction: t, attempt, get signal() { return signal(); }, afterCommit: register, query }));
  }

  /**
   * Runs a batch callback over the messages of one channel from one claim (`onBatch`), within the
   * channel's time limit, as #run does for one message.
   */
  async runBatch(channel: AnyChannel, items: readonly GroupItem[], transaction: Transaction, afterCommit: AfterCommitHook[]): Promise<void> {
    const messages = items.map((item) => item.message);
    const attempts = items.map((item) => item.attempt);
    await this.#runCallbacks(channel, this.#ctx.host.batchCallbacks(channel.name), transaction, afterCommit,
      items.map((item, i) => ({ channel: channel.name, id: item.row.id, attempt: attempts[i], row: item.row, traceparent: traceOf(item.message) })),
      (callback, { transaction: t, afterCommit: register, signal, query }) => callback(messages, { transaction: t, attempts, get signal() { return signal(); }, afterCommit: register, query }));
  }

  /**
   * Runs `callbacks` in registration order (each through `call`), within the channel's time limit.
   * When time is up the signal aborts and this rejects with CallbackTimeoutError; the caller rolls
   * the transaction back, which ends the callbacks' use of it. `starts`: the messages it runs, for
   * the message:start and message:done events.
   */
  async #runCallbacks(
    channel: AnyChannel,
    callbacks: readonly Function[],
    transaction: Transaction,
    afterCommit: AfterCommitHook[],
    starts: readonly MessageRun[],
    call: (callback: Function, base: { transaction: Transaction; signal: () => AbortSignal; afterCommit: (hook: AfterCommitHook) => void; query: RawQuery }) => unknown,
  ): Promise<void> {
    const deadline = new Deadline(channel.name, starts.length === 1 ? starts[0].id : null, this.#ctx.limits.timeoutOf(channel));
    // The message's after-commit hooks wait here, and join the transaction's only if it succeeds.
    const pending: AfterCommitHook[] = [];
    const register = (hook: AfterCommitHook) => {
      if (typeof hook !== 'function') throw new TypeError(`afterCommit(hook): the hook must be a function, got ${typeof hook}`);
      if (!deadline.expired) pending.push(hook);
    };
    // With callbacks at once on one transaction, the claim pass redirects it once (ClaimPass).
    const restore = this.sharedAfterCommit.has(transaction) ? () => undefined : redirectAfterCommit(transaction, register);
    const startedAt = performance.now();
    const events = this.#started(channel.name, starts);
    // `call` gives each callback a context object of its own, `signal` a getter (see Deadline).
    const base = { transaction, signal: () => deadline.signal(), afterCommit: register, query: rawQuery(transaction, deadline.expiredWith) };
    // With OpenTelemetry and a tracer provider: a consumer span, the child of the producer's (null otherwise, at no cost).
    const span = consumerSpan(channel.name, starts);
    const runAll = async () => {
      for (const callback of callbacks) {
        // Timed out during an earlier callback of this message: the rest must not run.
        if (deadline.expired) return;
        await inClsTransaction(this.#ctx.sequelize, transaction, () => call(callback, base));
      }
    };
    const finished = deadline.race(span ? span.run(runAll) : runAll());
    try {
      await finished;
      afterCommit.push(...pending);
      span?.end();
      this.#done(events, startedAt, true);
    } catch (error) {
      span?.end(error);
      this.#done(events, startedAt, false, error);
      throw error;
    } finally {
      deadline.clear();
      restore();
    }
  }

  /**
   * As a run starts: each stored message's lag to the report, and message:start, whose events are
   * built only for listeners of them (a metrics registry, tracing): nothing per message otherwise.
   */
  #started(channel: string, starts: readonly MessageRun[]): MessageStart[] | null {
    if (this.#ctx.lags) for (const { row } of starts) if (row) this.#ctx.lags.sawLag(channel, lagNow(row));
    const { events } = this.#ctx;
    if (!events.listens('message:start') && !events.listens('message:done')) return null;
    const built = starts.map(({ channel: name, id, attempt, row }) => ({ channel: name, id, attempt, lagMs: row ? lagNow(row) : null }));
    if (events.listens('message:start')) for (const start of built) events.tell('message:start', start);
    return built;
  }

  /** message:done for the messages of a run that started with `events`. */
  #done(events: MessageStart[] | null, startedAt: number, ok: boolean, error?: unknown): void {
    if (!events || !this.#ctx.events.listens('message:done')) return;
    const durationMs = Math.round((performance.now() - startedAt) * 1000) / 1000;
    for (const start of events) this.#ctx.events.tell('message:done', ok ? { ...start, durationMs, ok } : { ...start, durationMs, ok, error });
  }

  /** Runs a committed transaction's after-commit hooks in order; one that throws is logged, and the others still run. */
  async runAfterCommit(hooks: readonly AfterCommitHook[], channel: string | null): Promise<void> {
    for (const hook of hooks) {
      try {
        await hook();
      } catch (error) {
        this.#ctx.log.error('an after-commit hook failed (the notification stays processed)', { event: 'after-commit-failed', channel, error: errorText(error), err: error });
      }
    }
  }

  /**
   * Rolls back, quietly (Sequelize would print to stdout), killing the connection when that fails;
   * then marks the transaction finished, so that a callback still holding it cannot run a query on a
   * connection now back in the pool.
   */
  async rollback(transaction: Transaction): Promise<void> {
    const t = transaction as Transaction & { finished?: string; connection?: PgConnection; cleanup(): void; forceCleanup(): Promise<void> };
    if (t.finished) return;
    try {
      if (!t.connection) return;
      await bounded(this.#ctx.sequelize.getQueryInterface().rollbackTransaction(transaction, {}), 5000, () => new Error('ROLLBACK did not answer within 5 s'));
      t.cleanup();
    } catch (error) {
      this.#ctx.log.warn('rolling back a batch failed; closing its connection', { event: 'rollback-failed', err: error });
      destroySocket(t.connection);
      await t.forceCleanup().catch(() => undefined);
    } finally {
      t.finished = 'rollback';
      for (const savepoint of (t as unknown as { savepoints?: Array<{ finished?: string }> }).savepoints ?? []) savepoint.finished ??= 'rollback';
    }
  }

  /** A library query in a batch transaction, bounded: a hang means a dead network path, so the connection is destroyed. */
  async library<T>(transaction: Transaction, what: string, promise: Promise<T>): Promise<T> {
    return bounded(promise, LIBRARY_QUERY_DEADLINE_MS, () => {
      destroySocket((transaction as { connection?: PgConnection }).connection);
      return new Error(`${what} did not answer within ${LIBRARY_QUERY_DEADLINE_MS} ms; its connection was closed`);
    });
  }

  /** After a callback threw: is the transaction's connection still there? Asked of the connection itself. */
  async connectionAlive(transaction: Transaction): Promise<boolean> {
    // A callback that committed or rolled back the transaction itself: its own doing, not a lost connection.
    if ((transaction as { finished?: string }).finished) return true;
    try {
      await bounded(this.#ctx.sequelize.query('SELECT 1', { transaction }), 5000, () => new Error('probe timed out'));
      return true;
    } catch (error) {
      // "current transaction is aborted" (the callback's query failed) comes from a live server.
      return !isConnectionFailure(error);
    }
  }
}
