import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { sleep } from './stats';

export const ROOT = path.resolve(__dirname, '..', '..');
/** tsx's CommonJS hook, by absolute path, so a child can run a .ts file whatever its cwd. */
const TSX = require.resolve('tsx/cjs');

/** Every child we started, so that a crash or Ctrl+C of the benchmark leaves none running. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

export interface WorkerProcess {
  child: ChildProcess;
  /** stdout lines that were not JSON (kept for error messages). */
  output: string[];
  /** stdout lines that were JSON objects, in order. */
  events: Array<Record<string, unknown>>;
  stderr(): string;
  /** Resolves with the first JSON event of this type the child prints on stdout. */
  event(type: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `node <script> …args` (a .ts script runs through tsx) with the given environment.
 * Children report with one JSON object per stdout line, e.g. {"event":"ready"}.
 */
export function spawnProcess(script: string, args: string[], env: Record<string, string>, cwd = ROOT): WorkerProcess {
  const nodeArgs = script.endsWith('.ts') ? ['--require', TSX, script, ...args] : [script, ...args];
  const child = spawn(process.execPath, nodeArgs, { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => { stderr = (stderr + chunk).slice(-20_000); });
  const output: string[] = [];
  const waiters: Array<{ type: string; resolve: (event: Record<string, unknown>) => void }> = [];
  const seen: Array<Record<string, unknown>> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line);
    } catch {
      output.push(line);
      return;
    }
    seen.push(event);
    for (const waiter of waiters.filter((w) => w.type === event.event)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(event);
    }
  });
  const describe = () => `${path.relative(ROOT, script)} (pid ${child.pid})\n${stderr.slice(-3000)}${output.slice(-20).join('\n')}`;
  return {
    child,
    output,
    events: seen,
    stderr: () => stderr,
    exited,
    event(type, timeoutMs = 60_000) {
      const already = seen.find((e) => e.event === type);
      if (already) return Promise.resolve(already);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no '${type}' from ${describe()} within ${timeoutMs} ms`)), timeoutMs);
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(new Error(`${describe()}\nexited (code ${code}, signal ${signal}) before '${type}'`));
        });
        waiters.push({ type, resolve: (event) => { clearTimeout(timer); resolve(event); } });
      });
    },
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---- /proc readings (Linux): CPU time and memory of a process tree ----

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every mainstream Linux build

/** The pid and all its descendants (e.g. the cluster primary and its workers). */
export function processTree(pid: number): number[] {
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    try {
      for (const task of fs.readdirSync(`/proc/${pids[i]}/task`)) {
        const children = fs.readFileSync(`/proc/${pids[i]}/task/${task}/children`, 'utf8').trim();
        if (children) pids.push(...children.split(/\s+/).map(Number));
      }
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The node processes among pid's children (not e.g. the esbuild service tsx starts). */
export function nodeChildren(pid: number): number[] {
  return processTree(pid).filter((p) => {
    if (p === pid) return false;
    try {
      return fs.readlinkSync(`/proc/${p}/exe`) === process.execPath && fs.readFileSync(`/proc/${p}/stat`, 'utf8').includes(` ${pid} `);
    } catch {
      return false;
    }
  });
}

/** User + system CPU seconds a process has used so far (0 if it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND; // utime, stime
  } catch {
    return 0;
  }
}

export function treeCpuSeconds(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

/** A line of /proc/<pid>/status in MB (VmHWM = peak resident set, VmRSS = current). */
export function memoryMb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Busy CPU seconds of the whole machine so far (all cores), from /proc/stat. */
export function machineBusySeconds(): number {
  try {
    const [, ...values] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
    const [user, nice, system, , , irq, softirq, steal] = values.map(Number);
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

export function machine() {
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    totalMemoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
  };
}

/** Polls `check` every `intervalMs` until it returns true; false on timeout. */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}
