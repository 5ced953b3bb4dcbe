/**
 * OpenTelemetry, when the app has it (`@opentelemetry/api`, an optional peer dependency): a write
 * to a channel's model, or a notify(), made inside an active span stores that span's W3C
 * `traceparent` in the notification's context (through the setting context() reads); each callback then runs in a consumer span that is the child of that span (for a
 * batch, linked to each), so a write and its processing show in one trace. Without the package,
 * or without a tracer provider registered, nothing here does any work.
 */
import type * as Api from '@opentelemetry/api';
import type { Sequelize, Transaction } from 'sequelize';
import { TRACE_SETTING } from '../channels/context';

let loaded: typeof Api | null | undefined;

/** The app's @opentelemetry/api, or null when it has none. */
export function otel(): typeof Api | null {
  if (loaded === undefined) {
    try {
      loaded = require('@opentelemetry/api') as typeof Api;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

/** A tracer provider is registered (not the API's no-op one): a few property reads, asked each time (a provider may come at any time). */
function tracing(api: typeof Api): boolean {
  const provider = api.trace.getTracerProvider() as { getDelegate?: () => object };
  const delegate = provider.getDelegate ? provider.getDelegate() : provider;
  return delegate.constructor?.name !== 'NoopTracerProvider';
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The W3C traceparent of the active span, or null. */
export function activeTraceparent(api: typeof Api): string | null {
  const context = api.trace.getActiveSpan()?.spanContext();
  if (!context || !api.isSpanContextValid(context)) return null;
  return `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 1) === 1 ? '01' : '00'}`;
}

/** A stored traceparent as a remote span context; null when it is not one. */
export function parseTraceparent(value: unknown): Api.SpanContext | null {
  const match = typeof value === 'string' ? TRACEPARENT.exec(value) : null;
  if (!match || /^0+$/.test(match[1]) || /^0+$/.test(match[2])) return null;
  return { traceId: match[1], spanId: match[2], traceFlags: Number.parseInt(match[3], 16) & 1, isRemote: true };
}

/** The options of a query that stores a notification through send() (notify()). */
export const SENDS = Symbol('pgpubsub sends');

const WRITES = new Set(['INSERT', 'UPDATE', 'BULKUPDATE', 'BULKDELETE', 'DELETE', 'UPSERT']);
const SET = 'SELECT pg_catalog.set_config($1, $2, $3)';

interface QueryOptions { type?: string; transaction?: Transaction | null; model?: { options?: { pgpubsub?: unknown } }; instance?: { constructor?: { options?: { pgpubsub?: unknown } } }; [SENDS]?: boolean }
interface RawQuery { connection: { query(text: string, values: unknown[]): Promise<unknown> }; [CLEAR]?: boolean }
const CLEAR = Symbol('pgpubsub clears the traceparent');

/**
 * Sets the trace setting on the connection before each write that may store notifications (a
 * model with channels, or one Sequelize does not name, or notify()) while a span is active: once
 * per transaction and trace position, or around an autocommit statement. Installed only when
 * @opentelemetry/api is there.
 */
export function traceProducers(sequelize: Sequelize): void {
  const api = otel();
  if (!api) return;
  const set = new WeakMap<Transaction, string>();
  // Sequelize's hook types know neither the raw connection nor our marks.
  const addHook = sequelize.addHook.bind(sequelize) as unknown as (name: string, key: string, hook: (options: QueryOptions, query: RawQuery) => Promise<void>) => void;
  addHook('beforeQuery', 'pgpubsub-traceparent', async (options: QueryOptions, query: RawQuery) => {
    if (!options[SENDS] && !WRITES.has(options.type ?? '')) return;
    const model = options.model ?? options.instance?.constructor;
    if (model && !model.options?.pgpubsub) return;
    if (!tracing(api)) return;
    const traceparent = activeTraceparent(api);
    const transaction = options.transaction ?? null;
    if (transaction) {
      if ((set.get(transaction) ?? null) === traceparent) return;
      await query.connection.query(SET, [TRACE_SETTING, traceparent ?? '', true]);
      if (traceparent) set.set(transaction, traceparent);
      else set.delete(transaction);
      return;
    }
    if (!traceparent) return;
    // Autocommit: for this statement only, cleared after it.
    await query.connection.query(SET, [TRACE_SETTING, traceparent, false]);
    query[CLEAR] = true;
  });
  addHook('afterQuery', 'pgpubsub-traceparent', async (_options: QueryOptions, query: RawQuery) => {
    if (!query[CLEAR]) return;
    query[CLEAR] = false;
    await query.connection.query(SET, [TRACE_SETTING, '', false]).catch(() => undefined);
  });
}

/** What a consumer span is made of: the messages it runs, each with its stored traceparent. */
export interface TracedMessage {
  id: string | null;
  attempt: number;
  traceparent: unknown;
}

/** A consumer span begun: run the callbacks in it, end it with their outcome. */
export interface ConsumerSpan {
  run<R>(work: () => R): R;
  end(error?: unknown): void;
}

/**
 * A consumer span `<channel> process` when a tracer provider is registered, else null: the child
 * of the one message's producer span (and linked to it), or, for a batch, linked to each.
 */
export function consumerSpan(channel: string, messages: readonly TracedMessage[]): ConsumerSpan | null {
  const api = otel();
  if (!api || !tracing(api)) return null;
  const remotes = messages.map((message) => parseTraceparent(message.traceparent)).filter((c): c is Api.SpanContext => c !== null);
  const parent = messages.length === 1 && remotes.length === 1 ? api.trace.setSpanContext(api.context.active(), remotes[0]) : api.context.active();
  const attributes: Api.Attributes = {
    'messaging.system': 'pgpubsub',
    'messaging.destination.name': channel,
    'messaging.operation.type': 'process',
    'messaging.operation.name': 'process',
  };
  if (messages.length === 1) {
    if (messages[0].id !== null) attributes['messaging.message.id'] = messages[0].id;
    attributes['pgpubsub.attempt'] = messages[0].attempt;
  } else {
    attributes['messaging.batch.message_count'] = messages.length;
  }
  const span = api.trace.getTracer('sequelize-pgpubsub').startSpan(`${channel} process`, { kind: api.SpanKind.CONSUMER, attributes, links: remotes.map((context) => ({ context })) }, parent);
  const inside = api.trace.setSpan(parent, span);
  return {
    run: (work) => api.context.with(inside, work),
    end(error?: unknown) {
      if (error !== undefined) {
        span.recordException(error instanceof Error ? error : String(error));
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      }
      span.end();
    },
  };
}
