/**
 * sequelize-pgpubsub through NATS JetStream (W9): `pgpubsub relay` moves each author's stored
 * notification into a stream, and `pgpubsub listen --from-nats` (the inbox) runs the bench app's
 * callback on it, writing the post in the same database: the post appears only after the whole
 * path, database → relay → JetStream → inbox → database. `relayOnly` starts the relay alone (its
 * rate: the outbox emptied into the stream).
 */
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { GiveUp, eventually } from '../../dev/eventually';
import type { NatsServer } from '../../dev/nats';
import { type ChildProcessHandle, ROOT, spawnProcess } from '../../dev/processes';
import { COMPILED_CLI } from '../support/compiled';
import { insertAuthors, migrateApp } from '../support/db';
import { nodeChildren, processTree } from '../support/proc';
import type { QueueSystem, Workers } from './types';

const APP = path.join(ROOT, 'bench', 'apps', 'ours-app.ts');

/** Starts `args` under the compiled CLI and waits for `processes` lines of `event` (each worker says it once it is ready). */
async function started(args: string[], url: string, event: string, processes: number): Promise<ChildProcessHandle> {
  const child = spawnProcess(COMPILED_CLI, [...args, '--app', APP, '--channels', 'author_created', '--processes', String(processes), '--log-level', 'info', '--log-format', 'json'], {
    DATABASE_URL: url, BENCH_CALLBACK: 'sql', BENCH_POOL_MAX: '5',
  });
  try {
    await eventually(() => {
      if (child.exit) throw new GiveUp(`${args[0]} exited before it was ready: ${child.describe()}`);
      return child.all(event).length >= processes;
    }, () => `${processes} × '${event}' from pgpubsub ${args[0]}: ${child.describe()}`, 60_000, 50);
  } catch (error) {
    await child.stop();
    throw error;
  }
  return child;
}

function workersOf(children: ChildProcessHandle[]): Workers {
  let stopped: Promise<void> | undefined;
  return {
    pids: () => children.flatMap((child) => processTree(child.child.pid!)),
    workerPids: () => children.flatMap((child) => nodeChildren(child.child.pid!, process.execPath)),
    stop() {
      stopped ??= Promise.all(children.map((child) => child.stop(15_000))).then(() => undefined);
      return stopped;
    },
  };
}

export function throughNats(options: { key: string; label: string; servers: () => NatsServer[]; replicas: number; inbox: boolean }): QueueSystem {
  return {
    key: options.key,
    label: options.label,
    prepare: migrateApp,
    async start(url: string, processes: number): Promise<Workers> {
      // A stream and subjects of this run's own, so that runs never see each other's messages.
      const run = randomUUID().slice(0, 8);
      const nats = options.servers().map((server) => server.url).join(',');
      const stream = ['--stream', `W9_${run}`, '--subject-prefix', `w9_${run}`];
      const children: ChildProcessHandle[] = [];
      try {
        children.push(await started(['relay', '--nats', nats, ...stream, '--replicas', String(options.replicas), '--identity', `bench_${run}`], url, 'relaying', processes));
        if (options.inbox) children.push(await started(['listen', '--from-nats', nats, ...stream, '--consumer', `w9_${run}`], url, 'listening', processes));
      } catch (error) {
        await Promise.all(children.map((child) => child.stop()));
        throw error;
      }
      return workersOf(children);
    },
    produce: insertAuthors,
  };
}
