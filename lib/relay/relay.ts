/**
 * The relay: the notification table as a transactional outbox into NATS JetStream. It is a
 * listener (lib/listener/listener.ts) whose only callback, for each channel it relays, publishes the
 * claimed rows as they are stored, each with a de-duplication id (`Nats-Msg-Id`) that is the same
 * for every try, waits for every acknowledgement, and only then lets the claim's transaction delete
 * them and commit. A crash between the acknowledgements and the commit republishes, and the
 * stream's duplicate window drops the copies. NATS down: the batch is rolled back uncharged, the
 * rows wait in PostgreSQL, and the drain is retried with backoff (and at once when NATS is back).
 * Claims, batches, in-flight markers, pauses, delays, retries and per-row order are the listener's.
 */
import type { Sequelize } from 'sequelize';
import type { AnyChannel } from '../channels/channel';
import { RelayError } from '../errors';
import { errorSummary } from '../error-text';
import { Listener } from '../listener/listener';
import { LISTEN_DEFAULTS } from '../listener/options';
import type { ListenerHost, ListenOptions, RawMessage } from '../listener/types';
import { type Logger, consoleLogger, toLogger } from '../ops/logger';
import type { PgPubSub } from '../pubsub';
import { type NatsConnection, type StreamConfig, ensureStream, natsClients, publishBatch } from './jetstream';

/** A listener's options (`batchSize` defaults to 500 here), and the relay's own. */
export interface RelayOptions extends Omit<ListenOptions, 'channels' | 'contextFilter'> {
  /** The NATS servers: `nats://host:4222`, or several (a cluster). */
  nats: { servers: string | string[]; name?: string; user?: string; pass?: string; token?: string };
  /** The durable channels to relay; default: every durable channel of the app. */
  channels?: string[];
  /** Subjects are `<subjectPrefix>.<channel>`. Default 'pgpubsub'. */
  subjectPrefix?: string;
  /** The JetStream stream. Default 'PGPUBSUB'. */
  stream?: string;
  /** Create the stream when it does not exist. Default true. */
  createStream?: boolean;
  /** Replicas of a stream the relay creates (3 on a three-server cluster). Default 1. */
  replicas?: number;
  /** The duplicate window of a stream the relay creates. Default 10 minutes. */
  duplicateWindowMs?: number;
  /**
   * What names this database in the message ids, so that the relays of several databases can share
   * a stream. Default: the server's system identifier and the database's name.
   */
  identity?: string;
  /** How long a publish waits for its acknowledgement. Default 5000. */
  publishTimeoutMs?: number;
}

/** The relay's counts beside the listener's: messages the stream already had (republished after a crash). */
export interface RelayStats {
  duplicates: number;
}

const DEFAULT_DUPLICATE_WINDOW_MS = 10 * 60_000;

/** The app as the relay's listener sees it: the relayed channels, each with the publishing batch callback, fed the stored rows as they are. */
class RelayHost implements ListenerHost {
  readonly rawBatches = true;
  readonly #pubsub: PgPubSub;
  readonly #names: ReadonlySet<string>;
  readonly #publish: readonly Function[];

  readonly #minTimeoutMs: number;
  readonly #defaultTimeoutMs: number;

  /** `defaultTimeoutMs`: the time limit of a channel that sets none (the listen option's). */
  constructor(pubsub: PgPubSub, names: readonly string[], publish: (messages: RawMessage[]) => Promise<void>, limits: { minTimeoutMs: number; defaultTimeoutMs: number }) {
    this.#minTimeoutMs = limits.minTimeoutMs;
    this.#defaultTimeoutMs = limits.defaultTimeoutMs;
    this.#pubsub = pubsub;
    this.#names = new Set(names);
    this.#publish = [publish];
  }

  get sequelize(): Sequelize {
    return this.#pubsub.sequelize;
  }

  get objects() {
    return this.#pubsub.objects;
  }

  /** A relayed channel, its time limit at least the publish's: a slow acknowledgement is NATS's, never charged to the messages. */
  channel(name: string): AnyChannel {
    const channel = this.#pubsub.channel(name);
    const floor = this.#minTimeoutMs;
    return (channel.timeoutMs ?? this.#defaultTimeoutMs) >= floor ? channel : Object.assign(Object.create(channel) as AnyChannel, { timeoutMs: floor });
  }

  channels(): AnyChannel[] {
    return this.#pubsub.channels().filter((channel) => this.#names.has(channel.name));
  }

  callbacks(): readonly Function[] {
    return [];
  }

  batchCallbacks(name: string): readonly Function[] {
    return this.#names.has(name) ? this.#publish : [];
  }
}

/** The channels to relay: the named ones (each durable), or every durable one. */
function relayedChannels(pubsub: PgPubSub, names: readonly string[] | undefined): string[] {
  if (!names) {
    const durable = pubsub.channels().filter((channel) => channel.durable).map((channel) => channel.name);
    if (durable.length === 0) throw new RelayError('PGPUBSUB_RELAY_OPTIONS', 'relay: the app defines no durable channel, so there is nothing stored to relay');
    return durable.map((name) => refuseCoalescing(pubsub.channel(name)));
  }
  if (names.length === 0) throw new RelayError('PGPUBSUB_RELAY_OPTIONS', 'relay: channels is empty; name at least one durable channel, or leave it out to relay them all');
  for (const name of names) {
    if (!pubsub.channel(name).durable) {
      throw new RelayError('PGPUBSUB_RELAY_OPTIONS', `relay: channel '${name}' is a broadcast channel: nothing of it is stored, so nothing can be relayed. Make it durable, or leave it out`);
    }
  }
  return [...names].map((name) => refuseCoalescing(pubsub.channel(name)));
}

/**
 * A coalescing channel folds a row's waiting updates into its oldest notification, whose id names
 * the message: folded again with a later update after a failed commit, the message would carry
 * new content under an id the stream already has, and be dropped as a duplicate.
 */
function refuseCoalescing(channel: AnyChannel): string {
  if (channel.kind === 'model' && channel.coalesce) {
    throw new RelayError('PGPUBSUB_RELAY_OPTIONS', `relay: channel '${channel.name}' coalesces updates (coalesce: true), whose folded content could reach the stream under an id it already has and be dropped; relay a channel without coalesce`);
  }
  return channel.name;
}

/** A failure to reach NATS (down, restarting, no JetStream answering yet): worth trying again, as an unreachable database is. */
export function natsUnavailable(error: unknown): boolean {
  const e = error as { name?: string; status?: unknown } | null;
  // JetStream answering 503: no quorum yet, or JetStream still starting.
  if (e?.name === 'JetStreamApiError' && e.status === 503) return true;
  return ['ConnectionError', 'ClosedConnectionError', 'TimeoutError', 'NoResponders', 'NoRespondersError', 'RequestError', 'JetStreamNotEnabled'].includes(e?.name ?? '');
}

/** The default identity: the cluster's system identifier (unique per initdb) and the database. */
async function databaseIdentity(sequelize: Sequelize): Promise<string> {
  try {
    const [rows] = await sequelize.query('SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system())::text AS system, pg_catalog.current_database() AS database');
    const { system, database } = (rows as Array<{ system: string; database: string }>)[0];
    return `${system}.${database}`;
  } catch (error) {
    throw new RelayError('PGPUBSUB_RELAY_IDENTITY', `relay: could not read the database's system identifier for the message ids (${errorSummary(error)}); pass relay({ identity: '<a name unique to this database>' })`);
  }
}

/** A running relay: a Listener (stop(), stats, events, readiness) with its NATS connection. */
export class Relay extends Listener {
  readonly #nats: NatsConnection;
  readonly #relayStats: RelayStats;
  readonly #log: Logger;
  #natsConnected = true;
  /** The stream it publishes to, as JetStream described it at start. */
  readonly stream: StreamConfig;

  constructor(host: ListenerHost, options: ListenOptions, nats: NatsConnection, stream: StreamConfig, stats: RelayStats, log: Logger) {
    super(host, options);
    this.#nats = nats;
    this.stream = stream;
    this.#relayStats = stats;
    this.#log = log;
    void this.#watchNats();
  }

  get relayStats(): Readonly<RelayStats> {
    return { ...this.#relayStats };
  }

  /** False from the moment its NATS connection is lost until it is back. */
  get natsConnected(): boolean {
    return this.#natsConnected && !this.#nats.isClosed();
  }

  override async stop(): Promise<void> {
    try {
      await super.stop();
    } finally {
      await this.#nats.drain().catch(() => this.#nats.close());
    }
  }

  /** Logs NATS going and coming back, and drains at once when it is back. */
  async #watchNats(): Promise<void> {
    for await (const status of this.#nats.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect') this.#natsConnected = status.type === 'reconnect';
      if (status.type === 'disconnect') this.#log.warn('NATS connection lost; relayed rows wait in PostgreSQL until it is back', { event: 'relay-nats-disconnected', server: status.server ?? null });
      if (status.type === 'reconnect') {
        this.#log.info('NATS connection back; relaying', { event: 'relay-nats-reconnected', server: status.server ?? null });
        this.wake();
      }
    }
  }
}

/**
 * Starts a relay in this process. Resolves once it listens (NATS reached, the stream created or
 * checked); `stop()` it to shut down.
 *
 * @example
 * const relay = await startRelay(sequelize.pgpubsub, { nats: { servers: 'nats://127.0.0.1:4222' } });
 */
export async function startRelay(pubsub: PgPubSub, options: RelayOptions): Promise<Relay> {
  const { nats, channels, subjectPrefix = 'pgpubsub', stream = 'PGPUBSUB', createStream = true, replicas = 1, duplicateWindowMs = DEFAULT_DUPLICATE_WINDOW_MS,
    identity: givenIdentity, publishTimeoutMs = 5000, ...listenOptions } = options;
  if (!nats?.servers || (Array.isArray(nats.servers) && nats.servers.length === 0)) {
    throw new RelayError('PGPUBSUB_RELAY_OPTIONS', "relay: nats.servers is required, e.g. { nats: { servers: 'nats://127.0.0.1:4222' } }");
  }
  if (!/^[^\s.*>]+(\.[^\s.*>]+)*$/.test(subjectPrefix)) {
    throw new RelayError('PGPUBSUB_RELAY_OPTIONS', `relay: subjectPrefix ${JSON.stringify(subjectPrefix)} is not a NATS subject (tokens separated by dots, no spaces, * or >)`);
  }
  const log = listenOptions.logger ? toLogger(listenOptions.logger, 'relay({ logger })') : consoleLogger();
  const names = relayedChannels(pubsub, channels);
  const clients = natsClients();
  // Before NATS: a database without the library is no reason to wait for NATS.
  const problem = await pubsub.libraryProblem('relay');
  if (problem) throw problem;
  const identity = givenIdentity ?? await databaseIdentity(pubsub.sequelize);
  const nc = await clients.connect({ ...nats, name: nats.name ?? 'pgpubsub-relay', maxReconnectAttempts: -1, reconnectTimeWait: 1000 });
  try {
    const js = clients.jetstream(nc, { timeout: publishTimeoutMs });
    const stats: RelayStats = { duplicates: 0 };
    const publish = async (messages: RawMessage[]) => {
      stats.duplicates += await publishBatch(clients, js, messages, { identity, schema: pubsub.objects.schema, subjectPrefix, stream });
    };
    const defaultTimeoutMs = listenOptions.timeoutMs ?? LISTEN_DEFAULTS.timeoutMs;
    const host = new RelayHost(pubsub, names, publish, { minTimeoutMs: publishTimeoutMs + 5000, defaultTimeoutMs });
    // What may come back after a crash: a retry after the longest backoff and time limit, or a drain retried after its longest delay.
    const relayed = names.map((name) => host.channel(name));
    const worstRedeliveryMs = Math.max(...relayed.map((channel) => channel.retry.maxBackoffMs + (channel.timeoutMs ?? defaultTimeoutMs)))
      + (listenOptions.reconnect?.maxDelayMs ?? 10_000);
    const config = await ensureStream(clients, nc, { name: stream, subjectPrefix, duplicateWindowMs, replicas, create: createStream }, worstRedeliveryMs, log);
    const relay = new Relay(host, {
      // Publishes are pipelined: a larger batch than a listener's saves transactions and costs no latency.
      ...listenOptions, batchSize: listenOptions.batchSize ?? 500, logger: log, channels: names as ListenOptions['channels'],
    }, nc, config, stats, log);
    await relay.start();
    log.info(`relaying ${names.join(', ')} to JetStream stream '${config.name}' at ${nc.getServer()}`, { event: 'relaying', channels: names, stream: config.name, identity });
    return relay;
  } catch (error) {
    await nc.close().catch(() => undefined);
    throw error;
  }
}
