/**
 * Prometheus metrics (prom-client) and the health endpoints: what a listener did (counters and
 * histograms per channel, fed by its events), what the database holds (gauges read at each scrape
 * from admin.status()), and an HTTP handler serving /metrics, /healthz and /readyz.
 * `pgpubsub listen --metrics-port` serves them from the cluster primary, summed over its workers;
 * `sequelize.pgpubsub.metrics()` gives the same to apps that call listen() themselves.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Sequelize } from 'sequelize';
import type { Admin, ChannelStatus, Status } from './admin';
import { errorSummary } from '../error-text';
import type { Listener } from '../listener/listener';
import { FAILING_AFTER } from '../listener/drain';
import type { ListenerEvents } from '../listener/types';
import { LIBRARY_QUERY } from '../db/sql-text';

const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/** What a relay adds to a listener's figures (lib/relay/relay.ts). */
interface RelayFigures {
  readonly relayStats: { readonly duplicates: number };
  readonly natsConnected: boolean;
}

/** What listeners do, fed by their events: one set per process (summed over a cluster's workers). */
export class ListenerMetrics {
  readonly registry: Registry;
  readonly #processed: Counter<'channel'>;
  readonly #failures: Counter<'channel' | 'outcome'>;
  readonly #duration: Histogram<'channel' | 'ok'>;
  readonly #lag: Histogram<'channel'>;
  readonly #broadcasts: Counter<'channel'>;
  readonly #ranAlone: Counter;
  readonly #reconnects: Counter;
  /** The relays observed (lib/relay/relay.ts): their own figures are read at each scrape. */
  readonly #relays = new Set<RelayFigures>();
  #relayMetrics = false;
  #goneDuplicates = 0;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.#processed = new Counter({ name: 'pgpubsub_processed_total', help: 'Stored notifications whose callbacks ran and committed', labelNames: ['channel'], registers });
    this.#failures = new Counter({
      name: 'pgpubsub_callback_failures_total', help: "Callback failures: outcome 'retry' (kept for a retry) or 'failed' (failed for good)", labelNames: ['channel', 'outcome'], registers,
    });
    this.#duration = new Histogram({
      name: 'pgpubsub_callback_duration_seconds', help: "How long a message's callbacks took (ok: 'true', or 'false' when they threw or timed out)", labelNames: ['channel', 'ok'], buckets: DURATION_BUCKETS, registers,
    });
    this.#lag = new Histogram({
      name: 'pgpubsub_lag_seconds', help: "From a stored notification's producing transaction to its callbacks' start", labelNames: ['channel'], buckets: LAG_BUCKETS, registers,
    });
    this.#broadcasts = new Counter({ name: 'pgpubsub_broadcasts_total', help: "Broadcasts whose callbacks ran and committed", labelNames: ['channel'], registers });
    this.#ranAlone = new Counter({ name: 'pgpubsub_ran_alone_total', help: 'Notifications a dead process held, run alone', registers });
    this.#reconnects = new Counter({ name: 'pgpubsub_reconnects_total', help: 'Times a LISTEN connection was lost and made again', registers });
  }

  /**
   * A relay's own figures, registered with the first relay observed (a plain listener's scrape has
   * none of them): read at each scrape, the duplicates of relays no longer observed kept in the sum.
   */
  #observeRelay(relay: RelayFigures): () => void {
    if (!this.#relayMetrics) {
      const relays = this.#relays;
      const gone = () => this.#goneDuplicates;
      this.#relayMetrics = true;
      new Counter({
        name: 'pgpubsub_relay_duplicates_total', help: 'Messages a relay published that the stream already had (republished after a failed commit or a crash, and dropped there)', registers: [this.registry],
        collect() {
          this.reset();
          this.inc(gone() + [...relays].reduce((sum, observed) => sum + observed.relayStats.duplicates, 0));
        },
      });
      new Gauge({
        name: 'pgpubsub_relay_nats_connected', help: 'Relays connected to NATS (a relay whose connection is lost leaves its rows stored until it is back)', registers: [this.registry],
        collect() {
          this.set([...relays].filter((observed) => observed.natsConnected).length);
        },
      });
    }
    this.#relays.add(relay);
    return () => {
      if (!this.#relays.delete(relay)) return;
      this.#goneDuplicates += relay.relayStats.duplicates;
    };
  }

  /** Counts what `listener` does from now on; returns the function that stops counting. */
  observe(listener: Listener): () => void {
    const detach: Array<() => void> = [];
    const on = <K extends keyof ListenerEvents & string>(event: K, handler: (...args: ListenerEvents[K]) => void) => {
      listener.on(event, handler as never);
      detach.push(() => listener.off(event, handler as never));
    };
    on('processed', (_ids, channels) => { for (const channel of channels) this.#processed.inc({ channel }); });
    on('failed', ({ channel, failedForGood }) => this.#failures.inc({ channel, outcome: failedForGood ? 'failed' : 'retry' }));
    on('message:start', ({ channel, lagMs }) => { if (lagMs !== null) this.#lag.observe({ channel }, Math.max(0, lagMs) / 1000); });
    on('message:done', ({ channel, durationMs, ok }) => this.#duration.observe({ channel, ok: String(ok) }, durationMs / 1000));
    on('broadcast', (channel) => this.#broadcasts.inc({ channel }));
    on('ranAlone', () => this.#ranAlone.inc());
    on('reconnected', () => this.#reconnects.inc());
    // A relay: its messages are counted as processed (relayed), and its own figures read at each scrape.
    if ('relayStats' in listener) detach.push(this.#observeRelay(listener as unknown as RelayFigures));
    return () => { for (const off of detach) off(); };
  }
}

/** The channel label of every channel no code of this app defines, summed into one series. */
export const UNDEFINED_CHANNELS_LABEL = '(undefined)';

/**
 * The app's channels as they are, and those no code here defines summed into one: any role granted
 * send() can invent channels, and each would otherwise be six more series.
 */
function foldUndefined(channels: readonly ChannelStatus[]): ChannelStatus[] {
  const defined = channels.filter((c) => c.defined);
  const strays = channels.filter((c) => !c.defined);
  if (strays.length === 0) return defined;
  const oldest = strays.map((c) => c.oldestDueAgeMs).filter((age): age is number => age !== null);
  return [...defined, {
    channel: UNDEFINED_CHANNELS_LABEL, defined: false,
    due: strays.reduce((sum, c) => sum + c.due, 0), waiting: strays.reduce((sum, c) => sum + c.waiting, 0), failed: strays.reduce((sum, c) => sum + c.failed, 0), blocked: strays.reduce((sum, c) => sum + c.blocked, 0),
    oldestDueAgeMs: oldest.length ? Math.max(...oldest) : null, recentLagMs: null, estimated: strays.some((c) => c.estimated),
    listeners: Math.max(...strays.map((c) => c.listeners)), draining: strays.some((c) => c.draining), paused: strays.some((c) => c.paused), inboxFailed: strays.reduce((sum, c) => sum + c.inboxFailed, 0),
  }];
}

/**
 * What the database holds, read at each scrape (one admin.status() per scrape, however many gauges
 * ask): stored notifications per channel and state, the oldest due one's age, listeners, pauses.
 * A scrape while the database is unreachable gives pgpubsub_database_up 0 and no other figure.
 */
export class DatabaseMetrics {
  readonly registry: Registry;
  readonly #admin: Admin;
  #reading: Promise<Status | null> | null = null;

  constructor(admin: Admin, registry: Registry = new Registry(), onError: (error: unknown) => void = () => undefined) {
    this.registry = registry;
    this.#admin = admin;
    const registers = [registry];
    // One read per scrape: the gauges collect at once, and share the read under way.
    const status = () => {
      if (!this.#reading) {
        this.#reading = this.#admin.status()
          .catch((error: unknown) => { onError(error); return null; })
          .finally(() => { this.#reading = null; });
      }
      return this.#reading;
    };
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], fill: (g: Gauge<L>, s: Status) => void) => new Gauge<L>({
      name, help, labelNames, registers,
      async collect() {
        const read = await status();
        this.reset();
        if (read) fill(this, { ...read, channels: foldUndefined(read.channels) });
      },
    });
    new Gauge({
      name: 'pgpubsub_database_up', help: "1 when this scrape's read of the database succeeded", registers,
      async collect() { this.set((await status()) ? 1 : 0); },
    });
    gauge('pgpubsub_notifications', "Stored notifications per channel: state 'due' (due now), 'waiting' (for a retry or a delay), 'failed' (failed for good)", ['channel', 'state'], (g, s) => {
      for (const c of s.channels) {
        g.set({ channel: c.channel, state: 'due' }, c.due);
        g.set({ channel: c.channel, state: 'waiting' }, c.waiting);
        g.set({ channel: c.channel, state: 'failed' }, c.failed);
      }
    });
    gauge('pgpubsub_oldest_due_age_seconds', "Age of the channel's oldest due notification (0 when none is due)", ['channel'], (g, s) => {
      for (const c of s.channels) g.set({ channel: c.channel }, (c.oldestDueAgeMs ?? 0) / 1000);
    });
    gauge('pgpubsub_channel_listeners', 'Live listeners on the channel (each holds its listening lock)', ['channel'], (g, s) => {
      for (const c of s.channels) g.set({ channel: c.channel }, c.listeners);
    });
    gauge('pgpubsub_blocked_keys', "Keys held by a notification that failed for good (afterFailure: 'block'): their later notifications wait", ['channel'], (g, s) => {
      for (const c of s.channels) g.set({ channel: c.channel }, c.blocked);
    });
    gauge('pgpubsub_channel_paused', '1 while the channel is paused', ['channel'], (g, s) => {
      for (const c of s.channels) g.set({ channel: c.channel }, c.paused ? 1 : 0);
    });
    gauge('pgpubsub_listeners_up', 'Live listener connections to this database, from every process and host', [], (g, s) => g.set(s.listeners.length));
    gauge('pgpubsub_dead_rows', "Dead row versions in the notification table (the server's estimate): processed notifications vacuum has not removed yet", [], (g, s) => g.set(s.cleanup.deadRows));
    gauge('pgpubsub_cleanup_held_back_xmin_age', "Age, in transactions, of the oldest xmin holding back the notification table's cleanup (0 when nothing does)", [], (g, s) => g.set(s.cleanup.heldBackBy?.xminAge ?? 0));
    gauge('pgpubsub_cleanup_held_back_seconds', "How long the transaction holding back the notification table's cleanup has been open, where the server says (0 otherwise)", [], (g, s) => g.set((s.cleanup.heldBackBy?.openMs ?? 0) / 1000));
  }
}

/** The listener and database metrics in one registry, with health endpoints: `sequelize.pgpubsub.metrics()`. */
export class PubSubMetrics {
  readonly registry: Registry;
  readonly listeners: ListenerMetrics;
  readonly database: DatabaseMetrics | null;
  readonly #sequelize: Sequelize;
  readonly #observed = new Set<Listener>();

  constructor(sequelize: Sequelize, admin: Admin, options: MetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    this.#sequelize = sequelize;
    this.listeners = new ListenerMetrics(this.registry);
    this.database = options.database === false ? null : new DatabaseMetrics(admin, this.registry, options.onError);
  }

  /** Counts what `listener` does, and makes /readyz wait for it to listen. Returns the function that stops both. */
  observe(listener: Listener): () => void {
    const stop = this.listeners.observe(listener);
    this.#observed.add(listener);
    return () => { stop(); this.#observed.delete(listener); };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text of every metric (reads the database for the gauges). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Ready: every observed listener listening (at least one observed), and the database answering. */
  async ready(): Promise<Readiness> {
    const listeners = [...this.#observed];
    if (listeners.length === 0) return { ready: false, reason: 'no listener is observed (metrics.observe(listener))' };
    if (!listeners.every((listener) => listener.listening)) return { ready: false, reason: 'a listener is not listening (starting, reconnecting or stopping)' };
    const failing = listeners.find((listener) => listener.drainFailures >= FAILING_AFTER);
    if (failing) return { ready: false, reason: `a listener's last ${failing.drainFailures} drains failed (its log says why)` };
    return databaseReady(this.#sequelize);
  }

  /** A plain Node http handler serving /metrics, /healthz and /readyz (see metricsHandler). */
  handler(): (request: IncomingMessage, response: ServerResponse) => void {
    return metricsHandler({ metrics: async () => ({ contentType: this.contentType, text: await this.text() }), ready: () => this.ready() });
  }
}

export interface MetricsOptions {
  /** The prom-client registry to register in (default: one of its own). Pass yours to serve them with your other metrics. */
  registry?: Registry;
  /** The gauges read from the database at each scrape (default true). */
  database?: boolean;
  /** Told when a scrape cannot read the database (pgpubsub_database_up is 0 then). */
  onError?: (error: unknown) => void;
}

export interface Readiness { ready: boolean; reason?: string }

/** The database answers `SELECT 1` within 2 s. */
export async function databaseReady(sequelize: Sequelize, timeoutMs = 2000): Promise<Readiness> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      sequelize.query('SELECT 1', LIBRARY_QUERY),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs); }),
    ]);
    return { ready: true };
  } catch (error) {
    return { ready: false, reason: `the database is not reachable: ${errorSummary(error)}` };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * An http handler: GET /metrics (Prometheus text), /healthz (200 while the process runs), /readyz
 * (200 when `ready` says so, else 503 with the reason). Other paths 404, other methods 405.
 */
export function metricsHandler(source: {
  metrics: () => Promise<{ contentType: string; text: string }>;
  ready: () => Promise<Readiness>;
}): (request: IncomingMessage, response: ServerResponse) => void {
  const send = (response: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8') => {
    response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  };
  return (request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (!['/metrics', '/healthz', '/readyz'].includes(path)) return send(response, 404, `not found: ${path} (try /metrics, /healthz, /readyz)\n`);
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('allow', 'GET, HEAD');
      return send(response, 405, `${request.method} not allowed on ${path}\n`);
    }
    void (async () => {
      try {
        if (path === '/healthz') return send(response, 200, 'ok\n');
        if (path === '/readyz') {
          const readiness = await source.ready();
          return send(response, readiness.ready ? 200 : 503, readiness.ready ? 'ready\n' : `not ready: ${readiness.reason}\n`);
        }
        const { contentType, text } = await source.metrics();
        send(response, 200, text, contentType);
      } catch (error) {
        send(response, 500, `could not collect the metrics: ${errorSummary(error)}\n`);
      }
    })();
  };
}
