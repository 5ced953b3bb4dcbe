/**
 * A listener in its own process, for the multi-process tests (test/listener-processes.test.ts).
 *
 *   DATABASE_URL=<test db url> node --require tsx/cjs test/support/listener-process.ts
 *
 * Optional env: SLOW_MS (delay in each author_created callback), BATCH_SIZE, HEARTBEAT_MS,
 * RECONNECT_MIN_MS (lower bound of the LISTEN reconnect backoff; also scales the drain retry delay).
 *
 * Talks to its parent in JSON lines on stdout:
 *   {"event":"listening","pid":…}                  once listening
 *   {"event":"idle","pid":…}                       once the start-up recovery drain has finished
 *   {"event":"reconnected","pid":…}                after the LISTEN connection came back
 *   {"event":"error","pid":…,"message":…}          the listener reported an error (it carries on)
 *   {"event":"stopped","pid":…,"stats":{…}}        after SIGTERM, once the batch in hand finished
 * Library logs go to stderr. Exits 0 after a clean stop, 1 if it could not start or stop.
 */
import { registerCallbacks } from '../../models/callbacks';
import { openApp } from './app';

/** application_name of this process's pool connections (its LISTEN connection is 'pgpubsub-listener'). */
export const CHILD_APPLICATION_NAME = 'pgpubsub-test-child';

function send(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ...message, pid: process.pid })}\n`);
}

function numberFromEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`listener-process: ${name} must be a non-negative number, got ${JSON.stringify(raw)}`);
  return value;
}

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('listener-process: DATABASE_URL is not set');
  const slowMs = numberFromEnv('SLOW_MS');
  const batchSize = numberFromEnv('BATCH_SIZE');
  const heartbeatMs = numberFromEnv('HEARTBEAT_MS');
  const reconnectMinMs = numberFromEnv('RECONNECT_MIN_MS');

  const app = openApp(url, { dialectOptions: { application_name: CHILD_APPLICATION_NAME } });
  registerCallbacks(app, { slowMs });

  // Signals that arrive while starting are honoured once the listener exists.
  let stopRequested = false;
  let stop: (() => void) | null = null;
  process.once('SIGTERM', () => {
    stopRequested = true;
    stop?.();
  });

  const listener = await app.sequelize.pgpubsub.listen({
    batchSize,
    recover: true,
    ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
    ...(reconnectMinMs !== undefined ? { reconnect: { minDelayMs: reconnectMinMs, maxDelayMs: Math.max(reconnectMinMs, 10_000) } } : {}),
  });
  // Without an 'error' listener, EventEmitter would throw the error and crash the process.
  listener.on('error', (error: unknown) => send({ event: 'error', message: error instanceof Error ? error.message : String(error) }));
  listener.on('reconnected', () => send({ event: 'reconnected' }));

  stop = () => {
    stop = null;
    void (async () => {
      try {
        await listener.stop();
        send({ event: 'stopped', stats: listener.stats });
        await app.sequelize.close();
        process.exit(0);
      } catch (error) {
        process.stderr.write(`listener-process: stop failed: ${(error as Error)?.stack ?? String(error)}\n`);
        process.exit(1);
      }
    })();
  };
  send({ event: 'listening' });
  // The start-up drain (recover: true) is in flight now; say when it is over, so that a test can
  // store rows that only an explicit wake-up (recover(), a NOTIFY) will make it look at.
  void listener.idle().then(() => send({ event: 'idle' }));
  if (stopRequested) stop();
}

// Only when run as a script: tests import CHILD_APPLICATION_NAME from here.
if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`listener-process: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  });
}
