/**
 * `npm run test:matrix`: the suite on every Node.js and PostgreSQL version the library supports.
 *
 * Each axis is run on its own, against the other's default: Node 20, 22 and 24 on the default
 * embedded PostgreSQL, then PostgreSQL 13 to 18 on the Node on the PATH (a cross product would be
 * 18 runs of the whole suite for what these 8 find). The versions other than the default come from
 * dev/versions (installed on first use).
 *
 *   npm run test:matrix                         every version, the whole suite
 *   npm run test:matrix -- --quick              every version but the default pair, the quick subset
 *                                               of its axis (NODE_SUBSET, POSTGRES_SUBSET)
 *   npm run test:matrix -- --quick --except-pg 15   the same without PostgreSQL 15 (CI: the system
 *                                               server's major, which the whole suite ran on)
 *   npm run test:matrix -- --node 24 --pg 13    only those (repeatable), the whole suite
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { NODE_MAJORS, POSTGRES_MAJORS, defaultPostgresMajor, ensureVersions, nodeBinary } from './versions';

/**
 * The quick subset, by the axis a file can differ on. A Node.js version changes the processes the
 * library starts and the modules it loads (the CLI, the cluster, the packed and installed package,
 * the listener's timers and signals); a PostgreSQL version changes the SQL it installs and runs
 * (migrations, triggers, claims, ordering, privileges, upgrades). Each run takes its axis's files
 * only: a file in both lists runs on both. The cluster's processes (most of the subset's time) run
 * the SQL the listener tests run on every PostgreSQL version, so they run on every Node.js only.
 */
export const NODE_SUBSET = [
  'test/install.test.ts',
  'test/listener.test.ts',
  'test/cli.test.ts',
  'test/cluster.test.ts',
  'test/installed-package.test.ts',
  'test/quick-start.test.ts',
  'test/relay.test.ts',
  'test/inbox.test.ts',
];
export const POSTGRES_SUBSET = [
  'test/install.test.ts',
  'test/upgrade.test.ts',
  'test/backlog.test.ts',
  'test/schema.test.ts',
  'test/triggers.test.ts',
  'test/payloads.test.ts',
  'test/ordering.test.ts',
  'test/channel-options.test.ts',
  'test/privileges.test.ts',
  'test/listener.test.ts',
];

interface Run {
  node: number;
  pg: number;
  files: string[];
}

interface Outcome extends Run {
  label: string;
  status: 'passed' | 'failed';
  passing: number;
  failing: number;
  pending: number;
  seconds: number;
  log: string;
}

const ROOT = path.join(__dirname, '..');
const mochaConfig = JSON.parse(fs.readFileSync(path.join(ROOT, '.mocharc.json'), 'utf8')) as { require: string[]; timeout: number };

function runSuite(run: Run, logDir: string): Outcome {
  const label = `Node ${run.node} · PostgreSQL ${run.pg}${run.files.length > 0 ? ' · quick' : ''}`;
  const log = path.join(logDir, `node${run.node}-pg${run.pg}.log`);
  let node: string;
  try {
    node = nodeBinary(run.node);
  } catch (error) {
    // One version that cannot be had fails its own run, not the matrix.
    fs.writeFileSync(log, String((error as Error).stack));
    process.stdout.write(`=== ${label} ===\nfailed: ${(error as Error).message}\n`);
    return { ...run, label, status: 'failed', passing: 0, failing: 0, pending: 0, seconds: 0, log };
  }
  const shown = node.startsWith(ROOT + path.sep) ? path.relative(ROOT, node) : node;
  process.stdout.write(`=== ${label} (${shown}) ===\n`);
  const started = Date.now();
  // The dot reporter ends with mocha's summary (N passing, N failing, N pending): what is counted.
  const args = [require.resolve('mocha/bin/mocha.js'), '--reporter', 'dot'];
  if (run.files.length > 0) args.push('--no-config', ...mochaConfig.require.flatMap((r) => ['--require', r]), '--timeout', String(mochaConfig.timeout), '--exit', ...run.files);
  const env: NodeJS.ProcessEnv = { ...process.env, PG_VERSION: String(run.pg), PATH: `${path.dirname(node)}${path.delimiter}${process.env.PATH ?? ''}` };
  delete env.DATABASE_URL; // every run starts its own embedded server of the version it names
  const result = spawnSync(node, args, { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  fs.writeFileSync(log, output);
  const count = (word: string) => Number(new RegExp(`(\\d+) ${word}`).exec(output)?.[1] ?? 0);
  const outcome: Outcome = {
    ...run,
    label,
    status: result.status === 0 ? 'passed' : 'failed',
    passing: count('passing'),
    failing: count('failing'),
    pending: count('pending'),
    seconds: Math.round((Date.now() - started) / 1000),
    log,
  };
  process.stdout.write(`${outcome.status}: ${outcome.passing} passing, ${outcome.failing} failing, ${outcome.pending} pending in ${outcome.seconds} s${outcome.status === 'failed' ? ` (exit ${result.status ?? result.signal}); log: ${log}\n${output.split('\n').slice(-60).join('\n')}` : ''}\n`);
  return outcome;
}

/** A repeatable option's majors: one of `allowed`, or (null) any whole number. */
function parseMajors(allowed: readonly number[] | null) {
  return (value: string, previous: number[] = []): number[] => {
    const major = Number(value);
    if (allowed ? !allowed.includes(major) : !Number.isInteger(major)) throw new InvalidArgumentError(allowed ? `pick one of ${allowed.join(', ')}.` : 'a major version, e.g. 15.');
    return [...previous, major];
  };
}

function main(): void {
  const program = new Command('test:matrix')
    .description('The test suite on each Node.js and PostgreSQL version the library supports (each axis against the other\'s default).')
    .option('--quick', 'the quick subset, and only on the versions other than the default pair (as CI runs it)')
    .option('--node <major>', `only this Node.js major (${NODE_MAJORS.join(', ')}); repeatable`, parseMajors(NODE_MAJORS))
    .option('--pg <major>', `only this PostgreSQL major (${POSTGRES_MAJORS.join(', ')}); repeatable`, parseMajors(POSTGRES_MAJORS))
    .option('--except-pg <major>', 'not this PostgreSQL major, which another run covers (CI: the system server\'s, on the whole suite; any major); repeatable', parseMajors(null))
    .option('--json', 'print the outcomes as JSON at the end')
    .showHelpAfterError();
  program.parse();
  const options = program.opts<{ quick?: boolean; node?: number[]; pg?: number[]; exceptPg?: number[]; json?: boolean }>();

  const defaultNode = Number.parseInt(process.versions.node, 10);
  const defaultPg = defaultPostgresMajor();
  const runs: Run[] = [];
  const picked = options.node !== undefined || options.pg !== undefined;
  const nodes = options.node ?? (picked ? [] : NODE_MAJORS.filter((m) => !options.quick || m !== defaultNode));
  const pgs = (options.pg ?? (picked ? [] : POSTGRES_MAJORS.filter((m) => m !== defaultPg || (!options.quick && !nodes.includes(defaultNode)))))
    .filter((m) => !options.exceptPg?.includes(m));
  for (const node of nodes) runs.push({ node, pg: defaultPg, files: options.quick ? NODE_SUBSET : [] });
  for (const pg of pgs) if (!runs.some((r) => r.node === defaultNode && r.pg === pg)) runs.push({ node: defaultNode, pg, files: options.quick ? POSTGRES_SUBSET : [] });

  ensureVersions();
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-matrix-'));
  const outcomes = runs.map((run) => runSuite(run, logDir));

  process.stdout.write('\n| Node.js | PostgreSQL | tests | passing | failing | pending | seconds |\n|---|---|---|---|---|---|---|\n');
  for (const o of outcomes) process.stdout.write(`| ${o.node} | ${o.pg} | ${o.files.length > 0 ? 'quick' : 'all'} | ${o.passing} | ${o.failing} | ${o.pending} | ${o.seconds} |\n`);
  if (options.json) process.stdout.write(`${JSON.stringify(outcomes, null, 2)}\n`);
  const failed = outcomes.filter((o) => o.status === 'failed');
  if (failed.length > 0) {
    process.stderr.write(`test:matrix: ${failed.length} of ${outcomes.length} runs failed: ${failed.map((o) => `${o.label} (${o.log})`).join('; ')}\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) main();
