/**
 * The inbox: the app's model-scoped callbacks, run from a JetStream durable consumer (the stream a
 * relay fills, lib/relay/relay.ts; started by start-inbox.ts) on any host, against this app's
 * database. Messages delivered together run in one transaction that also records their ids in the
 * inbox table (library migration 3, lib/relay/inbox-store.ts); it commits, then they are
 * acknowledged. A message delivered again whose id is recorded is acknowledged without running. So
 * effects stay exactly once from the producer's commit in one database to the callbacks' commit in
 * another. A callback that throws: rolled back, its failure counted in the inbox table, the message
 * delivered again after the channel's backoff; after its `maxAttempts` (or at once for a message
 * that can never succeed) it is recorded as failed, with its error, and JetStream is told to stop
 * delivering it (`term`). Deliveries that were no failure (a lost connection, a restart) count nothing.
 */
import { EventEmitter } from 'node:events';
import type { AnyChannel } from '../channels/channel';
import { decodeMessage } from '../channels/message';
import type { ClaimedRow } from '../db/store';
import { errorSummary, errorText } from '../error-text';
import { type AfterCommitHook, CallbackRunner } from '../listener/callbacks';
import { ListenerEventSink } from '../listener/events';
import { backoffDelay, failureRecord } from '../listener/failures';
import type { ListenerEvents, ListenerStats } from '../listener/types';
import type { Logger } from '../ops/logger';
import type { PgPubSub } from '../pubsub';
import { HEADERS, type NatsConnection } from './jetstream';
import { type InboxEntry, claimEntries, countFailure, forgetOld } from './inbox-store';

export interface JsMsg {
  subject: string;
  seq: number;
  headers?: { get(key: string): string };
  info: { deliveryCount: number; timestampNanos: number };
  string(): string;
  ack(): void;
  nak(delayMs?: number): void;
  term(reason?: string): void;
  working(): void;
}

export interface Consumed extends AsyncIterable<JsMsg> {
  stop(): void;
  close(): Promise<void | Error>;
}

/** A running inbox. Its events are a listener's (message:start, message:done, processed, failed). */
export class Inbox extends EventEmitter<ListenerEvents> {
  readonly #pubsub: PgPubSub;
  readonly #nats: NatsConnection;
  readonly #consumed: Consumed;
  readonly #channels: Map<string, AnyChannel>;
  readonly #runner: CallbackRunner;
  readonly #events: ListenerEventSink;
  readonly #log: Logger;
  readonly #concurrency: number;
  readonly #batchSize: number;
  readonly #stats: ListenerStats = { processed: 0, ranAlone: 0, failed: 0, broadcasts: 0, batches: 0, reconnects: 0 };
  #duplicates = 0;
  #stopping = false;
  /** The consume loop ended on an error: nothing more comes (a readiness probe says not ready). */
  #broken = false;
  readonly #skipped = new Set<string>();
  /** Delivered, waiting for a batch; and in a batch now. */
  readonly #buffer: JsMsg[] = [];
  readonly #inHand = new Set<JsMsg>();
  readonly #running = new Set<Promise<void>>();
  #flushing = false;
  #space: (() => void) | null = null;
  readonly #loop: Promise<void>;
  readonly #timers: NodeJS.Timeout[];

  constructor(pubsub: PgPubSub, nats: NatsConnection, consumed: Consumed, channels: readonly AnyChannel[],
    options: { log: Logger; timeoutMs: number; concurrency: number; batchSize: number; retentionMs: number; ackWaitMs: number }) {
    super();
    this.#pubsub = pubsub;
    this.#nats = nats;
    this.#consumed = consumed;
    this.#channels = new Map(channels.map((channel) => [channel.name, channel]));
    this.#log = options.log;
    this.#concurrency = options.concurrency;
    this.#batchSize = options.batchSize;
    const limits = { timeoutOf: (channel: AnyChannel) => channel.timeoutMs ?? options.timeoutMs };
    this.#events = new ListenerEventSink(this, this.#log);
    this.#runner = new CallbackRunner({ sequelize: pubsub.sequelize, host: pubsub, log: this.#log, limits, events: this.#events });
    this.#loop = this.#consume();
    this.#timers = [
      // A batch runs its messages one after another: each says it is still being worked on, so that JetStream does not deliver it elsewhere meanwhile.
      setInterval(() => { for (const message of [...this.#buffer, ...this.#inHand]) message.working(); }, Math.max(1000, options.ackWaitMs / 3)).unref(),
      setInterval(() => void this.#forget(options.retentionMs), Math.min(3_600_000, options.retentionMs)).unref(),
    ];
  }

  get stats(): Readonly<ListenerStats> {
    return { ...this.#stats };
  }

  /** Messages delivered again whose id the inbox had: acknowledged without running. */
  get duplicates(): number {
    return this.#duplicates;
  }

  /** For a readiness probe, as a listener's: 0 while it consumes. */
  get drainFailures(): number {
    return this.#broken || this.#nats.isClosed() ? 3 : 0;
  }

  /** Stops taking messages, lets the batches in hand finish (commit and ack), closes the NATS connection. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const timer of this.#timers) clearInterval(timer);
    this.#consumed.stop();
    this.#space?.();
    await this.#loop;
    // Delivered, not started: back to JetStream for another process.
    for (const message of this.#buffer.splice(0)) message.nak();
    while (this.#running.size) await Promise.all(this.#running);
    await this.#nats.drain().catch(() => this.#nats.close());
    this.#log.info('stopped', { event: 'stopped', ...this.#stats, duplicates: this.#duplicates });
  }

  async #consume(): Promise<void> {
    try {
      for await (const message of this.#consumed) {
        if (this.#stopping) {
          message.nak();
          continue;
        }
        this.#buffer.push(message);
        // What has arrived by the next turn of the event loop goes into one batch.
        if (!this.#flushing) {
          this.#flushing = true;
          setImmediate(() => this.#flush());
        }
        // No more in hand than the batches can take: the rest waits in JetStream (and is not timed out in the buffer).
        while (this.#buffer.length >= this.#batchSize * this.#concurrency && !this.#stopping) await new Promise<void>((resolve) => { this.#space = resolve; });
      }
    } catch (error) {
      if (this.#stopping) return;
      this.#broken = true;
      this.#log.error('the inbox stopped receiving messages from JetStream; restart it', { event: 'inbox-consume-ended', err: error });
      this.#events.reportError(error);
    }
  }

  /** Starts batches of what is buffered, as many at once as `concurrency` allows. */
  #flush(): void {
    this.#flushing = false;
    while (this.#buffer.length > 0 && this.#running.size < this.#concurrency) {
      const batch = this.#buffer.splice(0, this.#batchSize);
      for (const message of batch) this.#inHand.add(message);
      const run = this.#runBatch(batch).catch((error: unknown) => {
        // Only the inbox's own writes end here (its callbacks' failures are the messages'): JetStream delivers them again.
        this.#log.error('inbox messages could not be handled; JetStream delivers them again', { event: 'inbox-failed', err: error });
        for (const message of batch) message.nak(1000);
      }).finally(() => {
        for (const message of batch) this.#inHand.delete(message);
        this.#running.delete(run);
        this.#flush();
      });
      this.#running.add(run);
    }
    if (this.#buffer.length < this.#batchSize * this.#concurrency) {
      this.#space?.();
      this.#space = null;
    }
  }

  /** What a delivered message is to the inbox. */
  #read(message: JsMsg): { name: string; channel: AnyChannel | undefined; entry: InboxEntry; row: ClaimedRow } {
    const name = message.headers?.get(HEADERS.channel) || message.subject.slice(message.subject.lastIndexOf('.') + 1);
    return {
      name,
      channel: this.#channels.get(name),
      entry: { messageId: message.headers?.get('Nats-Msg-Id') || `seq:${message.seq}`, channel: name, streamSeq: message.seq },
      row: {
        id: message.headers?.get(HEADERS.id) || String(message.seq), channel: name, payload: message.string(), attempts: 0, suspect: false,
        lag_ms: Math.max(0, Date.now() - message.info.timestampNanos / 1e6), claimedAt: performance.now(),
      },
    };
  }

  /**
   * A batch in one transaction, as a listener's claim: its ids recorded at once (those that ran
   * already are duplicates), the others' callbacks in delivery order, one commit, then the acks. A
   * callback that throws rolls the batch back, and its messages run one at a time, so that the
   * failing one fails alone; a lost connection rolls it back and JetStream delivers it again, as
   * it is, nothing counted.
   */
  async #runBatch(messages: readonly JsMsg[]): Promise<void> {
    const items = messages.map((message) => ({ message, ...this.#read(message) }));
    const known = items.filter((item) => {
      if (item.channel) return true;
      // Another channel of the stream (a process of this app that has its callback will take it).
      if (!this.#skipped.has(item.name)) this.#log.warn(`messages of channel '${item.name}' reach this inbox, which has no callback for it: left for a process that has one`, { event: 'inbox-skipped', channel: item.name });
      this.#skipped.add(item.name);
      item.message.nak(5000);
      return false;
    });
    if (known.length === 0) return;
    const { sequelize, objects } = this.#pubsub;
    const afterCommit: AfterCommitHook[] = [];
    const transaction = await sequelize.transaction();
    const ran: typeof known = [];
    try {
      const toRun = await claimEntries(sequelize, objects, known.map((item) => item.entry), transaction);
      for (const item of known) {
        const failures = toRun.get(item.entry.messageId);
        // A message id delivered twice in one batch runs once.
        if (failures === undefined) continue;
        toRun.delete(item.entry.messageId);
        const attempt = failures + 1;
        const row = { ...item.row, attempts: failures };
        const decoded = decodeMessage(item.channel!, row.payload, row.id);
        if (this.#pubsub.batchCallbacks(item.name).length > 0) await this.#runner.runBatch(item.channel!, [{ row, message: decoded, attempt }], transaction, afterCommit);
        else await this.#runner.run(item.channel!, decoded, transaction, attempt, row, afterCommit);
        ran.push(item);
      }
      await transaction.commit();
    } catch (error) {
      const alive = await this.#runner.connectionAlive(transaction);
      await this.#runner.rollback(transaction);
      if (!alive) {
        this.#log.warn('the database connection was lost during an inbox batch; JetStream delivers it again', { event: 'inbox-connection-lost', err: error });
        for (const item of known) item.message.nak(1000);
      } else if (known.length > 1) {
        this.#log.debug('an inbox batch failed; its messages run one at a time', { event: 'inbox-batch-failed', err: error });
        for (const item of known) await this.#runBatch([item.message]);
      } else {
        await this.#failed(known[0].message, known[0].entry, known[0].channel!, known[0].row, error);
      }
      return;
    }
    for (const item of known) item.message.ack();
    this.#log.debug('batch', { event: 'batch', received: messages.length, processed: ran.length, duplicates: known.length - ran.length });
    this.#duplicates += known.length - ran.length;
    if (ran.length === 0) return;
    this.#stats.processed += ran.length;
    this.#stats.batches++;
    this.#events.tell('processed', ran.map((item) => item.row.id), ran.map((item) => item.name));
    await this.#runner.runAfterCommit(afterCommit, null);
  }

  /** A callback failed: counted; redelivered after the channel's backoff, or, failed for good, terminated. */
  async #failed(message: JsMsg, entry: InboxEntry, channel: AnyChannel, row: ClaimedRow, error: unknown): Promise<void> {
    const { permanent, maxAttempts } = failureRecord(row, channel, error);
    const counted = await countFailure(this.#pubsub.sequelize, this.#pubsub.objects, entry, errorText(error), { maxAttempts, permanent: permanent ?? false });
    if (counted === 'done') {
      message.ack();
      return;
    }
    const { attempts, failedForGood } = counted;
    const delayMs = backoffDelay(attempts, channel.retry);
    this.#stats.failed++;
    this.#log.warn(`a callback failed on '${channel.name}' for message ${entry.messageId}${failedForGood ? '; failed for good' : `; delivered again in ${delayMs} ms`}`, {
      event: 'callback-failed', channel: channel.name, messageId: entry.messageId, attempt: attempts, failedForGood, err: error,
    });
    this.#events.tell('failed', { id: row.id, channel: channel.name, error, failedForGood });
    if (failedForGood) message.term(errorSummary(error).slice(0, 200));
    else message.nak(delayMs);
  }

  async #forget(retentionMs: number): Promise<void> {
    try {
      await forgetOld(this.#pubsub.sequelize, this.#pubsub.objects, retentionMs);
    } catch (error) {
      this.#log.warn('could not prune the inbox', { event: 'inbox-prune-failed', err: error });
    }
  }
}

