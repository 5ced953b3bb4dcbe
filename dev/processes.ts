/**
 * Child processes for the tests, the bench and the demo: programs run to completion (run), and
 * long-running ones that report in JSON lines on stdout (spawnProcess): the shipped CLI's
 * `--log-format json` lines, whose `event` field names what happened, or the bench's worker
 * scripts. Log text (`msg`) is for people; harnesses read `event` and the fields.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import readline from 'node:readline';

export const ROOT = path.resolve(__dirname, '..');
/** The shipped entry point of the `pgpubsub` command. */
export const BIN = path.join(ROOT, 'bin', 'pgpubsub.js');
export const SEQUELIZE_CLI = path.join(ROOT, 'node_modules', '.bin', 'sequelize-cli');
/** tsx's CommonJS hook, by absolute path, so a child can run a .ts file whatever its cwd. */
const TSX = require.resolve('tsx/cjs');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Sets DATABASE_URL. */
  url?: string;
  /** Default: the repository root. */
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeout?: number;
}

/** Shebangs (node_modules/.bin/*) need `node` on PATH: this one's first. */
const withNodeOnPath = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv =>
  ({ ...env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${env.PATH ?? ''}` });

/** Runs a program to completion; resolves with its exit code and output, never rejects on a non-zero exit. */
export function run(file: string, args: string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(file, args, {
      cwd: options.cwd ?? ROOT,
      env: withNodeOnPath({ ...process.env, ...(options.url ? { DATABASE_URL: options.url } : {}), ...options.env }),
      timeout: options.timeout ?? 30_000,
      maxBuffer: 16 * 1024 * 1024,
    }, (error, stdout, stderr) => {
      if (error?.killed && error.code === null) {
        // The timeout's kill: say so, with what it printed, so a hang shows where it hung.
        reject(new Error(`${path.basename(file)} ${args.join(' ')} did not finish within ${options.timeout ?? 30_000} ms (killed with ${error.signal})\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
        return;
      }
      if (error && typeof error.code !== 'number') {
        reject(new Error(`${path.basename(file)} ${args.join(' ')} did not run: ${error.message}\n${stderr}`));
        return;
      }
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** `pgpubsub …` from this checkout, to completion. */
export const pgpubsubCli = (args: string[], options?: RunOptions) => run(process.execPath, [BIN, ...args], options);

/** A run's exit code and output, for assertion messages. */
export const shown = (result: Run) => `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;

/** One JSON line a child printed: the CLI's log lines carry time, level, msg, pid, event and fields. */
export interface ChildEvent {
  event?: string;
  msg?: string;
  level?: string;
  pid?: number;
  worker?: number;
  [field: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildProcessHandle {
  child: ChildProcess;
  readonly pid: number;
  /** stdout lines that were JSON objects, in order. */
  events: ChildEvent[];
  /** stdout lines that were not JSON (kept for error messages). */
  output: string[];
  stderr(): string;
  /** Resolves with the first event of this name; rejects on timeout or if the process exits first. */
  event(name: string, timeoutMs?: number): Promise<ChildEvent>;
  /** Every event of this name so far. */
  all(name: string): ChildEvent[];
  /** Resolves once every byte of output has been read ('close'). */
  exited: Promise<Exit>;
  /** The exit, once there is one. */
  exit: Exit | null;
  /** SIGTERM (or `signal`), then SIGKILL if it has not exited within `graceMs`; resolves with the exit. */
  stop(graceMs?: number, signal?: NodeJS.Signals): Promise<Exit>;
  /** Sends a signal if it still runs; never throws. */
  kill(signal?: NodeJS.Signals): void;
  /** For assertion messages: the exit, the events and the end of stderr. */
  describe(): string;
}

/** Every child started here, so that a crash or Ctrl+C of the parent leaves none running. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/**
 * Starts `node <script> …args` (a .ts script runs through tsx) with `env` added to this process's
 * environment, stdin a pipe, and its JSON stdout lines collected as events.
 */
export function spawnProcess(script: string, args: string[], env: Record<string, string> = {}, cwd = ROOT, options: { esm?: boolean; prefix?: readonly string[]; node?: string; nodeArgs?: readonly string[] } = {}): ChildProcessHandle {
  // tsx's require hook for CommonJS TypeScript; its full loader (ES modules too) when asked.
  const loader = options.esm ? ['--import', pathToFileURL(require.resolve('tsx')).href] : ['--require', TSX];
  // `nodeArgs`: Node.js's own options (bench/profile.ts: --cpu-prof), before the script.
  const nodeArgs = [...(options.nodeArgs ?? []), ...(script.endsWith('.ts') ? [...loader, script, ...args] : [script, ...args])];
  // `prefix`: a command that runs node, e.g. ['ip', 'netns', 'exec', name] (it execs node: same pid).
  // `node`: another Node.js binary than this one (dev/versions' nodeBinary).
  const [command, ...commandArgs] = [...(options.prefix ?? []), options.node ?? process.execPath, ...nodeArgs];
  const childEnv = withNodeOnPath({ ...process.env, ...env });
  // What it starts through `node` or a shebang runs on the same Node.js.
  if (options.node) childEnv.PATH = `${path.dirname(options.node)}${path.delimiter}${childEnv.PATH ?? ''}`;
  const child = spawn(command!, commandArgs, { cwd, env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  let stderr = '';
  child.stderr!.on('data', (chunk) => { stderr = (stderr + chunk).slice(-100_000); });
  const events: ChildEvent[] = [];
  const output: string[] = [];
  const waiters = new Set<() => void>();
  const changed = () => { for (const wake of [...waiters]) wake(); };
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) events.push(parsed as ChildEvent);
    else output.push(line);
    changed();
  });
  const handle: ChildProcessHandle = {
    child,
    get pid() { return child.pid!; },
    events,
    output,
    stderr: () => stderr,
    exit: null,
    // 'close', not 'exit': only then has all of its output been read.
    exited: new Promise<Exit>((resolve) => {
      child.once('close', (code, signal) => {
        live.delete(child);
        handle.exit = { code, signal };
        changed();
        resolve(handle.exit);
      });
    }),
    all: (name) => events.filter((e) => e.event === name),
    async event(name, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find((e) => e.event === name);
        if (found) return found;
        if (handle.exit) throw new Error(`expected '${name}', but ${handle.describe()}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no '${name}' within ${timeoutMs} ms from ${handle.describe()}`);
        await new Promise<void>((resolve) => {
          const done = () => { clearTimeout(timer); waiters.delete(done); resolve(); };
          const timer = setTimeout(done, left);
          waiters.add(done);
        });
      }
    },
    async stop(graceMs = 10_000, signal = 'SIGTERM') {
      if (handle.exit) return handle.exit;
      handle.kill(signal);
      const timer = setTimeout(() => handle.kill('SIGKILL'), graceMs);
      const exit = await handle.exited;
      clearTimeout(timer);
      return exit;
    },
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    describe() {
      const state = handle.exit ? `exited ${JSON.stringify(handle.exit)}` : 'running';
      const shownEvents = events.map((e) => `${e.worker ?? '-'} ${e.level ?? ''} ${e.event ?? ''}: ${e.msg ?? JSON.stringify(e)}`);
      return `${path.relative(ROOT, script)} ${args.join(' ')} (pid ${child.pid}, ${state})\n  ${[...shownEvents, ...output].slice(-60).join('\n  ')}\n  stderr: ${stderr.slice(-4000)}`;
    },
  };
  return handle;
}

/**
 * `pgpubsub listen …` from this checkout, as a user runs it, logging JSON lines at info (or the
 * `--log-level` given) on stdout.
 */
export function startListen(url: string, args: string[], env: Record<string, string> = {}, options: { prefix?: readonly string[] } = {}) {
  // At debug: the tests read the per-batch lines ('batch').
  const handle = spawnProcess(BIN, ['listen', '--log-format', 'json', '--log-level', 'debug', ...args], { DATABASE_URL: url, ...env }, ROOT, options);
  return Object.assign(handle, {
    /** Worker pids that said they are listening (current ones last). */
    listeningWorkers: () => handle.all('listening').filter((e) => e.worker).map((e) => e.pid!),
    /** Notifications processed per worker pid (or slot), from the 'batch' events. */
    processedBy: (key: 'pid' | 'worker') => {
      const counts = new Map<number, number>();
      for (const e of handle.all('batch')) counts.set(Number(e[key]), (counts.get(Number(e[key])) ?? 0) + Number(e.processed));
      return counts;
    },
  });
}

export type ListenProcess = ReturnType<typeof startListen>;
