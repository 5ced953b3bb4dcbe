import { type ChildProcessHandle, ROOT, spawnProcess } from '../../dev/processes';
import { processTree } from '../support/proc';
import type { Workers } from './types';

/**
 * N copies of a worker script (bench/workers/*), each printing {"event":"ready"} once it can
 * receive work. Used by the peers and the ceiling loop, whose workers are plain processes.
 */
export async function startChildren(script: string, processes: number, env: Record<string, string>, options: { node?: string; nodeArgs?: string[] } = {}): Promise<Workers & { children: ChildProcessHandle[] }> {
  const children = Array.from({ length: processes }, (_, i) => spawnProcess(script, [], { ...env, BENCH_WORKER_INDEX: String(i) }, ROOT, options));
  try {
    await Promise.all(children.map((child) => child.event('ready', 60_000)));
  } catch (error) {
    await Promise.all(children.map((child) => child.stop(1000)));
    throw error;
  }
  return {
    children,
    pids: () => children.flatMap((child) => processTree(child.child.pid!)),
    workerPids: () => children.map((child) => child.child.pid!),
    async stop() {
      await Promise.all(children.map((child) => child.stop(10_000)));
    },
  };
}

/**
 * Runs a one-off peer script (bench/workers/peer-admin.ts) to its end on another Node.js: the
 * peers that need Node 22 are installed and fed from there, not from this process.
 */
export async function runOnNode(node: string, script: string, args: string[], env: Record<string, string>): Promise<void> {
  const child = spawnProcess(script, args, env, ROOT, { node });
  const exit = await child.exited;
  if (exit.code !== 0) throw new Error(`${script} ${args.join(' ')} failed: ${child.describe()}`);
}
