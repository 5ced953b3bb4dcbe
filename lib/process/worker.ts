import cluster from 'node:cluster';
import { jitteredBackoff } from './backoff';
import { errorSummary, isUnreachable } from '../error-text';
import { LibraryVersionError, MissingTableError } from '../errors';
import { FAILING_AFTER } from '../listener/drain';
import type { Listener } from '../listener/listener';
import type { ListenerStats, ListenOptions } from '../listener/types';
import type { Logger } from '../ops/logger';
import type { PgPubSub } from '../pubsub';
import type { WorkerMessage } from './supervisor';

/** What a worker runs: a Listener (a relay is one), or what behaves as one here (an inbox). */
export interface WorkerListener {
  stop(): Promise<void>;
  readonly stats: Readonly<ListenerStats>;
  readonly drainFailures: number;
  on(event: 'ranAlone' | 'drain:end', handler: () => void): unknown;
}

export interface RunWorkerOptions extends ListenOptions {
  logger: Logger;
  /** After SIGTERM/SIGINT (or the primary's order), how long the batch in hand may take before the process exits 1. Default 30000. */
  gracePeriodMs?: number;
  /** Start-up connection retry bounds, in ms (default 500 to 30000, doubling, with jitter). */
  startRetry?: { minDelayMs?: number; maxDelayMs?: number };
  /** Called with the listener once it listens (e.g. `metrics.observe`). */
  observe?: (listener: Listener) => void;
  /** What starts the listener: default `pubsub.listen(options)`; a relay's or an inbox's start (lib/relay/) for `pgpubsub relay` and `listen --from-nats`. */
  start?: (options: ListenOptions) => Promise<WorkerListener>;
  /** Start-up failures worth trying again besides an unreachable database (a relay's NATS down). */
  retryable?: (error: unknown) => boolean;
}

/**
 * Runs one listener in this process until SIGTERM/SIGINT: then it stops claiming, finishes the
 * batch in hand (for at most the grace period), closes its connections and resolves to 0. A second
 * signal, or the grace period running out, resolves to 1 at once. While the database cannot be
 * reached at start it keeps trying, with backoff; a database without the library resolves to 1.
 * In a cluster worker it tells the primary when it is listening, what it runs alone, and when it stopped.
 */
export async function runWorker(pubsub: PgPubSub, options: RunWorkerOptions): Promise<number> {
  const { logger: log, gracePeriodMs = 30_000, startRetry = {}, observe, start = (given) => pubsub.listen(given), retryable = () => false, ...listenOptions } = options;
  const tell = (message: WorkerMessage) => new Promise<void>((resolve) => {
    if (!cluster.isWorker || !process.send || !process.connected) resolve();
    else process.send(message, undefined, {}, () => resolve());
  });

  let listener: WorkerListener | null = null;
  let stopping = false;
  let signals = 0;
  let finish: (code: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => { finish = resolve; });
  let wakeStartLoop: () => void = () => undefined;

  let starting = true;
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${why}; finishing the batch in hand`, { event: 'stopping', reason: why });
    wakeStartLoop();
    // While listen() is under way, the start loop calls shutDown once it has settled.
    if (!starting) shutDown();
  };
  const shutDown = () => {
    const grace = setTimeout(() => {
      log.error(`the batch in hand did not finish within the grace period (${gracePeriodMs} ms); exiting without it (its notifications stay stored)`, { event: 'grace-period-over', gracePeriodMs });
      finish(1);
    }, gracePeriodMs);
    grace.unref();
    void (async () => {
      try {
        await listener?.stop();
        await pubsub.sequelize.close();
        await tell({ type: 'pgpubsub:stopped', stats: listener?.stats ?? null });
        finish(0);
      } catch (error) {
        log.error(`error while stopping: ${errorSummary(error)}`, { event: 'stop-failed' });
        finish(1);
      } finally {
        clearTimeout(grace);
      }
    })();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    // A cluster worker takes orders from its primary: a terminal's Ctrl+C or systemd's SIGTERM
    // reaches the whole process group, and the primary relays it as 'shutdown' (or SIGKILL to force).
    if (cluster.isWorker) return;
    if (++signals > 1) {
      log.warn(`${signal} received again; exiting without waiting for the batch`, { event: 'signal-again', signal });
      finish(1);
      return;
    }
    stop(`${signal} received`);
  };
  // Installed before connecting: an order that comes while the worker is still starting is kept.
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  const onMessage = (message: { type?: string }) => {
    if (message?.type === 'pgpubsub:shutdown') stop('shutdown requested by the primary');
  };
  const onDisconnect = () => stop('primary disconnected');
  if (cluster.isWorker) {
    process.on('message', onMessage);
    // The primary is gone (killed): stop cleanly rather than run unsupervised.
    process.on('disconnect', onDisconnect);
  }
  const cleanUp = () => {
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal).off('message', onMessage).off('disconnect', onDisconnect);
  };

  const minDelayMs = startRetry.minDelayMs ?? 500;
  const maxDelayMs = startRetry.maxDelayMs ?? 30_000;
  for (let attempt = 1; !stopping; attempt++) {
    try {
      listener = await start({
        ...listenOptions,
        logger: log,
        beforeRunningAlone: async (info) => {
          await tell({ type: 'pgpubsub:alone', ...info });
          await listenOptions.beforeRunningAlone?.(info);
        },
      });
      listener.on('ranAlone', () => void tell({ type: 'pgpubsub:alone-done' }));
      // Listening but failing every drain (a role that cannot write, say): the primary's /readyz says so.
      let failing = false;
      const started = listener;
      started.on('drain:end', () => {
        if (failing === started.drainFailures >= FAILING_AFTER) return;
        failing = !failing;
        void tell({ type: failing ? 'pgpubsub:failing' : 'pgpubsub:listening' });
      });
      // Metrics observe a Listener (a relay is one); an inbox is not (told by its lack of wake()).
      if ('wake' in listener) observe?.(listener as Listener);
      break;
    } catch (error) {
      if (!isUnreachable(error) && !retryable(error)) {
        const reason = `could not start listening: ${errorSummary(error)}`;
        // The library missing or at another version: nothing could be checked, exit 2 as every command.
        const code = error instanceof LibraryVersionError || error instanceof MissingTableError ? 2 : 1;
        log.error(reason, { event: 'start-failed', err: error, exitCode: code });
        await tell({ type: 'pgpubsub:fatal', reason, code });
        await pubsub.sequelize.close().catch(() => undefined);
        cleanUp();
        return code;
      }
      if (stopping) break;
      const delay = jitteredBackoff(attempt, minDelayMs, maxDelayMs);
      log.warn(`could not reach ${isUnreachable(error) ? 'the database' : 'what it needs'} (try ${attempt}); trying again in ${delay} ms`, { event: 'unreachable', attempt, delayMs: delay, err: error });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wakeStartLoop = () => { clearTimeout(timer); resolve(); };
      });
    }
  }
  starting = false;
  if (stopping) shutDown();
  else await tell({ type: 'pgpubsub:listening' });
  const code = await finished;
  cleanUp();
  return code;
}
