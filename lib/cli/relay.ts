/**
 * `pgpubsub relay`: the stored notifications of the app's durable channels, moved into NATS
 * JetStream (lib/relay/relay.ts), by one process or a supervised cluster of them, as `listen` runs
 * listeners: the same signals, grace period, restarts and exit codes.
 */
import { type Command, Option } from 'commander';
import cluster from 'node:cluster';
import type { LoadedApp } from '../process/app-loader';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel, consoleLogger } from '../ops/logger';
import { leaveWith } from '../process/cluster';
import { commaList, parseDuration, positiveInteger } from './args';
import { type MetricsFlags, primaryMetrics, withMetricsOptions, workerMetricsFor } from './metrics-flags';

interface RelayCommandDeps {
  appFor(command: Command): Promise<LoadedApp>;
  exit: { usage: number };
}

interface RelayFlags extends MetricsFlags {
  nats: string[];
  channels?: string[];
  processes: number;
  worker?: boolean;
  subjectPrefix: string;
  stream: string;
  createStream: boolean;
  replicas: number;
  duplicateWindow: number;
  identity?: string;
  batchSize: number;
  gracePeriod: number;
  restartOnFailure: boolean;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

/** The relay's batch: its publishes are pipelined, so a larger one than a listener's costs no latency and saves transactions. */
const RELAY_BATCH_SIZE = 500;


export function addRelayCommand(program: Command, { appFor, exit }: RelayCommandDeps): void {
  withMetricsOptions(program.command('relay')
    .description('move the stored notifications of durable channels into NATS JetStream, exactly once (docs/scaling-out.md)')
    .requiredOption('--nats <urls>', 'the NATS servers, comma-separated: nats://host:4222[,nats://host2:4222]', commaList)
    .option('--channels <names>', 'the durable channels to relay, comma-separated (default: every durable channel)', commaList)
    .option('--processes <n>', 'relay processes (a supervised node:cluster)', positiveInteger('--processes'), 1)
    .option('--worker', 'run one relay in this process, no cluster (for systemd, Kubernetes)')
    .option('--subject-prefix <prefix>', 'subjects are <prefix>.<channel>', 'pgpubsub')
    .option('--stream <name>', 'the JetStream stream', 'PGPUBSUB')
    .option('--no-create-stream', 'refuse to start when the stream does not exist, rather than create it')
    .option('--replicas <n>', 'replicas of a stream the relay creates (3 on a three-server cluster)', positiveInteger('--replicas'), 1)
    .addOption(new Option('--duplicate-window <duration>', 'the duplicate window of a stream the relay creates (10m, 1h)').argParser(parseDuration('--duplicate-window')).default(600_000, '10m'))
    .option('--identity <name>', "what names this database in the message ids (default: the server's system identifier and the database's name)")
    .option('--batch-size <n>', 'notifications claimed and published per transaction', positiveInteger('--batch-size'), RELAY_BATCH_SIZE)
    .option('--grace-period <ms>', 'after SIGTERM/SIGINT, how long relays may take to finish their batch', positiveInteger('--grace-period'), 30_000)
    .option('--no-restart-on-failure', 'do not replace a relay process that dies'), 'relay')
    .addOption(new Option('--log-level <level>', 'lowest level logged').choices(LOG_LEVELS).default('info'))
    .addOption(new Option('--log-format <format>', 'pretty lines for people, json lines for collectors').choices(LOG_FORMATS).default('pretty'))
    .action(async (flags: RelayFlags, command: Command) => {
      if (flags.worker && flags.processes > 1) command.error('error: --worker runs a single relay; drop --processes or --worker', { exitCode: exit.usage });
      const slot = process.env.PGPUBSUB_WORKER_SLOT;
      const logger = consoleLogger({ level: flags.logLevel, format: flags.logFormat, stream: process.stdout, base: cluster.isWorker && slot ? { worker: Number(slot) } : {} });
      if (!flags.worker && cluster.isPrimary) {
        // Load the app once here, so that a broken app fails before any process is forked.
        const app = await appFor(command);
        app.pubsub.channels();
        const { supervise } = require('../process/supervisor') as typeof import('../process/supervisor');
        const metrics = await primaryMetrics(app, flags, logger);
        process.exitCode = await supervise({ processes: flags.processes, restartOnFailure: flags.restartOnFailure, gracePeriodMs: flags.gracePeriod, logger, state: metrics.state, env: metrics.env });
        await metrics.close();
        return;
      }
      const app = await appFor(command);
      (app.sequelize as unknown as { options: { logging: unknown } }).options.logging = false;
      const metrics = await workerMetricsFor(app, flags, logger);
      const { natsUnavailable, startRelay } = require('../relay/relay') as typeof import('../relay/relay');
      const { runWorker } = require('../process/worker') as typeof import('../process/worker');
      const code = await runWorker(app.pubsub, {
        batchSize: flags.batchSize,
        gracePeriodMs: flags.gracePeriod,
        logger,
        retryable: natsUnavailable,
        observe: metrics.observe,
        start: (options) => startRelay(app.pubsub, {
          ...options,
          nats: { servers: flags.nats },
          channels: flags.channels,
          subjectPrefix: flags.subjectPrefix,
          stream: flags.stream,
          createStream: flags.createStream,
          replicas: flags.replicas,
          duplicateWindowMs: flags.duplicateWindow,
          identity: flags.identity,
        }),
      });
      metrics.close();
      process.exitCode = leaveWith(code);
    });
}

/** `listen --from-nats`: the listener's callbacks fed from the relay's stream (an inbox) instead of this database's notifications. */
export interface InboxFlags {
  fromNats?: string[];
  stream: string;
  subjectPrefix: string;
  consumer: string;
}

/** Adds the inbox's options to `listen` (after its own, in --help). */
export function withInboxOptions(listen: Command): Command {
  return listen
    .option('--from-nats <urls>', 'run the callbacks on messages a relay put into NATS JetStream (an inbox; docs/scaling-out.md): the NATS servers, comma-separated', commaList)
    .option('--stream <name>', 'with --from-nats: the JetStream stream', 'PGPUBSUB')
    .option('--subject-prefix <prefix>', 'with --from-nats: the relay\'s subject prefix', 'pgpubsub')
    .option('--consumer <name>', 'with --from-nats: the durable consumer, shared by every process of this app', 'pgpubsub-inbox');
}

/** With --from-nats, what runWorker starts instead of a listener, and the NATS failures worth waiting out; else nothing. */
export function inboxWorker(app: LoadedApp, flags: InboxFlags & { channels?: string[]; timeoutMs?: number; callbackConcurrency?: number; batchSize?: number }): Pick<import('../process/worker').RunWorkerOptions, 'start' | 'retryable'> {
  if (!flags.fromNats) return {};
  const { startInbox } = require('../relay/start-inbox') as typeof import('../relay/start-inbox');
  const { natsUnavailable } = require('../relay/relay') as typeof import('../relay/relay');
  return {
    // The stream is the relay's to create: an inbox started first waits for it.
    retryable: (error) => natsUnavailable(error) || (error as Error | null)?.name === 'StreamNotFoundError',
    start: (options) => startInbox(app.pubsub, {
      nats: { servers: flags.fromNats! },
      stream: flags.stream,
      subjectPrefix: flags.subjectPrefix,
      consumer: flags.consumer,
      channels: flags.channels,
      timeoutMs: flags.timeoutMs,
      concurrency: flags.callbackConcurrency,
      batchSize: flags.batchSize,
      logger: options.logger,
    }),
  };
}
