/**
 * `npm run bench [-- --quick] [--runs N] [--only W1,W3] [--json file]`
 *
 * Runs the workloads of BENCHMARKS.md against sequelize-pgpubsub, its peers
 * (graphile-worker 0.17 and pg-boss 10 on this Node, graphile-worker 0.18 and pg-boss 12 on Node 22)
 * and a hand-written ceiling loop, on one PostgreSQL (embedded
 * unless DATABASE_URL is set), each system and run on a fresh database. Prints one table of
 * medians with ratios and the targets met or not, and writes the same as JSON.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { dropStaleDatabases, startPostgres } from '../dev/postgres';
import { ROOT } from '../dev/processes';
import { evaluateTargets, renderSummary, renderTable } from './report';
import { Results, type Row, medianOf } from './results';
import { serverInfo } from './support/db';
import { ensureBuilt } from './support/compiled';
import { machine } from './support/proc';
import type { BenchContext } from './workloads/context';
import { w1, w5, w6 } from './workloads/drain';
import { w4 } from './workloads/idle';
import { w2 } from './workloads/latency';
import { w3a, w3b } from './workloads/producer';
import { status } from './workloads/status';
import { w7 } from './workloads/ordering';
import { BACKLOG_SHAPES, w8 } from './workloads/backlog';
import { w9 } from './workloads/relay';

const WORKLOADS = ['W1', 'W2', 'W3a', 'W3b', 'W4', 'W5', 'W6', 'W7', 'W8', 'W9', 'Status'] as const;
type Workload = (typeof WORKLOADS)[number];

const USAGE = `usage: npm run bench -- [options]
  --quick            a short run (under 3 minutes): smaller counts, W1 with 2 processes only, no W5, 1 run
  --runs <n>         runs per measurement; the table shows medians (default 3, quick 1)
  --only <list>      workloads to run, e.g. W1,W3,Status (W3 = W3a and W3b); default all
  --shapes <list>    W8's backlog shapes to run beside the empty table, e.g. "held,excluded by a
                     contextFilter" (held: the transaction held open); default all
  --json <file>      where to write the results (default: bench/results/latest.json for a full run
                     of every workload, which writes it whatever --json says; bench/results/partial.json
                     for a quick or an --only run, which never does)
  --from <file>      run nothing: print the table of a saved results file
  --help             this text
PostgreSQL: DATABASE_URL if set (a superuser URL; the benchmark creates and drops its own
databases), else an embedded server started for the run.`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      only: { type: 'string' },
      shapes: { type: 'string' },
      json: { type: 'string' },
      from: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const runs = values.runs === undefined ? (values.quick ? 1 : 3) : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got '${values.runs}'`);
  let only: Set<Workload> = new Set(WORKLOADS);
  if (values.only) {
    only = new Set();
    for (const name of values.only.split(',').map((s) => s.trim()).filter(Boolean)) {
      const matched = WORKLOADS.filter((w) => w.toLowerCase() === name.toLowerCase() || (name.toUpperCase() === 'W3' && w.startsWith('W3')));
      if (matched.length === 0) throw new Error(`--only: unknown workload '${name}' (known: ${WORKLOADS.join(', ')}, W3)`);
      for (const w of matched) only.add(w);
    }
  }
  // latest.json is always the latest full run (BENCHMARKS.md links it): a quick or partial run never
  // overwrites it, and a full run writes it even when told to write elsewhere too.
  const whole = !values.quick && !values.only && values.shapes === undefined;
  const latest = path.join(ROOT, 'bench', 'results', 'latest.json');
  const partial = path.join(ROOT, 'bench', 'results', 'partial.json');
  const json = path.resolve(values.json ?? (whole ? latest : partial));
  if (!whole && json === latest) throw new Error('--json bench/results/latest.json is for a full run of every workload; write a quick or partial run elsewhere');
  // While a full run is under way its results go to partial.json (or --json), and latest.json only once it is complete.
  const interim = json === latest ? partial : json;
  const alsoLatest = whole && json !== latest ? latest : null;
  const shapes = values.shapes === undefined ? null : values.shapes.split(',').map((s) => s.trim()).filter(Boolean);
  for (const shape of shapes ?? []) {
    if (shape !== 'held' && !(shape in BACKLOG_SHAPES)) throw new Error(`--shapes: unknown shape '${shape}' (known: held, ${Object.keys(BACKLOG_SHAPES).join(', ')})`);
  }
  return { quick: values.quick!, runs, only, json, interim, alsoLatest, from: values.from, shapes };
}

/** The sizes of each workload: full as BENCHMARKS.md says, quick scaled down. */
function plan(quick: boolean) {
  return quick
    ? {
      drainN: 5_000, drainProcesses: [2], latencyMs: 5_000, bulkN: 5_000, commitsMs: 3_000, idleMs: 10_000, backlogN: 0, backlogLimitMs: 0, ioN: 1_000,
      statusStored: [20_000], statusFailed: 200, orderedRows: 200, shapesN: 5_000, shapesBacklog: 50_000, shapesProcesses: [2], heldN: 10_000, relayProcesses: [1],
    }
    : {
      drainN: 20_000, drainProcesses: [1, 2, 4], latencyMs: 30_000, bulkN: 20_000, commitsMs: 10_000, idleMs: 60_000, backlogN: 1_000_000, backlogLimitMs: 1_800_000, ioN: 5_000,
      statusStored: [100_000, 1_000_000], statusFailed: 1_000, orderedRows: 1_000, shapesN: 20_000, shapesBacklog: 1_000_000, shapesProcesses: [1, 2], heldN: 100_000, relayProcesses: [1, 2],
    };
}

function packageVersion(dir: string): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  } catch {
    return 'not installed';
  }
}

function gitRevision(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dirty ? `${head} + uncommitted changes in lib/` : head;
  } catch {
    return 'unknown';
  }
}

function versions() {
  const root = (name: string) => packageVersion(path.join(ROOT, 'node_modules', name));
  const bench = (name: string) => packageVersion(path.join(ROOT, 'bench', 'node_modules', name));
  return {
    'sequelize-pgpubsub': `${packageVersion(ROOT)} (${gitRevision()})`,
    'graphile-worker': bench('graphile-worker'),
    'pg-boss': bench('pg-boss'),
    // The current peers, run on Node 22 (dev/versions).
    'graphile-worker (Node 22)': bench('graphile-worker-0.18'),
    'pg-boss (Node 22)': bench('pg-boss-12'),
    pg: root('pg'),
    'pg (peers and ceiling)': bench('pg'),
    sequelize: root('sequelize'),
    node: process.version,
  };
}

type Environment = { machine: ReturnType<typeof machine>; postgres: Awaited<ReturnType<typeof serverInfo>> & { embedded: boolean }; versions: ReturnType<typeof versions> };

function renderHeader(run: { mode: string; date: string; runs: number; seconds: number } & Environment): string {
  const { machine: m, postgres: pg, versions: v } = run;
  return [
    `sequelize-pgpubsub benchmark, ${run.mode} run, ${run.date}, ${run.runs} run(s) per row (median), ${run.seconds.toFixed(0)} s`,
    `machine: ${m.cores} cores, ${m.cpuModel}, ${m.totalMemoryGb} GB; PostgreSQL ${pg.version}${pg.embedded ? ' (embedded)' : ''}, synchronous_commit=${pg.synchronous_commit}, fsync=${pg.fsync}; Node ${v.node}`,
    `versions: ${Object.entries(v).filter(([k]) => k !== 'node').map(([k, value]) => `${k} ${value}`).join(', ')}`,
  ].join('\n');
}

/** --from: the table of a saved run, judged by the current report code. */
function printSaved(file: string): number {
  const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
  const results = new Results();
  for (const row of saved.rows as Row[]) results.rows.push({ ...row, runs: row.runs });
  const verdicts = evaluateTargets(results);
  const header = renderHeader({ mode: saved.mode, date: saved.date, runs: saved.runsPerRow, seconds: saved.durationSeconds, ...saved });
  process.stdout.write(`${header}${saved.complete === false ? '\n(incomplete run)' : ''}\n\n${renderTable(results, verdicts)}\n\n${renderSummary(verdicts)}\n`);
  return 0;
}

async function main(): Promise<number> {
  const options = parseOptions();
  if (options.from) return printSaved(path.resolve(options.from));
  const sizes = plan(options.quick);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const startedAt = new Date();
  const t0 = performance.now();

  ensureBuilt(log);
  const server = await startPostgres({ durable: true });
  log(server.embedded ? `bench: embedded PostgreSQL at ${new URL(server.url).host}` : 'bench: PostgreSQL of DATABASE_URL');
  const stop = () => void server.stop().finally(() => process.exit(130));
  process.once('SIGINT', stop).once('SIGTERM', stop);
  const results = new Results();
  const environment = {
    machine: machine(),
    postgres: { ...(await serverInfo(server.url)), embedded: server.embedded },
    versions: versions(),
  };
  // Written after every workload, so that an interrupted run still leaves what it measured.
  const save = (complete: boolean) => {
    const json = {
      date: startedAt.toISOString(),
      mode: options.quick ? 'quick' : 'full',
      complete,
      runsPerRow: options.runs,
      durationSeconds: Math.round((performance.now() - t0) / 1000),
      sizes,
      ...environment,
      rows: results.rows.map((row) => ({
        ...row,
        median: Object.fromEntries(row.figures.map(({ name }) => [name, medianOf(row, name)])),
      })),
      targets: evaluateTargets(results),
    };
    const text = `${JSON.stringify(json, null, 2)}\n`;
    fs.mkdirSync(path.dirname(options.json), { recursive: true });
    if (!complete) {
      fs.writeFileSync(options.interim, text);
      return;
    }
    fs.writeFileSync(options.json, text);
    // Only once complete: an interrupted full run is not the latest full run.
    if (options.alsoLatest) fs.writeFileSync(options.alsoLatest, text);
  };
  try {
    await dropStaleDatabases(server.url);
    const skipped = options.quick && options.only.has('W5') ? ' (W5 is skipped in --quick)' : '';
    log(`bench: ${options.quick ? 'quick' : 'full'} run, ${options.runs} run(s) each, workloads ${[...options.only].join(', ')}${skipped}`);
    const ctx: BenchContext = { serverUrl: server.url, quick: options.quick, runs: options.runs, results, log };
    const steps: Array<[Workload, () => Promise<void>]> = [
      ['W1', () => w1(ctx, { n: sizes.drainN, processes: sizes.drainProcesses })],
      ['W2', () => w2(ctx, { durationMs: sizes.latencyMs })],
      ['W3a', () => w3a(ctx, { n: sizes.bulkN })],
      ['W3b', () => w3b(ctx, { durationMs: sizes.commitsMs, clients: 8 })],
      ['W4', () => w4(ctx, { durationMs: sizes.idleMs, processes: 4 })],
      ['W5', () => w5(ctx, { n: sizes.backlogN, timeLimitMs: sizes.backlogLimitMs })],
      ['W6', () => w6(ctx, { n: sizes.ioN, processes: 2 })],
      ['W7', () => w7(ctx, { rows: sizes.orderedRows, updates: 10, processes: 4 })],
      ['W8', () => w8(ctx, { n: sizes.shapesN, backlog: sizes.shapesBacklog, processes: sizes.shapesProcesses, heldN: sizes.heldN, shapes: options.shapes })],
      ['W9', () => w9(ctx, { n: sizes.drainN, processes: sizes.relayProcesses, latencyMs: sizes.latencyMs })],
      ['Status', async () => { for (const stored of sizes.statusStored) await status(ctx, { stored, failed: sizes.statusFailed }); }],
    ];
    for (const [workload, step] of steps) {
      if (!options.only.has(workload) || (workload === 'W5' && options.quick)) continue;
      await step();
      save(false);
    }
  } finally {
    process.off('SIGINT', stop).off('SIGTERM', stop);
    await server.stop();
  }

  save(true);
  const verdicts = evaluateTargets(results);
  const seconds = (performance.now() - t0) / 1000;
  const mode = options.quick ? 'quick' : 'full';
  process.stdout.write(`\n${renderHeader({ mode, date: startedAt.toISOString(), runs: options.runs, seconds, ...environment })}\n\n${renderTable(results, verdicts)}\n\n${renderSummary(verdicts)}\n`);
  log(`bench: wrote ${path.relative(process.cwd(), options.json)}${options.alsoLatest ? ` and ${path.relative(process.cwd(), options.alsoLatest)}` : ''}`);
  return results.rows.some((row) => row.runs.some((run) => !run.ok)) ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (error: Error) => {
  process.stderr.write(`bench: ${error.message}\n`);
  process.exitCode = 2;
});
