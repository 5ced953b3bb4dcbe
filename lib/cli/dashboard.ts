/**
 * `pgpubsub dashboard`: the dashboard on a port of its own. It answers only to the names it is
 * reached by (loopback names when bound to loopback, `--allowed-hosts` otherwise), and asks for a
 * token unless bound to loopback; a token from the environment is never printed.
 */
import { type Command, Option } from 'commander';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { isIP } from 'node:net';
import type { LoadedApp } from '../process/app-loader';
import { LOOPBACK_HOSTS, hostName } from '../ops/dashboard-access';
import { portNumber, positiveDuration } from './args';

const TOKEN_VARIABLE = 'PGPUBSUB_DASHBOARD_TOKEN';

interface DashboardCommandDeps {
  withLibrary(command: Command, who: string, work: (app: LoadedApp) => Promise<void>): Promise<void>;
  exit: { usage: number };
}

interface DashboardFlags { port: number; host: string; token?: string; allowedHosts?: string[]; sampleEvery: number }

/** Whether `host` (an address or name to bind) is this machine's loopback. */
export function isLoopback(host: string): boolean {
  const name = hostName(host.includes(':') && !host.startsWith('[') ? `[${host}]` : host);
  return name === 'localhost' || name === '::1' || (isIP(name ?? '') === 4 && name!.startsWith('127.'));
}

/** The names a request's Host may carry, or the usage error that says what to add. */
function allowedFor(flags: DashboardFlags): string[] | string {
  if (flags.allowedHosts?.length) return flags.allowedHosts;
  if (isLoopback(flags.host)) return [...LOOPBACK_HOSTS];
  if (['0.0.0.0', '::', '[::]'].includes(flags.host)) {
    return `error: bound to ${flags.host}, the dashboard must be told the names it is reached by: --allowed-hosts ops.example.com[,…]`;
  }
  return [flags.host];
}

export function addDashboardCommand(program: Command, { withLibrary, exit }: DashboardCommandDeps): void {
  program.command('dashboard')
    .description('serve the dashboard (channels, lag, a chart of the last hour, listeners, failed notifications; retry, purge, pause, resume) until interrupted')
    .option('--port <port>', 'the port (0: any free one)', portNumber('--port'), 8080)
    .option('--host <address>', 'the address to bind; other than loopback, a token is required (anyone who reaches it can retry, purge and pause)', '127.0.0.1')
    .option('--allowed-hosts <names>', 'the host names it answers to, comma-separated (default: the loopback names, or --host); any other Host header gets 421',
      (value: string) => value.split(',').map((name) => name.trim()).filter(Boolean))
    .option('--token <token>', `ask for this token: open the address once as …/?token=<token>, or send Authorization: Bearer <token>. Shows in the process list: prefer $${TOKEN_VARIABLE}`)
    .addOption(new Option('--sample-every <duration>', 'how often the chart samples throughput and backlog').argParser(positiveDuration('--sample-every')).default(15_000, '15s'))
    .action(async (flags: DashboardFlags, command: Command) => {
      const fromEnvironment = flags.token === undefined && Boolean(process.env[TOKEN_VARIABLE]);
      const token = flags.token ?? (process.env[TOKEN_VARIABLE] || undefined);
      if (token !== undefined && token.length < 8) command.error('error: --token must be at least 8 characters', { exitCode: exit.usage });
      if (token === undefined && !isLoopback(flags.host)) {
        command.error(`error: bound to ${flags.host}, the dashboard needs a token (anyone who reaches it could retry, purge and pause): set $${TOKEN_VARIABLE}, or bind to 127.0.0.1`, { exitCode: exit.usage });
      }
      const allowedHosts = allowedFor(flags);
      if (typeof allowedHosts === 'string') return command.error(allowedHosts, { exitCode: exit.usage });
      await withLibrary(command, 'dashboard', async ({ pubsub }) => {
        const handler = pubsub.dashboard({ token, sampleEveryMs: flags.sampleEvery, allowedHosts });
        const server = createServer(handler);
        server.listen(flags.port, flags.host);
        await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => {
          throw new Error(`dashboard: cannot listen on ${flags.host}:${flags.port} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); choose another --port`);
        })]);
        const { port } = server.address() as { port: number };
        const host = flags.host.includes(':') ? `[${flags.host}]` : flags.host;
        const link = token === undefined ? '' : fromEnvironment ? ` (open it once as …/?token=<$${TOKEN_VARIABLE}>)` : `?token=${encodeURIComponent(token)}`;
        process.stdout.write(`Dashboard on http://${host}:${port}/${link} (Ctrl+C to stop)\n`);
        await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
        handler.close();
        server.close();
        server.closeAllConnections();
      });
    });
}
