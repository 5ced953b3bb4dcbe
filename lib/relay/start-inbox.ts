/**
 * startInbox(): the durable JetStream consumer an inbox (lib/relay/inbox.ts) reads, created or
 * brought up to date, and the channels it runs.
 */
import type { AnyChannel } from '../channels/channel';
import { RelayError } from '../errors';
import { errorSummary } from '../error-text';
import { type Logger, consoleLogger, toLogger } from '../ops/logger';
import type { PgPubSub } from '../pubsub';
import { type Consumed, Inbox } from './inbox';
import { natsClients, subjectOf } from './jetstream';

const DAY_MS = 86_400_000;

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
      .consumers.get(stream, consumer).then((c) => c.consume({ max_messages: Math.max(10, batchSize * concurrency), expires: 10_000 }));
    log.info(`consuming ${channels.map((channel) => channel.name).join(', ')} from JetStream stream '${stream}' (consumer '${consumer}') at ${nc.getServer()}`, {
      event: 'listening', channels: channels.map((channel) => channel.name), stream, consumer,
    });
    return new Inbox(pubsub, nc, consumed, channels, { log, timeoutMs, concurrency, batchSize, retentionMs, ackWaitMs: longest + 5000 });
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

