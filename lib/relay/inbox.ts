/**
 * The inbox: the app's model-scoped callbacks, run from a JetStream durable consumer (the stream a
 * relay fills, lib/relay/relay.ts) on any host, against this app's database. Each message's
 * callbacks run in a transaction that also records its message id in the inbox table
 * (library migration 3); the transaction commits, then the message is acknowledged. A message
 * delivered again whose id is recorded is acknowledged without running. So effects stay exactly
 * once from the producer's commit in one database to the callbacks' commit in another.
 * A callback that throws: rolled back, the message redelivered after the channel's backoff; after
 * its `maxAttempts` (or at once for a message that can never succeed) it is recorded as failed, with
 * its error, and JetStream is told to stop delivering it (`term`).
 */
import { EventEmitter } from 'node:events';
import type { AnyChannel } from '../channels/channel';
import { decodeMessage } from '../channels/message';
import type { ClaimedRow } from '../db/store';
import { RelayError } from '../errors';
import { errorSummary, errorText } from '../error-text';
import { type AfterCommitHook, CallbackRunner } from '../listener/callbacks';
import { ListenerEventSink } from '../listener/events';
import { failureRecord } from '../listener/failures';
import type { ListenerEvents, ListenerStats } from '../listener/types';
import { type Logger, consoleLogger, toLogger } from '../ops/logger';
import type { PgPubSub } from '../pubsub';
import { HEADERS, type NatsConnection, natsClients, subjectOf } from './jetstream';

export interface InboxOptions {
  /** The NATS servers: `nats://host:4222`, or several (a cluster). */
  nats: { servers: string | string[]; name?: string; user?: string; pass?: string; token?: string };
  /** The stream the relay fills. Default 'PGPUBSUB'. */
  stream?: string;
  /** The relay's subject prefix. Default 'pgpubsub'. */
  subjectPrefix?: string;
  /** The durable consumer, shared by every inbox process of this app. Default 'pgpubsub-inbox'. */
  consumer?: string;
  /** The channels to run; default every channel with a callback. */
  channels?: string[];
  /** Messages run in one transaction, at most (those delivered together). Default 100. */
  batchSize?: number;
  /** Batches run at once, each in a transaction of its own. Default 1 (the stream's order). */
  concurrency?: number;
  /** A callback's time limit, for channels that set none. Default 60000. */
  timeoutMs?: number;
  /** How long the ids of messages that ran are kept. Default 7 days: longer than the relay's duplicate window. */
  retentionMs?: number;
  logger?: Logger;
}

interface JsMsg {
  subject: string;
  seq: number;
  headers?: { get(key: string): string };
  info: { deliveryCount: number; timestampNanos: number };
  string(): string;
  ack(): void;
  nak(delayMs?: number): void;
  term(reason?: string): void;
}

interface Consumed extends AsyncIterable<JsMsg> {
  stop(): void;
  close(): Promise<void | Error>;
}

const DAY_MS = 86_400_000;

/** The app as the inbox sees it: the chosen channels, their time limits. */
function chosenChannels(pubsub: PgPubSub, names: readonly string[] | undefined): AnyChannel[] {
  const handled = (channel: AnyChannel) => pubsub.callbacks(channel.name).length + pubsub.batchCallbacks(channel.name).length > 0;
  const chosen = names ? names.map((name) => pubsub.channel(name)) : pubsub.channels().filter((channel) => channel.durable && handled(channel));
  if (chosen.length === 0) throw new RelayError('PGPUBSUB_RELAY_OPTIONS', 'inbox: no durable channel has a callback. Register one first, e.g. sequelize.pgpubsub.on(Author, \'author_created\', callback)');
  for (const channel of chosen) {
    if (!handled(channel)) throw new RelayError('PGPUBSUB_RELAY_OPTIONS', `inbox: channel '${channel.name}' has no callback. Register one with sequelize.pgpubsub.on(…), or leave it out of channels`);
  }
  return chosen;
}

/** A running inbox. Its events are a listener's (message:start, message:done, processed, failed). */
export class Inbox extends EventEmitter<ListenerEvents> {
  readonly #pubsub: PgPubSub;
  readonly #nats: NatsConnection;
  readonly #consumed: Consumed;
  readonly #channels: Map<string, AnyChannel>;
  readonly #runner: CallbackRunner;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #concurrency: number;
  readonly #stats: ListenerStats = { processed: 0, ranAlone: 0, failed: 0, broadcasts: 0, batches: 0, reconnects: 0 };
  #duplicates = 0;
  readonly #skipped = new Set<string>();
  #stopping = false;
  readonly #running = new Set<Promise<void>>();
  readonly #buffer: JsMsg[] = [];
  #flushing = false;
  readonly #batchSize: number;
  readonly #loop: Promise<void>;
  readonly #prune: NodeJS.Timeout;

  constructor(pubsub: PgPubSub, nats: NatsConnection, consumed: Consumed, channels: readonly AnyChannel[], options: { log: Logger; timeoutMs: number; concurrency: number; batchSize: number; retentionMs: number }) {
    super();
    this.#pubsub = pubsub;
    this.#nats = nats;
    this.#consumed = consumed;
    this.#channels = new Map(channels.map((channel) => [channel.name, channel]));
    this.#log = options.log;
    this.#timeoutMs = options.timeoutMs;
    this.#concurrency = options.concurrency;
    this.#batchSize = options.batchSize;
    const limits = { timeoutOf: (channel: AnyChannel) => channel.timeoutMs ?? this.#timeoutMs };
    this.#runner = new CallbackRunner({ sequelize: pubsub.sequelize, host: pubsub, log: this.#log, limits, events: new ListenerEventSink(this, this.#log) });
    this.#loop = this.#consume();
    this.#prune = setInterval(() => void this.#pruneOld(options.retentionMs), Math.min(3_600_000, options.retentionMs)).unref();
  }

  get stats(): Readonly<ListenerStats> {
    return { ...this.#stats };
  }

  /** Messages delivered again whose id the inbox had: acknowledged without running. */
  get duplicates(): number {
    return this.#duplicates;
  }

  /** For a readiness probe, as a listener's: 0 while NATS and the database answer. */
  get drainFailures(): number {
    return this.#nats.isClosed() ? 3 : 0;
  }

  /** Stops taking messages, lets those in hand finish (commit and ack), closes the NATS connection. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#prune);
    this.#consumed.stop();
    await this.#loop;
    // Fetched, not started: back to JetStream for another process.
    for (const message of this.#buffer.splice(0)) message.nak();
    while (this.#running.size) await Promise.all(this.#running);
    await this.#nats.drain().catch(() => this.#nats.close());
    this.#log.info('stopped', { event: 'stopped', ...this.#stats, duplicates: this.#duplicates });
  }

  async #consume(): Promise<void> {
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
    }
  }

  /** Starts batches of what is buffered, as many at once as `concurrency` allows. */
  #flush(): void {
    this.#flushing = false;
    while (this.#buffer.length > 0 && this.#running.size < this.#concurrency) {
      const batch = this.#buffer.splice(0, this.#batchSize);
      const run = this.#runBatch(batch).catch((error: unknown) => {
        // Only the inbox's own writes end here (its callbacks' failures are the messages'): JetStream delivers them again.
        this.#log.error('inbox messages could not be handled; JetStream delivers them again', { event: 'inbox-failed', err: error });
        for (const message of batch) message.nak(1000);
      }).finally(() => {
        this.#running.delete(run);
        this.#flush();
      });
      this.#running.add(run);
    }
  }

  /** What a delivered message is to the inbox. */
  #read(message: JsMsg): { name: string; channel: AnyChannel | undefined; messageId: string; attempt: number; row: ClaimedRow } {
    const name = message.headers?.get(HEADERS.channel) || message.subject.slice(message.subject.lastIndexOf('.') + 1);
    const attempt = message.info.deliveryCount;
    return {
      name, channel: this.#channels.get(name), messageId: message.headers?.get('Nats-Msg-Id') || `seq:${message.seq}`, attempt,
      row: {
        id: message.headers?.get(HEADERS.id) || String(message.seq), channel: name, payload: message.string(), attempts: attempt - 1, suspect: false,
        lag_ms: Math.max(0, Date.now() - message.info.timestampNanos / 1e6), claimedAt: performance.now(),
      },
    };
  }

  /** Acknowledges, without running, the messages of a channel this inbox has no callback for (warned once per channel). */
  #skip(message: JsMsg, name: string): void {
    if (!this.#skipped.has(name)) this.#log.warn(`messages of channel '${name}' reach this inbox, which has no callback for it: acknowledged without running`, { event: 'inbox-skipped', channel: name });
    this.#skipped.add(name);
    message.ack();
  }

  /**
   * A batch in one transaction, as a listener's claim: every id recorded at once (those already
   * there are duplicates), the new ones' callbacks in delivery order, one commit, then the acks.
   * A callback that throws rolls the batch back, and its messages run one at a time (#handle), so
   * that the failing one fails alone.
   */
  async #runBatch(messages: readonly JsMsg[]): Promise<void> {
    if (messages.length === 1) return this.#handle(messages[0]);
    const items = messages.map((message) => ({ message, ...this.#read(message) }));
    const known = items.filter((item) => {
      if (!item.channel) this.#skip(item.message, item.name);
      return item.channel;
    });
    if (known.length === 0) return;
    const { sequelize, objects } = this.#pubsub;
    const afterCommit: AfterCommitHook[] = [];
    const transaction = await sequelize.transaction();
    const ran: typeof known = [];
    try {
      const [recorded] = await sequelize.query(`INSERT INTO ${objects.inboxTable} (message_id, channel, stream_seq, attempts)
        SELECT * FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::integer[]))
        ON CONFLICT (message_id) DO NOTHING RETURNING message_id`, {
        bind: [known.map((item) => item.messageId), known.map((item) => item.name), known.map((item) => item.message.seq), known.map((item) => item.attempt)], transaction,
      });
      const fresh = new Set((recorded as Array<{ message_id: string }>).map((row) => row.message_id));
      for (const item of known) {
        // A message id delivered twice in one batch runs once.
        if (!fresh.delete(item.messageId)) continue;
        const decoded = decodeMessage(item.channel!, item.row.payload, item.row.id);
        if (this.#pubsub.batchCallbacks(item.name).length > 0) await this.#runner.runBatch(item.channel!, [{ row: item.row, message: decoded, attempt: item.attempt }], transaction, afterCommit);
        else await this.#runner.run(item.channel!, decoded, transaction, item.attempt, item.row, afterCommit);
        ran.push(item);
      }
      await transaction.commit();
    } catch (error) {
      this.#log.debug('an inbox batch failed; its messages run one at a time', { event: 'inbox-batch-failed', err: error });
      await this.#runner.rollback(transaction);
      for (const item of known) await this.#handle(item.message);
      return;
    }
    for (const item of known) item.message.ack();
    this.#log.debug('batch', { event: 'batch', received: messages.length, processed: ran.length, duplicates: known.length - ran.length });
    this.#duplicates += known.length - ran.length;
    if (ran.length) {
      this.#stats.processed += ran.length;
      this.emit('processed', ran.map((item) => item.row.id), ran.map((item) => item.name));
    }
    await this.#runner.runAfterCommit(afterCommit, null);
  }

  /** One message in a transaction of its own: run, or a duplicate acknowledged, or its failure handled. */
  async #handle(message: JsMsg): Promise<void> {
    const { name, channel, messageId, attempt, row } = this.#read(message);
    const { sequelize, objects } = this.#pubsub;
    if (!channel) return this.#skip(message, name);
    const afterCommit: AfterCommitHook[] = [];
    const transaction = await sequelize.transaction();
    let outcome: 'ran' | 'duplicate';
    try {
      const [recorded] = await sequelize.query(`INSERT INTO ${objects.inboxTable} (message_id, channel, stream_seq, attempts) VALUES ($1, $2, $3, $4) ON CONFLICT (message_id) DO NOTHING RETURNING 1 AS ok`,
        { bind: [messageId, name, message.seq, attempt], transaction });
      if ((recorded as unknown[]).length === 0) {
        outcome = 'duplicate';
      } else {
        const decoded = decodeMessage(channel, row.payload, row.id);
        if (this.#pubsub.batchCallbacks(name).length > 0) await this.#runner.runBatch(channel, [{ row, message: decoded, attempt }], transaction, afterCommit);
        else await this.#runner.run(channel, decoded, transaction, attempt, row, afterCommit);
        outcome = 'ran';
      }
      await transaction.commit();
    } catch (error) {
      await this.#runner.rollback(transaction);
      await this.#failed(message, messageId, channel, row, error);
      return;
    }
    message.ack();
    if (outcome === 'duplicate') {
      this.#duplicates++;
      return;
    }
    this.#stats.processed++;
    this.emit('processed', [row.id], [name]);
    await this.#runner.runAfterCommit(afterCommit, name);
  }

  /** A callback failed: redelivered after the channel's backoff, or, failed for good, recorded and terminated. */
  async #failed(message: JsMsg, messageId: string, channel: AnyChannel, row: ClaimedRow, error: unknown): Promise<void> {
    const record = failureRecord(row, channel, error);
    const failedForGood = record.permanent || message.info.deliveryCount >= record.maxAttempts;
    this.#stats.failed++;
    this.#log.warn(`a callback failed on '${channel.name}' for message ${messageId}${failedForGood ? '; failed for good' : `; redelivered in ${record.delayMs} ms`}`, {
      event: 'callback-failed', channel: channel.name, messageId, attempt: message.info.deliveryCount, failedForGood, err: error,
    });
    this.emit('failed', { id: row.id, channel: channel.name, error, failedForGood });
    if (!failedForGood) {
      message.nak(record.delayMs);
      return;
    }
    const { sequelize, objects } = this.#pubsub;
    await sequelize.query(`INSERT INTO ${objects.inboxTable} (message_id, channel, stream_seq, attempts, failed_at, last_error) VALUES ($1, $2, $3, $4, now(), $5)
      ON CONFLICT (message_id) DO UPDATE SET attempts = excluded.attempts, failed_at = excluded.failed_at, last_error = excluded.last_error`,
    { bind: [messageId, channel.name, message.seq, message.info.deliveryCount, errorText(error)] });
    message.term(errorSummary(error).slice(0, 200));
  }

  /** Forgets the ids of messages that ran longer ago than the retention, a bounded batch at a time. */
  async #pruneOld(retentionMs: number): Promise<void> {
    const { sequelize, objects } = this.#pubsub;
    try {
      await sequelize.query(`DELETE FROM ${objects.inboxTable} WHERE message_id IN (SELECT message_id FROM ${objects.inboxTable}
        WHERE failed_at IS NULL AND received_at < now() - make_interval(secs => $1) LIMIT 10000)`, { bind: [retentionMs / 1000] });
    } catch (error) {
      this.#log.warn('could not prune the inbox', { event: 'inbox-prune-failed', err: error });
    }
  }
}

/**
 * Starts an inbox in this process: a durable JetStream consumer of the relay's stream (created
 * when missing), whose messages run this app's callbacks exactly once. Resolves once consuming;
 * `stop()` it to shut down.
 *
 * @example
 * const inbox = await startInbox(sequelize.pgpubsub, { nats: { servers: 'nats://127.0.0.1:4222' } });
 */
export async function startInbox(pubsub: PgPubSub, options: InboxOptions): Promise<Inbox> {
  const { nats, stream = 'PGPUBSUB', subjectPrefix = 'pgpubsub', consumer = 'pgpubsub-inbox', concurrency = 1, batchSize = 100, timeoutMs = 60_000, retentionMs = 7 * DAY_MS } = options;
  const log = options.logger ? toLogger(options.logger, 'inbox({ logger })') : consoleLogger();
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RelayError('PGPUBSUB_RELAY_OPTIONS', `inbox: concurrency must be a positive integer, got ${String(concurrency)}`);
  const channels = chosenChannels(pubsub, options.channels);
  const clients = natsClients();
  const problem = await pubsub.libraryProblem('inbox');
  if (problem) throw problem;
  const nc = await clients.connect({ ...nats, name: nats.name ?? 'pgpubsub-inbox', maxReconnectAttempts: -1, reconnectTimeWait: 1000 });
  try {
    const jsm = await clients.jetstreamManager(nc) as unknown as ConsumerManager;
    const longest = Math.max(...channels.map((channel) => channel.timeoutMs ?? timeoutMs));
    const config = {
      durable_name: consumer, ack_policy: 'explicit', deliver_policy: 'all', max_deliver: -1,
      // Longer than a callback may take, so that JetStream does not deliver it elsewhere meanwhile.
      ack_wait: clients.nanos(longest + 5000),
      // One subject (nats-server 2.9 takes one filter): the channel's, or all of the prefix, of which the others are skipped.
      filter_subject: channels.length === 1 ? subjectOf(subjectPrefix, channels[0].name) : `${subjectPrefix}.>`,
    };
    await jsm.consumers.add(stream, config).catch(async (error: unknown) => {
      if (!/consumer already exists|consumer name already in use/i.test(errorSummary(error))) throw error;
      await jsm.consumers.update(stream, consumer, { filter_subject: config.filter_subject, ack_wait: config.ack_wait });
    });
    const consumed = await (clients.jetstream(nc) as unknown as { consumers: { get(stream: string, name: string): Promise<{ consume(options: { max_messages: number; expires: number }): Promise<Consumed> }> } })
      .consumers.get(stream, consumer).then((c) => c.consume({ max_messages: Math.max(10, batchSize * concurrency * 2), expires: 10_000 }));
    log.info(`consuming ${channels.map((channel) => channel.name).join(', ')} from JetStream stream '${stream}' (consumer '${consumer}') at ${nc.getServer()}`, {
      event: 'listening', channels: channels.map((channel) => channel.name), stream, consumer,
    });
    return new Inbox(pubsub, nc, consumed, channels, { log, timeoutMs, concurrency, batchSize, retentionMs });
  } catch (error) {
    await nc.close().catch(() => undefined);
    throw error;
  }
}

interface ConsumerManager {
  consumers: {
    add(stream: string, config: Record<string, unknown>): Promise<unknown>;
    update(stream: string, name: string, config: Record<string, unknown>): Promise<unknown>;
  };
}

