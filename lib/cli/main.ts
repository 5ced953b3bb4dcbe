import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import cluster from 'node:cluster';
import path from 'node:path';
import type { LoadedApp } from '../process/app-loader';
import { addAdminCommands } from './admin';
import { type InboxFlags, addRelayCommand, inboxWorker, withInboxOptions } from './relay';
import { type MetricsFlags, primaryMetrics, withMetricsOptions, workerMetricsFor } from './metrics-flags';
import { type GlobalOptions, appFor, withApp, withLibrary } from './with-app';
import { commaList, parseDuration, positiveInteger, printTable } from './args';
import { leaveWith } from '../process/cluster';
import { couldNotConnect } from '../error-text';
import { AdminUsageError, AppLoadError, PgPubSubError } from '../errors';
import { LISTEN_DEFAULTS } from '../listener/options';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel, consoleLogger } from '../ops/logger';
import type { TriggerState } from '../triggers/reconcile';

/**
 * Exit codes: 0 success, 1 failure or drift found, 2 bad usage, or could not check: the database
 * unreachable (or refusing the role, or missing), or the library not installed at this code's version.
 */
const EXIT = { ok: 0, failure: 1, usage: 2, cannotCheck: 2 } as const;

interface ListenCliOptions extends InboxFlags, MetricsFlags {
  channels?: string[];
  processes: number;
  worker?: boolean;
  recover: boolean;
  restartOnFailure: boolean;
  batchSize: number;
  concurrency?: number;
  callbackConcurrency?: number;
  timeoutMs?: number;
  heartbeatMs?: number;
  failedRetention?: number;
  cleanupWarnAfter?: number | false;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  savepoints?: 'on-failure' | 'always';
  contextFilter?: Record<string, unknown>;
  listenUrl?: string;
  logSql?: boolean;
  gracePeriod: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
}


/** Parses a JSON object option value; anything else is a usage error naming the option. */
function jsonObject(name: string) {
  return (value: string): Record<string, unknown> => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      throw new InvalidArgumentError(`${name} must be a JSON object, e.g. '{"tenant":7}'; got ${value}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new InvalidArgumentError(`${name} must be a JSON object, e.g. '{"tenant":7}'; got ${value}`);
    }
    return parsed as Record<string, unknown>;
  };
}


const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

function printStates(states: TriggerState[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(states, null, 2)}\n`);
    return;
  }
  if (states.length === 0) {
    process.stdout.write('No channels with triggers are defined and no managed triggers are installed.\n');
    return;
  }
  printTable(['STATUS', 'TABLE', 'CHANNEL', 'EVENT', 'MODEL', 'TRIGGER'],
    states.map((s) => [s.status, `${s.schema}.${s.table}`, s.channel ?? '?', s.event ?? '?', s.model ?? '?', s.name]));
}


function buildProgram(): Command {
  const program = new Command('pgpubsub')
    .description('Manage sequelize-pgpubsub channels, triggers and migrations.')
    // lib/cli/main.ts and dist/cli/main.js both sit one folder below package.json.
    .version((require('../../package.json') as { version: string }).version, '-v, --version', 'print the version and exit')
    .option('--app <module>', "module exporting your configured sequelize (default: the models index named in .sequelizerc)")
    .option('--cwd <dir>', 'project directory to run in (default: the current directory)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  const schemasOption = ['--schemas <names>', 'comma-separated schemas (schema-per-tenant apps): render the channels of models without a schema of their own in each, and look at nothing outside them', commaList] as const;
  const triggers = program.command('triggers').description('inspect and sync the database triggers behind model channels').exitOverride();

  triggers.command('ls')
    .description('list each trigger as INSTALLED, OUTDATED, UNINSTALLED or PRUNE')
    .option('--json', 'print JSON instead of a table')
    .option(...schemasOption)
    .action(async (options: { json?: boolean; schemas?: string[] }, command: Command) => {
      await withApp(command, async ({ pubsub }) => printStates(await pubsub.triggers.ls({ schemas: options.schemas }), Boolean(options.json)));
    });

  triggers.command('check')
    .description('exit 1 if any trigger is not INSTALLED, 2 if the database cannot be reached or lacks the library (for CI)')
    .option(...schemasOption)
    .option('--json', 'print JSON: { ok, drift }')
    .action(async (options: { schemas?: string[]; json?: boolean }, command: Command) => {
      // First the library's own objects: triggers calling missing functions are no check worth passing.
      await withLibrary(command, 'triggers check', async ({ pubsub }) => {
        const { ok, drift } = await pubsub.triggers.check({ schemas: options.schemas });
        await warnRisks(pubsub, options.schemas);
        if (options.json) {
          printJson({ ok, drift });
          if (!ok) process.exitCode = EXIT.failure;
          return;
        }
        if (ok) {
          process.stdout.write('Triggers match the channel definitions.\n');
          return;
        }
        printStates(drift, false);
        process.stderr.write(`${drift.length} trigger(s) drifted from the channel definitions. Run 'pgpubsub triggers sync' or generate a migration.\n`);
        process.exitCode = EXIT.failure;
      });
    });

  triggers.command('sync')
    .description('install missing, replace outdated and drop orphaned managed triggers, in one transaction')
    .option('--no-prune', 'keep orphaned managed triggers')
    .option(...schemasOption)
    .option('--json', 'print JSON: the triggers installed, replaced and pruned')
    .action(async (options: { prune: boolean; schemas?: string[]; json?: boolean }, command: Command) => {
      await withLibrary(command, 'triggers sync', async ({ pubsub }) => {
        const result = await pubsub.triggers.sync({ prune: options.prune, schemas: options.schemas });
        if (options.json) printJson(result);
        else process.stdout.write(`Installed ${result.installed.length}, replaced ${result.replaced.length}, pruned ${result.pruned.length} trigger(s).\n`);
        await warnRisks(pubsub, options.schemas);
      });
    });

  triggers.command('prune')
    .description('drop managed triggers (and their functions) that no channel asks for')
    .option(...schemasOption)
    .option('--json', 'print JSON: the triggers pruned')
    .action(async (options: { schemas?: string[]; json?: boolean }, command: Command) => {
      await withApp(command, async ({ pubsub }) => {
        const result = await pubsub.triggers.prune({ schemas: options.schemas });
        if (options.json) printJson(result);
        else process.stdout.write(`Pruned ${result.pruned.length} trigger(s).\n`);
      });
    });

  withInboxOptions(withMetricsOptions(program.command('listen')
    .description('process notifications: a supervised cluster of listener processes, or one listener with --worker')
    .option('--channels <names>', 'comma-separated channels to process (default: every channel with a callback)', commaList)
    .option('--processes <n>', 'listener processes to run under a node:cluster primary', positiveInteger('--processes'), 1)
    .option('--worker', 'run one listener in this process, no cluster (for systemd, Kubernetes)')
    .option('--recover', 'drain notifications stored while no listener ran (default)')
    .option('--no-recover', 'do not drain stored notifications at start')
    .option('--no-restart-on-failure', 'do not replace a worker that dies')
    .option('--batch-size <n>', 'notifications claimed per transaction', positiveInteger('--batch-size'), LISTEN_DEFAULTS.batchSize)
    .option('--concurrency <n>', `claim transactions at once per process, each on its own pool connection (default ${LISTEN_DEFAULTS.concurrency})`, positiveInteger('--concurrency'))
    .option('--callback-concurrency <n>', `messages of a batch whose callbacks run at once, in the batch's transaction (default ${LISTEN_DEFAULTS.callbackConcurrency})`, positiveInteger('--callback-concurrency'))
    .option('--timeout-ms <ms>', `how long a callback may take before its work is rolled back and an attempt charged (default ${LISTEN_DEFAULTS.timeoutMs}; a channel's timeoutMs wins)`, positiveInteger('--timeout-ms'))
    .option('--grace-period <ms>', 'after SIGTERM/SIGINT, how long workers may take to finish their batch', positiveInteger('--grace-period'), 30_000)
    .addOption(new Option('--failed-retention <duration>', 'delete notifications that failed for good longer ago than this (30d, 12h), hourly and in bounded batches (default: kept until purged)').argParser(parseDuration('--failed-retention')))
    .addOption(new Option('--cleanup-warn-after <duration>', "warn when a transaction, prepared transaction or replication slot has held back the cleanup of the notification table this long (30s, 5m, 1h; 'off': never) (default 5m)")
      .argParser((value: string) => (value.trim() === 'off' ? false : parseDuration('--cleanup-warn-after')(value))))
    .option('--heartbeat-ms <ms>', `how often the LISTEN connection is checked and the table swept as a backstop (default ${LISTEN_DEFAULTS.heartbeatMs})`, positiveInteger('--heartbeat-ms'))
    .option('--reconnect-min-ms <ms>', `shortest wait before reconnecting a lost LISTEN connection (default ${LISTEN_DEFAULTS.reconnect.minDelayMs})`, positiveInteger('--reconnect-min-ms'))
    .option('--reconnect-max-ms <ms>', `longest wait between reconnect tries (default ${LISTEN_DEFAULTS.reconnect.maxDelayMs})`, positiveInteger('--reconnect-max-ms'))
    .addOption(new Option('--savepoints <mode>', `'on-failure': redo a batch with a savepoint per message only when a callback throws; 'always': a savepoint per message (default ${LISTEN_DEFAULTS.savepoints})`).choices(['on-failure', 'always']))
    .option('--context-filter <json>', 'only claim notifications whose context contains this JSON object, e.g. \'{"tenant":7}\'', jsonObject('--context-filter'))
    .option('--listen-url <url>', 'where the LISTEN connection goes, when not where Sequelize connects (e.g. past a transaction pooler)'), 'worker')
    .option('--log-sql', "keep the app's Sequelize SQL logging on in the listener processes (off by default)")
    .addOption(new Option('--log-level <level>', 'lowest level logged').choices(LOG_LEVELS).default('info'))
    .addOption(new Option('--log-format <format>', 'pretty lines for people, json lines for collectors').choices(LOG_FORMATS).default('pretty'))
    .action(async (options: ListenCliOptions, command: Command) => {
      if (options.worker && options.processes > 1) {
        command.error('error: --worker runs a single listener; drop --processes or --worker', { exitCode: EXIT.usage });
      }
      const slot = process.env.PGPUBSUB_WORKER_SLOT;
      const logger = consoleLogger({
        level: options.logLevel, format: options.logFormat, stream: process.stdout,
        base: cluster.isWorker && slot ? { worker: Number(slot) } : {},
      });
      if (!options.worker && cluster.isPrimary) {
        // Load the app once here so that a broken app fails fast, before any worker is forked.
        const app = await appFor(command);
        app.pubsub.channels();
        const { supervise } = require('../process/supervisor') as typeof import('../process/supervisor');
        const metrics = await primaryMetrics(app, options, logger);
        process.exitCode = await supervise({
          processes: options.processes,
          restartOnFailure: options.restartOnFailure,
          gracePeriodMs: options.gracePeriod,
          logger,
          state: metrics.state,
          env: metrics.env,
        });
        await metrics.close();
        return;
      }
      const app = await appFor(command);
      const metrics = await workerMetricsFor(app, options, logger);
      // The app's SQL logging (Sequelize logs every statement to stdout by default) would bury the listener's own lines.
      if (!options.logSql) (app.sequelize as unknown as { options: { logging: unknown } }).options.logging = false;
      const { runWorker } = require('../process/worker') as typeof import('../process/worker');
      const code = await runWorker(app.pubsub, {
        channels: options.channels,
        batchSize: options.batchSize,
        concurrency: options.concurrency,
        callbackConcurrency: options.callbackConcurrency,
        recover: options.recover,
        timeoutMs: options.timeoutMs,
        heartbeatMs: options.heartbeatMs,
        failedRetentionMs: options.failedRetention,
        cleanupWarnAfterMs: options.cleanupWarnAfter,
        reconnect: { minDelayMs: options.reconnectMinMs, maxDelayMs: options.reconnectMaxMs },
        savepoints: options.savepoints,
        contextFilter: options.contextFilter,
        listenConnection: options.listenUrl,
        gracePeriodMs: options.gracePeriod,
        logger,
        observe: metrics.observe,
        ...inboxWorker(app, options),
      });
      metrics.close();
      process.exitCode = leaveWith(code);
    }));

  program.command('recover')
    .description('ask every running listener to drain the stored notifications now')
    .option('--json', 'print JSON: { asked: true }')
    .action(async (options: { json?: boolean }, command: Command) => {
      await withLibrary(command, 'recover', async ({ pubsub }) => {
        await pubsub.recover();
        if (options.json) printJson({ asked: true });
        else process.stdout.write('Asked running listeners to drain stored notifications.\n');
      });
    });

  program.command('migration:generate')
    .description('write a sequelize-cli migration with the frozen trigger SQL for the current definitions (and the stubs of library migrations the folder lacks)')
    .addOption(new Option('--migrations-path <dir>', "where to write it (default: 'migrations-path' of .sequelizerc, or ./migrations)"))
    .addOption(new Option('--no-library-stubs', "don't write the stubs of library migrations the folder lacks"))
    .option('--json', 'print JSON: { stubs, file, previous, installs, removes } (file null: nothing written)')
    .action(async (options: { migrationsPath?: string; libraryStubs: boolean; json?: boolean }, command: Command) => {
      await withApp(command, async (app) => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        const base = globals.cwd ? path.resolve(globals.cwd) : process.cwd();
        const migrationsPath = options.migrationsPath ? path.resolve(base, options.migrationsPath) : app.migrationsPath;
        // First, so that the library's migrations sort (and run) before the trigger migration.
        const { generateTriggerMigration, writeLibraryStubs } = require('../triggers/generate') as typeof import('../triggers/generate');
        const stubs = options.libraryStubs ? writeLibraryStubs(migrationsPath, app.pubsub.objects.schema) : [];
        if (options.json) return void printJson({ stubs, ...generateTriggerMigration(app.pubsub, { migrationsPath }) });
        for (const stub of stubs) process.stdout.write(`Wrote ${path.relative(process.cwd(), stub)} (library migration stub).\n`);
        const result = generateTriggerMigration(app.pubsub, { migrationsPath });
        if (result.file) {
          process.stdout.write(`Wrote ${path.relative(process.cwd(), result.file)} (${result.installs} trigger(s) to install, ${result.removes} to remove).\n`);
        } else {
          process.stdout.write('Triggers unchanged since the last generated migration; nothing written.\n');
        }
      });
    });

  addAdminCommands(program, { withLibrary, exit: EXIT });
  addRelayCommand(program, { appFor, exit: EXIT });

  return program;
}

export { guardOutput } from '../ops/terminal';

/** Warns, on stderr, about each object another role owns that a channel's trigger would run with the library owner's rights. */
async function warnRisks(pubsub: LoadedApp['pubsub'], schemas?: string[]): Promise<void> {
  for (const risk of await pubsub.triggers.risks({ schemas })) process.stderr.write(`warning: ${risk.message}\n`);
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: readonly string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    // -V as well as -v (commander's own default, which earlier versions of this CLI used).
    await program.parseAsync(argv.map((arg, i) => (i >= 2 && arg === '-V' ? '--version' : arg)));
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are successes; anything else commander rejects is bad usage (already printed).
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    // Our own errors say what to fix; others (a refused connection, an error in the app) get their
    // message, and their stack with PGPUBSUB_DEBUG=1.
    const debug = Boolean(process.env.PGPUBSUB_DEBUG);
    const message = error instanceof PgPubSubError || !debug
      ? `${error instanceof PgPubSubError ? '' : `${(error as Error)?.name ?? 'Error'}: `}${(error as Error)?.message ?? String(error)}`
      : (error as Error)?.stack ?? String(error);
    process.stderr.write(`pgpubsub: ${message}\n${error instanceof PgPubSubError || debug ? '' : '(set PGPUBSUB_DEBUG=1 for the stack trace)\n'}`);
    // An argument the admin API refuses (an empty channel name, no selection) is bad usage, as
    // commander's own refusals; an app that cannot be loaded (--app naming nothing, a bad
    // DATABASE_URL) or a database that cannot be reached or entered is a command that could not
    // check anything: 2 on every command (docs/cli.md).
    return error instanceof AdminUsageError || error instanceof AppLoadError || couldNotConnect(error) ? EXIT.cannotCheck : EXIT.failure;
  }
}
