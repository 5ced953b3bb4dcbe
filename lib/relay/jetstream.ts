/**
 * The relay's side of NATS JetStream: the optional clients, loaded only by a relay; the stream,
 * created or checked; and one batch published with a de-duplication id per message.
 */
import { RelayError, SinkUnavailableError } from '../errors';
import { errorSummary } from '../error-text';
import type { Logger } from '../ops/logger';
import type { RawMessage } from '../listener/types';

/** The parts of @nats-io/transport-node and @nats-io/jetstream the relay uses. */
interface NatsClients {
  connect(options: Record<string, unknown>): Promise<NatsConnection>;
  headers(): NatsHeaders;
  nanos(ms: number): number;
  jetstream(nc: NatsConnection, options?: { timeout?: number }): JetStream;
  jetstreamManager(nc: NatsConnection): Promise<JetStreamManager>;
}

export interface NatsConnection {
  closed(): Promise<void | Error>;
  drain(): Promise<void>;
  close(): Promise<void>;
  isClosed(): boolean;
  getServer(): string;
  status(): AsyncIterable<{ type: string; data?: unknown; server?: string }>;
}

interface NatsHeaders {
  set(key: string, value: string): void;
}

interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

interface JetStream {
  publish(subject: string, payload: string, options: { msgID: string; headers: NatsHeaders; expect?: { streamName?: string } }): Promise<PubAck>;
}

export interface StreamConfig {
  name: string;
  subjects: string[];
  duplicate_window: number;
  num_replicas: number;
}

interface JetStreamManager {
  streams: {
    info(name: string): Promise<{ config: StreamConfig }>;
    add(config: Partial<StreamConfig> & { name: string }): Promise<{ config: StreamConfig }>;
  };
}

/** The clients, or an error that says what to install. */
export function natsClients(): NatsClients {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- optional peer dependencies, loaded by a relay only.
    const transport = require('@nats-io/transport-node') as Pick<NatsClients, 'connect' | 'headers' | 'nanos'>;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const js = require('@nats-io/jetstream') as Pick<NatsClients, 'jetstream' | 'jetstreamManager'>;
    return { connect: transport.connect, headers: transport.headers, nanos: transport.nanos, jetstream: js.jetstream, jetstreamManager: js.jetstreamManager };
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw error;
    throw new RelayError('PGPUBSUB_RELAY_CLIENTS', 'relay: the NATS clients are not installed. Run: npm install @nats-io/transport-node @nats-io/jetstream');
  }
}

/** The de-duplication id of a stored notification: the same for every relay of the database, and for every try. */
export function messageId(identity: string, schema: string, id: string): string {
  return `${identity}:${schema}:${id}`;
}

/** The subject of a channel: the prefix, then the channel's name (its dots are subject tokens). */
export function subjectOf(prefix: string, channel: string): string {
  return `${prefix}.${channel}`;
}

export interface StreamOptions {
  name: string;
  subjectPrefix: string;
  /** How long the stream drops a second publish of a message id. */
  duplicateWindowMs: number;
  replicas: number;
  /** Create the stream when it does not exist (else refuse to start). */
  create: boolean;
}

/**
 * Creates the stream, or checks the one there: it must take the relay's subjects, and its
 * duplicate window should cover the relay's worst-case redelivery (warned, not refused).
 */
export async function ensureStream(clients: NatsClients, nc: NatsConnection, options: StreamOptions, worstRedeliveryMs: number, log: Logger): Promise<StreamConfig> {
  const jsm = await clients.jetstreamManager(nc);
  const subjects = [`${options.subjectPrefix}.>`];
  let config: StreamConfig;
  try {
    config = (await jsm.streams.info(options.name)).config;
  } catch (error) {
    if ((error as Error)?.name !== 'StreamNotFoundError' && !/stream not found/i.test(errorSummary(error))) throw error;
    if (!options.create) {
      throw new RelayError('PGPUBSUB_RELAY_STREAM', `relay: JetStream has no stream '${options.name}'. Create it with subjects ${subjects.join(', ')}, or let the relay create it (createStream)`);
    }
    config = (await jsm.streams.add({
      name: options.name, subjects, duplicate_window: clients.nanos(options.duplicateWindowMs), num_replicas: options.replicas,
    })).config;
    log.info(`created JetStream stream '${options.name}' (${subjects.join(', ')}, ${options.replicas} replica(s), duplicate window ${options.duplicateWindowMs} ms)`, {
      event: 'relay-stream-created', stream: options.name, subjects, replicas: options.replicas, duplicateWindowMs: options.duplicateWindowMs,
    });
  }
  const takes = config.subjects?.some((subject) => subject === subjects[0] || subject === '>');
  if (!takes) {
    throw new RelayError('PGPUBSUB_RELAY_STREAM', `relay: stream '${options.name}' takes ${JSON.stringify(config.subjects)}, not ${subjects[0]}: add that subject to it, or give the relay another stream or subject prefix`);
  }
  const windowMs = config.duplicate_window / 1e6;
  if (windowMs < worstRedeliveryMs) {
    log.warn(`stream '${options.name}' drops duplicates for ${windowMs} ms, less than the relay's worst-case redelivery (${worstRedeliveryMs} ms): a message republished after a crash later than that reaches the stream twice. Raise its duplicate_window`, {
      event: 'relay-duplicate-window', stream: options.name, duplicateWindowMs: windowMs, worstRedeliveryMs,
    });
  }
  return config;
}

/** The headers of a relayed message. */
export const HEADERS = { channel: 'Pgpubsub-Channel', op: 'Pgpubsub-Op', id: 'Pgpubsub-Id', traceparent: 'traceparent' } as const;

/** What a stored payload says of itself, for the headers: its op, and the traceparent of its context. */
function describe(payload: string): { op?: string; traceparent?: string } {
  try {
    const parsed = JSON.parse(payload) as { op?: unknown; context?: { traceparent?: unknown } };
    return {
      op: typeof parsed.op === 'string' ? parsed.op : undefined,
      traceparent: typeof parsed.context?.traceparent === 'string' ? parsed.context.traceparent : undefined,
    };
  } catch {
    return {};
  }
}

/** A publish that the message itself makes fail (it is charged an attempt); any other failure is the sink's. */
const MESSAGE_FAULT = /max_payload size exceeded/i;

/**
 * Publishes a batch, in order, and waits for every acknowledgement. Resolves to how many the
 * stream already had (republished after a crash, dropped by its duplicate window). A publish that
 * fails for NATS (down, no stream, a timeout) is a SinkUnavailableError: the batch waits in
 * PostgreSQL, charged nothing.
 */
export async function publishBatch(
  clients: NatsClients,
  js: JetStream,
  messages: readonly RawMessage[],
  options: { identity: string; schema: string; subjectPrefix: string; stream: string },
): Promise<number> {
  const acks = messages.map((message) => {
    const headers = clients.headers();
    const { op, traceparent } = describe(message.payload);
    headers.set(HEADERS.channel, message.channel);
    headers.set(HEADERS.id, message.id);
    if (op) headers.set(HEADERS.op, op);
    if (traceparent) headers.set(HEADERS.traceparent, traceparent);
    return js.publish(subjectOf(options.subjectPrefix, message.channel), message.payload, {
      msgID: messageId(options.identity, options.schema, message.id), headers, expect: { streamName: options.stream },
    });
  });
  const settled = await Promise.allSettled(acks);
  const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) {
    // The stream refused this message (400: over its max_msg_size, a per-subject limit, …), or the client its size.
    const refused = (failed.reason as { name?: string; status?: unknown })?.name === 'JetStreamApiError' && (failed.reason as { status?: unknown }).status === 400;
    if (refused || MESSAGE_FAULT.test(errorSummary(failed.reason))) throw failed.reason;
    throw new SinkUnavailableError(`NATS JetStream did not take the batch: ${errorSummary(failed.reason)}`, { cause: failed.reason });
  }
  return settled.filter((result) => (result as PromiseFulfilledResult<PubAck>).value.duplicate).length;
}
