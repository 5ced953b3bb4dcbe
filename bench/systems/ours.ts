import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LISTENER_APPLICATION_NAME } from '../../lib/listener/listener';
import { WAKE_LOCKS } from '../../lib/db/wake-locks';
import { insertAuthors, migrateApp, withClient } from '../support/db';
import { GiveUp, eventually } from '../../dev/eventually';
import { ROOT, spawnProcess } from '../../dev/processes';
import { nodeBinary } from '../../dev/versions';
import { COMPILED_CLI } from '../support/compiled';
import { nodeChildren, processTree } from '../support/proc';
import type { QueueSystem, StartOptions, Workers } from './types';

const APP = path.join(ROOT, 'bench', 'apps', 'ours-app.ts');

/** How many listeners of this database are listening: each holds the "listening" advisory lock once it has LISTENed. */
async function listeningCount(url: string): Promise<number> {
  return withClient(url, async (c) => (await c.query<{ n: number }>(
    `SELECT count(DISTINCT l.pid)::int AS n FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
      WHERE l.locktype = 'advisory' AND l.classid::int = ${WAKE_LOCKS.listening} AND l.granted
        AND a.datname = current_database() AND a.application_name = '${LISTENER_APPLICATION_NAME}'`,
  )).rows[0].n);
}

/**
 * sequelize-pgpubsub as a user runs it: `pgpubsub listen --processes N` (a node:cluster primary
 * and N workers), loading the bench app. With --log-level warn the workers say nothing when
 * ready, so readiness is read from pg_locks: every LISTEN connection holds its "listening" lock.
 */
export function ours(options: {
  key?: string;
  label?: string;
  batchSize?: number;
  callback?: 'model' | 'sql' | 'query' | 'batch';
  /** `--concurrency` and `--callback-concurrency` (the pool gets concurrency + 1 connections). */
  concurrency?: number;
  callbackConcurrency?: number;
  /** Each message awaits this long before its post (W6). */
  ioMs?: number;
  /** Node.js major version the listener processes run on (default: this process's own). */
  node?: number;
  /** `--context-filter` (W8). */
  contextFilter?: Record<string, unknown>;
  /** A second channel the listener handles, with a callback that does nothing (W8). */
  sideChannel?: string;
  /** Each worker records how long each claim took (W8's claim p99): Workers.claimMs(). */
  claimTimes?: boolean;
} = {}): QueueSystem {
  const { batchSize = 100, callback = 'sql', concurrency = 1, callbackConcurrency = 1, ioMs = 0 } = options;
  const node = options.node ? nodeBinary(options.node) : process.execPath;
  return {
    key: options.key ?? 'ours',
    label: options.label ?? 'sequelize-pgpubsub',
    prepare: migrateApp,
    async start(url: string, processes: number, startOptions: StartOptions = {}): Promise<Workers> {
      // The bench app handles author_created only; naming it says so (the example app's media_changed,
      // which has no callback here, would otherwise be warned about in every row).
      const channels = ['author_created', ...(options.sideChannel ? [options.sideChannel] : [])].join(',');
      const args = ['listen', '--app', APP, '--channels', channels, ...(options.contextFilter ? ['--context-filter', JSON.stringify(options.contextFilter)] : []), '--processes', String(processes), '--batch-size', String(batchSize),
        '--concurrency', String(concurrency), '--callback-concurrency', String(callbackConcurrency), '--log-level', 'warn', '--log-format', 'json'];
      const claimTimes = options.claimTimes ? fs.mkdtempSync(path.join(os.tmpdir(), 'bench-claims-')) : '';
      const listen = spawnProcess(COMPILED_CLI, args, {
        BENCH_CLAIM_TIMES: claimTimes,
        DATABASE_URL: startOptions.workerUrl ?? url, BENCH_CALLBACK: callback, BENCH_SIDE_CHANNEL: options.sideChannel ?? '', BENCH_IO_MS: String(ioMs), BENCH_POOL_MAX: String(Math.max(5, concurrency + 1)),
      }, undefined, { nodeArgs: startOptions.nodeArgs, ...(options.node ? { node } : {}) });
      try {
        await eventually(async () => {
          if (listen.exit) throw new GiveUp(`pgpubsub listen exited before listening: ${listen.describe()}`);
          return (await listeningCount(url)) >= processes;
        }, () => `${processes} listener(s) of pgpubsub listen to be listening: ${listen.describe()}`, 60_000, 50);
      } catch (error) {
        await listen.stop();
        throw error;
      }
      const pid = listen.child.pid!;
      let stopped: Promise<void> | undefined;
      return {
        pids: () => processTree(pid),
        workerPids: () => nodeChildren(pid, node),
        stop() {
          stopped ??= listen.stop(15_000).then(() => {
            const logged = listen.events.filter((e) => e.level === 'warn' || e.level === 'error');
            if (logged.length) process.stderr.write(`  (pgpubsub listen logged ${logged.length} warning/error line(s); first: ${JSON.stringify(logged[0]).slice(0, 300)})\n`);
          });
          return stopped;
        },
        ...(claimTimes ? {
          claimMs() {
            const ms = fs.readdirSync(claimTimes).flatMap((file) => JSON.parse(fs.readFileSync(path.join(claimTimes, file), 'utf8')) as number[]);
            fs.rmSync(claimTimes, { recursive: true, force: true });
            return ms;
          },
        } : {}),
      };
    },
    // The channel's statement-level trigger stores one notification per author and wakes the listeners at commit.
    produce: insertAuthors,
  };
}
