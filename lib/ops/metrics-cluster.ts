/**
 * Metrics across a node:cluster listener: each worker counts what its listener does and answers
 * the primary's requests over IPC; the primary sums the workers' figures (prom-client's
 * aggregation), adds its own (workers, restarts, the database's gauges read once) and serves them
 * with /healthz and /readyz. A worker that does not answer within a second (starting, or a callback
 * holding its event loop) is left out of that scrape rather than failing it.
 */
import type { Worker } from 'node:cluster';
import { type Server, createServer } from 'node:http';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';

type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
import { errorSummary } from '../error-text';
import type { Listener } from '../listener/listener';
import type { Logger } from './logger';
import { DatabaseMetrics, ListenerMetrics, type Readiness, databaseReady, metricsHandler } from './metrics';
import type { PgPubSub } from '../pubsub';
import type { SupervisorState, WorkerMessage } from '../process/supervisor';

const REQUEST = 'pgpubsub:metrics-request';
const ANSWER_WITHIN_MS = 1000;

/** In a cluster worker: counts what its listener(s) do and answers the primary's requests. Returns the observer to give runWorker. */
export function workerMetrics(): (listener: Listener) => void {
  const metrics = new ListenerMetrics();
  process.on('message', (message: { type?: string; requestId?: number }) => {
    if (message?.type !== REQUEST || !process.send) return;
    void metrics.registry.getMetricsAsJSON().then((json) => {
      const answer: WorkerMessage = { type: 'pgpubsub:metrics', requestId: message.requestId!, metrics: json };
      if (process.connected) process.send!(answer);
    });
  });
  return (listener) => { metrics.observe(listener); };
}

let requests = 0;

/** Asks each worker for its metrics; resolves to those that answered within the time. */
async function fromWorkers(workers: readonly Worker[]): Promise<MetricsJson[]> {
  const requestId = ++requests;
  const answers = await Promise.all(workers.filter((worker) => worker.isConnected()).map((worker) => new Promise<MetricsJson | null>((resolve) => {
    const timer = setTimeout(() => { worker.off('message', onMessage); resolve(null); }, ANSWER_WITHIN_MS);
    const onMessage = (message: WorkerMessage) => {
      if (message?.type !== 'pgpubsub:metrics' || message.requestId !== requestId) return;
      clearTimeout(timer);
      worker.off('message', onMessage);
      resolve(message.metrics as MetricsJson);
    };
    worker.on('message', onMessage);
    worker.send({ type: REQUEST, requestId }, (error) => { if (error) { clearTimeout(timer); worker.off('message', onMessage); resolve(null); } });
  })));
  return answers.filter((answer): answer is MetricsJson => answer !== null);
}

export interface MetricsServerOptions {
  port: number;
  /** Default 127.0.0.1: the endpoint has no auth. 0.0.0.0 (every interface) for a scraper or the kubelet's probes from another address. */
  host?: string;
}

/** Listens; rejects with a message naming the port when it cannot (taken, or not allowed). */
export async function serve(handler: Parameters<typeof createServer>[1], options: MetricsServerOptions, log: Logger, what: string): Promise<Server> {
  const server = createServer(handler);
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`${what}: cannot listen on ${host}:${options.port} (${error.code ?? error.message}); choose another port`)));
    server.listen(options.port, host, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  log.info(`${what} on http://${host.includes(':') ? `[${host}]` : host}:${port}`, { event: 'http-listening', what, host, port });
  return server;
}

/**
 * The cluster primary's endpoint: the workers' metrics summed, the primary's own, and the
 * database's gauges; ready while at least one worker listens and the database answers.
 */
export async function servePrimaryMetrics(pubsub: PgPubSub, state: SupervisorState, options: MetricsServerOptions, log: Logger): Promise<Server> {
  const own = new Registry();
  new Gauge({
    name: 'pgpubsub_workers', help: "The cluster's worker processes: state 'running' (started) or 'listening'", labelNames: ['state'], registers: [own],
    collect() {
      this.set({ state: 'running' }, state.running.size);
      this.set({ state: 'listening' }, state.listening.size);
    },
  });
  new Counter({
    name: 'pgpubsub_worker_restarts_total', help: 'Workers replaced after dying', registers: [own],
    collect() { this.reset(); this.inc(state.restarts); },
  });
  let unreachable = false;
  new DatabaseMetrics(pubsub.admin, own, (error) => {
    if (!unreachable) log.warn(`metrics: could not read the database: ${errorSummary(error)}`, { event: 'metrics-database-unreachable' });
    unreachable = true;
  });
  const text = async () => {
    const [workers, mine] = await Promise.all([fromWorkers([...state.running.values()]), own.metrics()]);
    const summed = workers.length ? await AggregatorRegistry.aggregate(workers).metrics() : '';
    return summed ? `${summed.trimEnd()}\n\n${mine}` : mine;
  };
  const ready = async (): Promise<Readiness> => {
    if (state.listening.size === 0) return { ready: false, reason: 'no worker is listening (or each one fails its drains: the log says why)' };
    return databaseReady(pubsub.sequelize);
  };
  return serve(metricsHandler({ metrics: async () => ({ contentType: own.contentType, text: await text() }), ready }), options, log, 'metrics');
}

/** `--worker` with a metrics port: this process's listener and the database's gauges; ready while the listener listens. */
export async function serveWorkerMetrics(pubsub: PgPubSub, options: MetricsServerOptions, log: Logger): Promise<{ server: Server; observe: (listener: Listener) => void }> {
  const metrics = pubsub.metrics({ onError: (error) => log.debug(`metrics: could not read the database: ${errorSummary(error)}`, { event: 'metrics-database-unreachable' }) });
  const server = await serve(metrics.handler(), options, log, 'metrics');
  return { server, observe: (listener) => { metrics.observe(listener); } };
}
