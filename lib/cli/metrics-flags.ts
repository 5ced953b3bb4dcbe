/**
 * `--metrics-port` and `--metrics-host`, as `listen` and `relay` both take them: the cluster
 * primary serves its workers' figures summed with the database's gauges and the probes
 * (lib/ops/metrics-cluster.ts); a `--worker` process serves its own.
 */
import type { Command } from 'commander';
import cluster from 'node:cluster';
import type { Server } from 'node:http';
import type { Listener } from '../listener/listener';
import type { Logger } from '../ops/logger';
import type { LoadedApp } from '../process/app-loader';
import type { SupervisorState } from '../process/supervisor';
import { portNumber } from './args';

/** Set in a worker's environment when its primary serves metrics (lib/ops/metrics-cluster.ts answers its requests). */
export const METRICS_ENV = 'PGPUBSUB_METRICS';

export interface MetricsFlags {
  metricsPort?: number;
  metricsHost?: string;
}

/** Adds the two options; `what` names the processes in --help ('worker', 'relay'). */
export function withMetricsOptions(command: Command, what: string): Command {
  return command
    .option('--metrics-port <port>', `serve Prometheus metrics (/metrics) and probes (/healthz, /readyz) on this port, from the primary for every ${what}`, portNumber('--metrics-port'))
    .option('--metrics-host <address>', 'the address the metrics port binds (0.0.0.0 for a scraper or probes from another address: it has no auth)', '127.0.0.1');
}

function stopServing(server: Server | null): void {
  server?.close();
  server?.closeAllConnections();
}

/**
 * In the cluster primary, before it forks: the supervisor's state and its workers' environment,
 * and, with a metrics port, the endpoint (which keeps the app's connections for the database's
 * gauges and /readyz; without one they close here). `close()` after the supervisor returns.
 */
export async function primaryMetrics(app: LoadedApp, flags: MetricsFlags, logger: Logger): Promise<{ state: SupervisorState; env: Record<string, string>; close(): Promise<void> }> {
  const { SupervisorState } = require('../process/supervisor') as typeof import('../process/supervisor');
  const state = new SupervisorState();
  if (flags.metricsPort === undefined) {
    await app.sequelize.close();
    return { state, env: {}, close: async () => undefined };
  }
  const { servePrimaryMetrics } = require('../ops/metrics-cluster') as typeof import('../ops/metrics-cluster');
  const server = await servePrimaryMetrics(app.pubsub, state, { port: flags.metricsPort, host: flags.metricsHost }, logger);
  return {
    state,
    env: { [METRICS_ENV]: '1' },
    async close() {
      stopServing(server);
      await app.sequelize.close();
    },
  };
}

/**
 * In a process that runs a listener (or a relay): what counts its work for the metrics, when
 * anything does (the primary's endpoint, or this process's own with `--worker --metrics-port`).
 */
export async function workerMetricsFor(app: LoadedApp, flags: MetricsFlags & { worker?: boolean }, logger: Logger): Promise<{ observe?: (listener: Listener) => void; close(): void }> {
  const forPrimary = cluster.isWorker && process.env[METRICS_ENV] === '1';
  const ownPort = !cluster.isWorker && flags.worker && flags.metricsPort !== undefined;
  // Without metrics, prom-client is never loaded.
  if (!forPrimary && !ownPort) return { close: () => undefined };
  const { serveWorkerMetrics, workerMetrics } = require('../ops/metrics-cluster') as typeof import('../ops/metrics-cluster');
  if (forPrimary) return { observe: workerMetrics(), close: () => undefined };
  const { server, observe } = await serveWorkerMetrics(app.pubsub, { port: flags.metricsPort!, host: flags.metricsHost }, logger);
  return { observe, close: () => stopServing(server) };
}
