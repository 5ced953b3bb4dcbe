/**
 * The operator's commands of the CLI, on top of the admin API (lib/ops/admin.ts): `pgpubsub status`
 * `pgpubsub channels pause|resume` and `pgpubsub failed ls|show|retry|purge`. Every one takes `--json`; exit codes as the other
 * commands: 0 done, 1 failed (or not found), 2 bad usage or the library missing at this version.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FailedSelection, Status } from '../ops/admin';
import type { LoadedApp } from '../process/app-loader';
import { parseDuration, portNumber, positiveDuration, positiveInteger, printTable } from './args';
import { describeHolder } from '../db/cleanup';
import { COUNT_CAP } from '../ops/channel-counts';
import { DEFAULT_SCHEMA } from '../db/objects';
import { addDashboardCommand } from './dashboard';

export interface AdminCommandDeps {
  /** Runs `work` once the library is there at this code's version; otherwise says which migrations to run, exit 2. */
  withLibrary(command: Command, who: string, work: (app: LoadedApp) => Promise<void>): Promise<void>;
  exit: { ok: number; failure: number; usage: number; cannotCheck: number };
}

/** A time: an ISO date, or a duration ago (`1h`: an hour ago). */
function parseSince(value: string): Date {
  const date = /^\d{4}-\d{2}-\d{2}/.test(value) ? new Date(value) : new Date(Date.now() - parseDuration('--since')(value));
  if (Number.isNaN(date.getTime())) throw new InvalidArgumentError(`--since must be an ISO date (2026-12-01T10:00Z) or a duration ago (1h, 7d); got '${value}'`);
  return date;
}

const json = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
const age = (ms: number | null) => (ms === null ? '-' : ms < 1000 ? `${Math.round(ms)}ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)}s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)}m` : `${Math.round(ms / 3_600_000)}h`);
const oneLine = (text: string | null, max = 80) => {
  const line = (text ?? '').replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

function printStatus(status: Status): void {
  if (status.channels.length === 0) process.stdout.write('No channels are defined and no notifications are stored.\n');
  else {
    printTable(['CHANNEL', 'DUE', 'WAITING', 'FAILED', 'BLOCKED', 'OLDEST DUE', 'LAG', 'LISTENERS', 'DRAINING', 'PAUSED', ''], status.channels.map((c) => [
      // An estimate (a count past 10,000 rows) shows as ~N.
      c.channel, ...[c.due, c.waiting, c.failed, c.blocked].map((n) => (c.estimated && n > COUNT_CAP ? `~${n}` : String(n))), age(c.oldestDueAgeMs), age(c.recentLagMs), String(c.listeners), c.draining ? 'yes' : 'no',
      c.paused ? 'yes' : 'no', c.defined ? '' : '(no code here defines it)',
    ]));
  }
  const inboxFailed = status.channels.filter((c) => c.inboxFailed > 0);
  if (inboxFailed.length) {
    process.stdout.write(`\nInbox: ${inboxFailed.map((c) => `${c.inboxFailed} message(s) of ${c.channel}`).join(', ')} failed for good (SELECT * FROM pgpubsub.inbox WHERE failed_at IS NOT NULL).\n`);
  }
  process.stdout.write('\n');
  if (status.listeners.length === 0) process.stdout.write('No listener is running.\n');
  else {
    printTable(['LISTENER (BACKEND PID)', 'HOST', 'PID', 'FROM', 'SINCE', 'CHANNELS', 'IN HAND'], status.listeners.map((l) => [
      String(l.backendPid), l.host ?? '-', l.pid === null ? '-' : String(l.pid), l.clientAddress ?? 'local', (l.startedAt ?? l.since)?.toISOString() ?? '-', l.channels.join(',') || '-', String(l.inHand.length),
    ]));
  }
  const { cleanup } = status;
  const vacuumed = cleanup.lastVacuumAt ? `last vacuumed ${cleanup.lastVacuumAt.toISOString()}` : 'never vacuumed';
  process.stdout.write(`\nCleanup: ${cleanup.deadRows} dead row(s) beside ${cleanup.liveRows} live in the notification table, ${vacuumed}.\n`);
  const holder = cleanup.heldBackBy;
  if (holder) {
    const open = holder.openMs === null ? '' : `, open ${age(holder.openMs)}`;
    process.stdout.write(`Held back by ${describeHolder(holder)}: xmin ${holder.xminAge} transaction(s) old${open}.\n`);
  }
}

export function addAdminCommands(program: Command, { withLibrary, exit }: AdminCommandDeps): void {
  program.command('status')
    .description("each channel's due, waiting and failed notifications and the age of the oldest due one, and the live listeners")
    .option('--json', 'print JSON instead of tables')
    .addOption(new Option('--watch [interval]', 'print it again every interval (default 2s) until interrupted').argParser(positiveDuration('--watch')))
    .option('--url <url>', 'read it from this database (postgres://…) without loading the app: faster; names the channels with an installed '
      + 'trigger, stored notifications or a pause')
    .option('--schema <name>', `with --url: the library's schema (default ${DEFAULT_SCHEMA})`)
    .action(async (options: { json?: boolean; watch?: number | true; url?: string; schema?: string }, command: Command) => {
      const every = options.watch === true ? 2000 : options.watch;
      const show = async (read: () => Promise<Status>) => {
        for (let first = true; first || every !== undefined; first = false) {
          if (!first) await sleep(every!);
          const status = await read();
          if (options.json) {
            // One JSON document per line while watching (JSON Lines), else pretty.
            process.stdout.write(`${every !== undefined ? JSON.stringify(status) : JSON.stringify(status, null, 2)}\n`);
          } else {
            if (every !== undefined) process.stdout.write(`\n${status.at.toISOString()}\n`);
            printStatus(status);
          }
        }
      };
      if (options.url === undefined) {
        if (options.schema !== undefined) command.error('error: --schema goes with --url (without it, the app says its schema)', { exitCode: exit.usage });
        await withLibrary(command, 'status', ({ pubsub }) => show(() => pubsub.admin.status()));
        return;
      }
      if (command.optsWithGlobals<{ app?: string }>().app !== undefined) {
        command.error('error: give --url or --app, not both (--url reads the database without loading the app)', { exitCode: exit.usage });
      }
      // Loaded here, so that the command loads neither the app nor Sequelize.
      const { withDirectStatus } = require('../ops/direct-status') as typeof import('../ops/direct-status');
      const problem = await withDirectStatus(options.url, options.schema ?? DEFAULT_SCHEMA, ({ read }) => show(read));
      if (problem) {
        process.stderr.write(`${problem.message}\n`);
        process.exitCode = exit.cannotCheck;
      }
    });

  addDashboardCommand(program, { withLibrary, exit });

  const channels = program.command('channels').description('pause and resume channels').exitOverride();
  for (const [verb, done, already] of [['pause', 'paused', 'was paused already'], ['resume', 'resumed', 'was not paused']] as const) {
    channels.command(verb)
      .description(verb === 'pause'
        ? 'stop every listener claiming a channel (its notifications stay stored); survives restarts'
        : 'let the listeners claim a paused channel again: they drain what it stored meanwhile')
      .argument('<channel>', 'the channel name')
      .option('--json', 'print JSON')
      .option('--force', `${verb} it even when no channel of that name is defined in this app, stores notifications or is paused`)
      .action(async (channel: string, options: { json?: boolean; force?: boolean }, command: Command) => {
        await withLibrary(command, `channels ${verb}`, async ({ pubsub }) => {
          const defined = pubsub.channels().some((c) => c.name === channel);
          // A typo would pause nothing and say it did: a name must be defined here, stored or paused.
          // (An empty name is the admin API's to refuse.)
          const known = defined || options.force || channel === '' || (await pubsub.admin.status()).channels.some((c) => c.channel === channel);
          if (!known) {
            const names = pubsub.channels().map((c) => c.name).sort();
            command.error(`error: channels ${verb}: no channel '${channel}' is defined in this app, stores notifications or is paused`
              + ` (defined: ${names.join(', ') || 'none'}); check the name, or pass --force`, { exitCode: exit.usage });
          }
          const changed = await pubsub.admin[verb](channel);
          if (options.json) return void json({ channel, [done]: changed });
          process.stdout.write(changed ? `${done[0].toUpperCase()}${done.slice(1)} '${channel}'.\n` : `'${channel}' ${already}; nothing changed.\n`);
          if (!defined) process.stderr.write(`note: no channel '${channel}' is defined in this app.\n`);
        });
      });
  }

  const failed = program.command('failed').description('failed notifications: list, show, retry, purge').exitOverride();

  failed.command('ls')
    .description('list failed notifications, the newest failure first')
    .option('--channel <name>', 'only this channel')
    .addOption(new Option('--since <time>', 'only those failed since: an ISO date, or a duration ago (1h, 7d)').argParser(parseSince))
    .addOption(new Option('--limit <n>', 'at most this many').default(100).argParser(positiveInteger('--limit')))
    .option('--json', 'print JSON instead of a table')
    .action(async (options: { channel?: string; since?: Date; limit: number; json?: boolean }, command: Command) => {
      await withLibrary(command, 'failed ls', async ({ pubsub }) => {
        const rows = await pubsub.admin.failed({ channel: options.channel, since: options.since, limit: options.limit });
        if (options.json) return void json(rows);
        if (rows.length === 0) return void process.stdout.write('No failed notifications.\n');
        printTable(['ID', 'CHANNEL', 'ATTEMPTS', 'FAILED AT', 'ERROR'], rows.map((r) => [r.id, r.channel, String(r.attempts), r.failedAt.toISOString(), oneLine(r.lastError)]));
      });
    });

  failed.command('blocked')
    .description("keys of ordered channels held by a notification that failed for good (afterFailure: 'block'); retry or purge it to let the key go on")
    .option('--channel <name>', 'only this channel')
    .addOption(new Option('--limit <n>', 'at most this many').default(100).argParser(positiveInteger('--limit')))
    .option('--json', 'print JSON instead of a table')
    .action(async (options: { channel?: string; limit: number; json?: boolean }, command: Command) => {
      await withLibrary(command, 'failed blocked', async ({ pubsub }) => {
        const keys = await pubsub.admin.blocked({ channel: options.channel, limit: options.limit });
        if (options.json) return void json(keys);
        if (keys.length === 0) return void process.stdout.write('No blocked keys.\n');
        printTable(['CHANNEL', 'KEY', 'FAILED ID', 'WAITING', 'FAILED AT', 'ERROR'], keys.map((k) => [k.channel, k.key, k.headId, String(k.waiting), k.failedAt.toISOString(), oneLine(k.lastError)]));
        process.stdout.write("\nEach key waits for its failed notification: 'pgpubsub failed retry <id>' runs it again, 'pgpubsub failed purge <id>' lets the key go on without it.\n");
      });
    });

  failed.command('show')
    .description('one failed notification: its error, attempts, times, and old/new by attribute name (exit 1 if there is none with this id)')
    .argument('<id>', 'the notification id')
    .option('--json', 'print JSON')
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      if (!/^\d+$/.test(id)) command.error(`failed show: <id> must be a notification id, got '${id}'`, { exitCode: exit.usage });
      await withLibrary(command, 'failed show', async ({ pubsub }) => {
        const detail = await pubsub.admin.failedOne(id);
        if (!detail) {
          process.stderr.write(`failed show: no failed notification has id ${id} ('pgpubsub failed ls' lists them).\n`);
          process.exitCode = exit.failure;
          return;
        }
        if (options.json) return void json(detail);
        const lines = [
          `id:        ${detail.id}`, `channel:   ${detail.channel}`, `op:        ${detail.op ?? '-'}`, `attempts:  ${detail.attempts}`,
          `created:   ${detail.createdAt.toISOString()}`, `failed:    ${detail.failedAt.toISOString()}`, `error:     ${detail.lastError ?? '-'}`,
        ];
        if (detail.decodeError) lines.push(`undecodable: ${detail.decodeError}`);
        if (detail.old || detail.new) {
          const names = [...new Set([...Object.keys(detail.old ?? {}), ...Object.keys(detail.new ?? {})])];
          lines.push('');
          process.stdout.write(`${lines.join('\n')}\n`);
          const cell = (row: Record<string, unknown> | null, name: string) => (row ? JSON.stringify(row[name]) ?? '' : '');
          printTable(['ATTRIBUTE', 'OLD', 'NEW', ''], names.map((name) => {
            const before = cell(detail.old, name);
            const after = cell(detail.new, name);
            return [name, before, after, detail.old && detail.new && before !== after ? 'changed' : ''];
          }));
          return;
        }
        lines.push(`payload:   ${JSON.stringify(detail.payload)}`);
        process.stdout.write(`${lines.join('\n')}\n`);
      });
    });

  /** What retry and purge act on, from their arguments: exactly one kind of selection. */
  const selection = (command: Command, who: string, ids: string[], options: { channel?: string; all?: boolean; olderThan?: number }): FailedSelection => {
    // Bad usage: printed, exit 2, as commander's own refusals.
    const usage = (message: string): never => command.error(message, { exitCode: exit.usage });
    const given = [ids.length > 0, options.channel !== undefined, options.all === true, options.olderThan !== undefined].filter(Boolean).length;
    const choices = who === 'retry' ? '<ids...>, --channel <name> or --all' : '<ids...>, --channel <name>, --older-than <duration> or --all';
    if (given !== 1) usage(`failed ${who}: say which failed notifications with one of ${choices}`);
    const bad = ids.filter((id) => !/^\d+$/.test(id));
    if (bad.length) usage(`failed ${who}: ids must be notification ids, got ${bad.join(', ')}`);
    if (ids.length) return { ids };
    if (options.channel !== undefined) return { channel: options.channel };
    if (options.olderThan !== undefined) return { failedBefore: new Date(Date.now() - options.olderThan) };
    return { all: true };
  };
  const report = (verb: string, done: string[], asJson: boolean | undefined) => {
    if (asJson) return void json({ [verb]: done });
    process.stdout.write(done.length ? `${verb[0].toUpperCase()}${verb.slice(1)} ${done.length} failed notification(s): ${done.join(', ')}.\n` : `No failed notification matched; nothing ${verb}.\n`);
  };

  failed.command('retry')
    .description('make failed notifications due again with fresh attempts; running listeners take them at once')
    .argument('[ids...]', 'notification ids')
    .option('--channel <name>', 'every failed notification of this channel')
    .option('--all', 'every failed notification')
    .option('--json', 'print JSON')
    .action(async (ids: string[], options: { channel?: string; all?: boolean; json?: boolean }, command: Command) => {
      const which = selection(command, 'retry', ids, options);
      await withLibrary(command, 'failed retry', async ({ pubsub }) => report('retried', await pubsub.admin.retry(which), options.json));
    });

  failed.command('purge')
    .description('delete failed notifications')
    .argument('[ids...]', 'notification ids')
    .option('--channel <name>', 'every failed notification of this channel')
    .addOption(new Option('--older-than <duration>', 'those that failed longer ago than this (30m, 12h, 7d)').argParser(parseDuration('--older-than')))
    .option('--all', 'every failed notification')
    .option('--json', 'print JSON')
    .action(async (ids: string[], options: { channel?: string; olderThan?: number; all?: boolean; json?: boolean }, command: Command) => {
      const which = selection(command, 'purge', ids, options);
      await withLibrary(command, 'failed purge', async ({ pubsub }) => report('purged', await pubsub.admin.purge(which), options.json));
    });
}
