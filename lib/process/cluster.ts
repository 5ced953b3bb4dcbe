import cluster from 'node:cluster';
import { type Logger, consoleLogger, toLogger } from '../ops/logger';
import type { PgPubSub } from '../pubsub';
import { type SuperviseOptions, supervise } from './supervisor';
import { type RunWorkerOptions, runWorker } from './worker';

/** What `runCluster()` takes: the listener's options, and the supervisor's. */
export interface ClusterOptions extends Omit<RunWorkerOptions, 'logger'>, Omit<SuperviseOptions, 'logger' | 'processes'> {
  /** Listener processes to keep running (default 1). */
  processes?: number;
  /** Where the primary and the workers log (default: pretty lines on stderr at `info`, each naming its process and worker slot). */
  logger?: Logger;
}

/**
 * `pgpubsub listen` as a function, for a `node:cluster` script of your own: in the primary it
 * forks `processes` workers (each runs the same script) and supervises them (restart with backoff,
 * crash-loop detection, the grace period on SIGTERM/SIGINT); in a worker it runs one listener until
 * the primary orders it to stop. Resolves to the exit code to leave with.
 *
 * @example
 * process.exitCode = await runCluster(sequelize.pgpubsub, { processes: 2, batchSize: 50 });
 */
export async function runCluster(pubsub: PgPubSub, options: ClusterOptions = {}): Promise<number> {
  const { processes = 1, restartOnFailure, crashLimit, crashWindowMs, minRestartDelayMs, maxRestartDelayMs, stableAfterMs, logger, ...listen } = options;
  const slot = process.env.PGPUBSUB_WORKER_SLOT;
  // A logger of yours called as the listener calls it (pino's fields first, `err` kept).
  const log = logger ? toLogger(logger, 'runCluster({ logger })') : consoleLogger({ level: 'info', base: cluster.isWorker && slot ? { worker: Number(slot) } : {} });
  if (cluster.isPrimary) {
    return supervise({
      processes, logger: log, restartOnFailure, crashLimit, crashWindowMs, minRestartDelayMs, maxRestartDelayMs, stableAfterMs,
      gracePeriodMs: listen.gracePeriodMs,
    });
  }
  return leaveWith(await runWorker(pubsub, { ...listen, logger: log }));
}

/** A listener process is done with `code`: lets go of the primary, and leaves even if a callback still holds the event loop. */
export function leaveWith(code: number): number {
  // A cluster worker's IPC channel would keep it alive.
  if (cluster.isWorker) process.disconnect?.();
  // Past the grace period a callback may still hold the event loop: leave without it.
  if (code !== 0) setTimeout(() => process.exit(code), 100).unref();
  return code;
}
