import { type ChildProcess, spawn } from 'node:child_process';
import readline from 'node:readline';
import { BIN, ROOT } from './processes';

export { BIN, ROOT };

export interface LogEntry {
  msg: string;
  level: string;
  pid: number;
  worker?: number;
  [field: string]: unknown;
}

/** `pgpubsub listen …` as a real process tree, with its JSON log lines collected. */
export function startListen(url: string, args: string[], env: Record<string, string> = {}) {
  const child: ChildProcess = spawn(process.execPath, [BIN, 'listen', '--log-format', 'json', ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogEntry[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk) => { stderr += chunk; });
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogEntry);
    } catch {
      logs.push({ msg: line, level: 'raw', pid: 0 });
    }
  });
  // 'close', not 'exit': only then has all of its output been read.
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return {
    child,
    logs,
    exit,
    stderr: () => stderr,
    /** Worker pids that said they are listening (current ones last). */
    listeningWorkers: () => logs.filter((entry) => entry.msg === 'listening' && entry.worker).map((entry) => entry.pid),
    /** Notifications processed per worker pid, from the batch log lines. */
    processedByPid: () => {
      const counts = new Map<number, number>();
      for (const entry of logs) if (entry.msg === 'batch') counts.set(entry.pid, (counts.get(entry.pid) ?? 0) + Number(entry.processed));
      return counts;
    },
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

export type ListenProcess = ReturnType<typeof startListen>;
