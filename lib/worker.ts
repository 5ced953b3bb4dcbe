import cluster from 'node:cluster';
import type { Listener, ListenOptions } from './listener';
import type { Logger } from './logger';
import type { PgPubSub } from './pubsub';
import type { WorkerMessage } from './supervisor';

/**
 * Runs one listener in this process until SIGTERM/SIGINT: then it stops claiming, finishes the
 * batch in hand, closes its connections and resolves to 0. A second signal exits at once with 1.
 * In a cluster worker it tells the primary when it is listening and when it stopped.
 */
export async function runWorker(pubsub: PgPubSub, options: ListenOptions & { logger: Logger }): Promise<number> {
  const log = options.logger;
  const tell = (message: WorkerMessage) => new Promise<void>((resolve) => {
    if (!cluster.isWorker || !process.send) resolve();
    else process.send(message, undefined, {}, () => resolve());
  });
  let listener: Listener;
  try {
    listener = await pubsub.listen(options);
  } catch (error) {
    log.error(`could not start listening: ${(error as Error).message}`);
    await pubsub.sequelize.close().catch(() => undefined);
    return 1;
  }
  await tell({ type: 'pgpubsub:listening' });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${why}; finishing the batch in hand`);
      void listener.stop()
        .then(() => pubsub.sequelize.close())
        .then(async () => {
          await tell({ type: 'pgpubsub:stopped', stats: listener.stats });
          process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
          resolve(0);
        }, (error: Error) => {
          log.error(`error while stopping: ${error.message}`);
          resolve(1);
        });
    };
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      // A cluster worker takes orders from its primary: a terminal's Ctrl+C or systemd's SIGTERM
      // reaches the whole process group, and the primary relays it as 'shutdown' (or SIGKILL to force).
      if (cluster.isWorker) return;
      if (++signals > 1) {
        log.warn(`${signal} received again; exiting without waiting for the batch`);
        process.exit(1);
      }
      stop(`${signal} received`);
    };
    process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
    if (cluster.isWorker) {
      process.on('message', (message: { type?: string }) => {
        if (message?.type === 'pgpubsub:shutdown') stop('shutdown requested by the primary');
      });
      // The primary is gone (killed): stop cleanly rather than run unsupervised.
      process.on('disconnect', () => stop('primary disconnected'));
    }
  });
}
