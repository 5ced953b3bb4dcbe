/**
 * `npm run bench:profile -- [--system ours] [--processes N] [--n 20000] [--top 25] [--json file]`
 *
 * Where a W1 drain's time goes: one drain of n stored notifications by N worker processes of a
 * system (ours, or a ceiling loop), with every worker under `node --cpu-prof` and PostgreSQL's
 * sessions sampled every 10 ms from pg_stat_activity. Prints the rate, the workers' CPU by where
 * it was spent (the library, Sequelize, pg, Node itself, GC), the functions with the most self
 * and total time, and what the database sessions were doing (running a query, waiting for their
 * client, waiting on a lock). The figures of "Where the time goes (W1, 2026-12-04)" in
 * bench/results/HISTORY.md come from here.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { dropStaleDatabases, startPostgres } from '../dev/postgres';
import { ROOT } from '../dev/processes';
import { Results } from './results';
import { ensureBuilt } from './support/compiled';
import { ceiling } from './systems/ceiling';
import { ours } from './systems/ours';
import type { QueueSystem } from './systems/types';
import { drainOnce } from './workloads/drain';

const USAGE = `usage: npm run bench:profile -- [options]
  --system <key>     ours (default), ours-query (context.query), ours-c2 (concurrency 2), ours-model (Post.create), ours-node22 (listeners on
                     Node.js 22), ceiling, ceiling-sequelize
  --processes <n>    worker processes (default 1)
  --n <count>        stored notifications to drain (default 20000)
  --top <n>          functions listed (default 25)
  --warmup <n>       first drain this many messages untimed and unprofiled (default 0: from a cold start)
  --perf             also record the whole machine with Linux perf during the drain (as root, perf on PATH):
                     CPU by process and binary, and the hottest symbols of the workers and of PostgreSQL
  --node-args <args> Node.js options for the workers, space-separated (e.g. "--max-semi-space-size=32")
  --rate-only        no CPU profile and no sampling: the drain's rate and CPU per message only (for A/B runs)
  --json <file>      also write the figures as JSON
  --help             this text
PostgreSQL: DATABASE_URL if set (a superuser URL), else an embedded server started for the run.
BENCH_PROFILE_KEEP=1 keeps the profiles and perf.data in their temp folder (its path goes to stderr).`;

const SYSTEMS: Record<string, () => QueueSystem> = {
  ours: () => ours(),
  'ours-query': () => ours({ key: 'ours-query', callback: 'query' }),
  'ours-c2': () => ours({ key: 'ours-c2', concurrency: 2 }),
  'ours-model': () => ours({ key: 'ours-model', callback: 'model' }),
  // The listener processes on Node.js 22 (dev/versions), the Node the current peers run on.
  'ours-node22': () => ours({ key: 'ours-node22', label: 'sequelize-pgpubsub on Node 22', node: 22 }),
  ceiling: () => ceiling({ savepoints: false }),
  'ceiling-sequelize': () => ceiling({ savepoints: false, sequelize: true }),
};

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** µs on the monotonic clock (process.hrtime's). */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a function's code lives, for the CPU split: the library, Sequelize, pg, Node, GC, … */
function area(url: string, name: string): string {
  if (!url) return name === '(garbage collector)' ? 'GC' : name === '(idle)' ? 'idle' : name === '(program)' ? 'program (native, unattributed)' : 'native';
  if (url.startsWith('node:')) return 'Node.js';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/');
    const pkg = rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
    return /^pg(-protocol|-types|-pool|-connection-string)?$/.test(pkg) ? 'pg' : pkg;
  }
  const file = url.replace(/^file:\/\//, '');
  if (file.startsWith(path.join(ROOT, 'lib')) || file.startsWith(path.join(ROOT, 'dist'))) return 'library';
  if (file.startsWith(path.join(ROOT, 'bench'))) return 'bench app';
  return 'other';
}

const where = (node: ProfileNode) => {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url ? url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '').replace(/^.*\/node_modules\//, '') : '';
  return `${functionName || '(anonymous)'}${file ? ` ${file}:${lineNumber + 1}` : ''}`;
};

interface Tally { selfMs: Map<string, number>; totalMs: Map<string, number>; areaMs: Map<string, number>; busyMs: number }

/**
 * Self time per function and area, and total (inclusive) time per function, over the non-idle
 * samples taken within `window` (µs on the monotonic clock: the drain, without start-up and stop).
 */
function tally(profiles: CpuProfile[], window: { from: number; to: number }): Tally {
  const out: Tally = { selfMs: new Map(), totalMs: new Map(), areaMs: new Map(), busyMs: 0 };
  const add = (map: Map<string, number>, key: string, ms: number) => map.set(key, (map.get(key) ?? 0) + ms);
  for (const profile of profiles) {
    const byId = new Map(profile.nodes.map((node) => [node.id, node]));
    const parent = new Map<number, number>();
    for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
    let at = profile.startTime;
    profile.samples.forEach((id, i) => {
      at += profile.timeDeltas[i] ?? 0;
      if (at < window.from || at > window.to) return;
      const node = byId.get(id)!;
      const ms = (profile.timeDeltas[i] ?? 0) / 1000;
      const part = area(node.callFrame.url, node.callFrame.functionName);
      if (part === 'idle') return;
      out.busyMs += ms;
      add(out.areaMs, part, ms);
      add(out.selfMs, where(node), ms);
      const seen = new Set<string>();
      for (let up: number | undefined = id; up !== undefined; up = parent.get(up)) {
        const key = where(byId.get(up)!);
        if (!seen.has(key)) add(out.totalMs, key, ms);
        seen.add(key);
      }
    });
  }
  return out;
}

interface Statement { query: string; calls: number; rows: number; ms: number }

interface DuringDrain {
  /** pg_stat_activity samples: "application: state / wait event" → count. */
  sessions: Record<string, number>;
  /** pg_stat_statements over the drain (null where the server does not preload it). */
  statements: Statement[] | null;
  /** The drain, in µs on the monotonic clock. */
  window: { from: number; to: number };
}

/**
 * `perf record` of every CPU from now until stopped; then `perf report`'s split by process name
 * and binary, and its hottest symbols for the workers (node) and for PostgreSQL. This is CPU time
 * as the kernel counts it, which the V8 profile above is not: its samples are wall-clock ticks,
 * so a system call in which a process waits for a CPU counts there as the call's own time.
 */
function recordPerf(dir: string): () => Promise<string> {
  const data = path.join(dir, 'perf.data');
  const perf = spawn('perf', ['record', '-a', '-F', '997', '-o', data, '--', 'sleep', '3600'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  perf.stderr.on('data', (chunk) => { stderr += chunk; });
  // Resolves false when perf could not run at all (not installed).
  const exited = new Promise<boolean>((resolve) => {
    perf.once('error', () => resolve(false));
    perf.once('close', () => resolve(true));
  });
  return async () => {
    perf.kill('SIGINT');
    if (!(await exited) || !fs.existsSync(data) || fs.statSync(data).size === 0) return `perf: could not record (${stderr.trim().split('\n').at(-1) ?? 'perf not found'}); it needs Linux perf on PATH and root (or kernel.perf_event_paranoid <= 0)`;
    const report = (args: string[]) => spawnSync('perf', ['report', '-i', data, '--stdio', '--percent-limit', '0.4', ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).stdout
      .split('\n').filter((line) => line.trim() && !line.startsWith('#')).slice(0, 30).join('\n');
    return [
      'perf, every CPU during the drain: by process name and binary ([JIT] tid = a worker\'s compiled JavaScript)',
      report(['--sort', 'comm,dso']),
      'perf, node processes, hottest symbols:',
      report(['--comms', 'node', '--sort', 'sym']),
      'perf, postgres processes, hottest symbols:',
      report(['--comms', 'postgres', '--sort', 'sym']),
    ].join('\n');
  };
}

/**
 * Samples what each session of the database is doing, every 10 ms, until stopped; and, where the
 * server preloads pg_stat_statements (the embedded server this tool starts does), counts the
 * statements the drain ran.
 */
function sampleSessions(url: string): () => Promise<DuringDrain> {
  const counts: Record<string, number> = {};
  const client = new Client({ connectionString: url, application_name: 'bench-profile-sampler' });
  let running = true;
  let statements = false;
  const from = Number(process.hrtime.bigint() / 1000n);
  const loop = (async () => {
    await client.connect();
    try {
      await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await client.query('SELECT pg_stat_statements_reset()');
      statements = true;
    } catch {
      // Not preloaded (a DATABASE_URL server): sessions only.
    }
    while (running) {
      const { rows } = await client.query<{ what: string }>(
        `SELECT coalesce(nullif(application_name, ''), backend_type) || ': ' || coalesce(state, '-')
                || coalesce(' / ' || wait_event_type || ':' || wait_event, '') AS what
           FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND application_name NOT IN ('bench-poller', 'bench-profile-sampler')`,
      );
      for (const { what } of rows) counts[what] = (counts[what] ?? 0) + 1;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  return async () => {
    running = false;
    const to = Number(process.hrtime.bigint() / 1000n);
    await loop;
    try {
      const rows = statements ? (await client.query<Statement>(
        `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::int AS calls, rows::int AS rows, total_exec_time::float8 AS ms
           FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND query NOT LIKE '%pg_stat_activity%' AND query NOT LIKE '%count(*) AS n FROM posts%' ORDER BY calls DESC, ms DESC LIMIT 40`,
      )).rows : null;
      return { sessions: counts, statements: rows, window: { from, to } };
    } finally {
      await client.end().catch(() => undefined);
    }
  };
}

const table = (entries: Array<[string, number]>, total: number, top: number, unit = 'ms') => entries
  .sort((a, b) => b[1] - a[1]).slice(0, top)
  .map(([key, value]) => `  ${(100 * value / total).toFixed(1).padStart(5)}%  ${value.toFixed(0).padStart(7)} ${unit}  ${key}`).join('\n');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      system: { type: 'string', default: 'ours' },
      processes: { type: 'string', default: '1' },
      n: { type: 'string', default: '20000' },
      top: { type: 'string', default: '25' },
      warmup: { type: 'string', default: '0' },
      json: { type: 'string' },
      'rate-only': { type: 'boolean', default: false },
      perf: { type: 'boolean', default: false },
      'node-args': { type: 'string', default: '' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const make = SYSTEMS[values.system!];
  if (!make) throw new Error(`--system: unknown system '${values.system}' (known: ${Object.keys(SYSTEMS).join(', ')})`);
  const processes = Number(values.processes);
  const n = Number(values.n);
  const top = Number(values.top);
  const warmup = Number(values.warmup);
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error('--warmup must be a whole number');
  for (const [name, value] of [['--processes', processes], ['--n', n], ['--top', top]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  }
  const startedAt = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-profile-'));
  ensureBuilt((line) => process.stderr.write(`${line}\n`));
  const server = await startPostgres({ durable: true, settings: { shared_preload_libraries: 'pg_stat_statements' } });
  try {
    await dropStaleDatabases(server.url);
    const system = make();
    const ctx = { serverUrl: server.url, quick: false, runs: 1, results: new Results(), log: (line: string) => process.stderr.write(`${line}\n`) };
    const profiled = !values['rate-only'];
    let perfReport: Promise<string> | undefined;
    const nodeArgs = values['node-args']!.split(' ').filter(Boolean);
    const result = await drainOnce(ctx, system, n, processes, profiled ? {
      warmup,
      // --perf-basic-prof: a map of the compiled JavaScript for perf, in /tmp/perf-<pid>.map.
      startOptions: { nodeArgs: [...nodeArgs, '--cpu-prof', `--cpu-prof-dir=${dir}`, ...(values.perf ? ['--perf-basic-prof'] : [])] },
      during: (url) => {
        const stopSessions = sampleSessions(url);
        const stopPerf = values.perf ? recordPerf(dir) : null;
        return async () => {
          if (stopPerf) perfReport = stopPerf();
          return stopSessions();
        };
      },
    } : { warmup, startOptions: { nodeArgs } });
    if (!result.ok) throw new Error(`the drain failed: ${result.error}`);
    const { rate, seconds, workerCpuMsPerK, postgresCpuMsPerK } = result.values;
    const summary = `${system.label}, ${processes} process(es), ${n} messages: ${Math.round(rate)} msg/s (${seconds.toFixed(2)} s); CPU per 1k: workers ${workerCpuMsPerK.toFixed(0)} ms, PostgreSQL ${postgresCpuMsPerK.toFixed(0)} ms`;
    if (!profiled) {
      process.stdout.write(`${summary}\n`);
      return;
    }
    const profiles = fs.readdirSync(dir).filter((file) => file.endsWith('.cpuprofile'))
      .map((file) => JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile);
    const { sessions, statements, window } = (result.detail as { during: DuringDrain }).during;
    const { selfMs, totalMs, areaMs, busyMs } = tally(profiles, window);
    const sessionSamples = Object.values(sessions).reduce((a, b) => a + b, 0);
    process.stdout.write([
      summary,
      `profiled ${profiles.length} process(es): ${busyMs.toFixed(0)} ms busy during the drain (time in a system call counts, also while the process waits there for a CPU)`,
      'CPU by area (self time):', table([...areaMs], busyMs, 20),
      'functions by self time:', table([...selfMs], busyMs, top),
      'functions by total time (callees included):', table([...totalMs], busyMs, top),
      `database sessions (${sessionSamples} samples, every 10 ms; application: state / wait event):`,
      table(Object.entries(sessions), sessionSamples, 20, '×'),
      statements
        ? `statements (pg_stat_statements), per 1,000 messages: calls, rows, server time\n${statements.map((s) => `  ${(1000 * s.calls / n).toFixed(0).padStart(6)}  ${(1000 * s.rows / n).toFixed(0).padStart(6)}  ${(1000 * s.ms / n).toFixed(0).padStart(6)} ms  ${s.query.slice(0, 160)}`).join('\n')}`
        : 'statements: not counted (the server does not preload pg_stat_statements; unset DATABASE_URL to profile on an embedded server that does)',
      ...(perfReport ? [await perfReport] : []),
      '',
    ].join('\n'));
    if (values.json) {
      fs.writeFileSync(values.json, `${JSON.stringify({
        system: system.key, processes, n, values: result.values,
        areaMs: Object.fromEntries(areaMs), selfMs: Object.fromEntries([...selfMs].sort((a, b) => b[1] - a[1]).slice(0, 100)),
        totalMs: Object.fromEntries([...totalMs].sort((a, b) => b[1] - a[1]).slice(0, 100)), sessions, statements,
      }, null, 2)}\n`);
    }
  } finally {
    await server.stop();
    if (process.env.BENCH_PROFILE_KEEP) process.stderr.write(`kept ${dir}\n`);
    else fs.rmSync(dir, { recursive: true, force: true });
    // --perf-basic-prof's maps of this run's workers.
    for (const file of fs.readdirSync(os.tmpdir())) {
      const at = path.join(os.tmpdir(), file);
      if (/^perf-\d+\.map$/.test(file) && fs.statSync(at).mtimeMs >= startedAt) fs.rmSync(at, { force: true });
    }
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:profile: ${(error as Error).message}\n`);
  process.exitCode = 1;
});
