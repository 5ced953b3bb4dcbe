/**
 * What every system under test provides, so that one workload drives them all alike:
 * a database prepared for it, N worker processes ready for work, and a producer that makes
 * n messages (one per new author) visible in one commit. The side effect is always the same:
 * each message inserts one post for its author.
 */
export interface Workers {
  /** Pids of the process tree (primary and workers), for CPU and memory readings. */
  pids(): number[];
  /** Pids of the processes that do the work (the cluster workers for ours), for peak RSS. */
  workerPids(): number[];
  /** Called right after the messages became visible, as the clock starts (the ceiling's start signal). */
  go?(): void;
  /** Graceful stop; kills what does not exit in time. */
  stop(): Promise<void>;
  /** After stop(): how long each claim took, in ms (ours with claim timing on: W8's claim p99). */
  claimMs?(): number[];
}

export interface StartOptions {
  /** URL the workers connect with, when it differs from the checking URL (W4's counting proxy). */
  workerUrl?: string;
  /** Node.js options for the worker processes (bench/profile.ts: --cpu-prof, which NODE_OPTIONS cannot carry). */
  nodeArgs?: string[];
}

/** One paced commit of W2: its author, the monotonic time (µs) right after COMMIT returned, and ms since the first. */
export interface PacedCommit {
  id: number;
  committedAt: bigint;
  offsetMs: number;
}

export interface QueueSystem {
  /** Stable id used in the JSON and in --only style filters. */
  readonly key: string;
  /** Row label in the table. */
  readonly label: string;
  /** Turns a fresh, empty database into this system's: the app tables and the system's own schema. */
  prepare(url: string): Promise<void>;
  /** Starts `processes` worker processes and resolves once every one can receive work. */
  start(url: string, processes: number, options?: StartOptions): Promise<Workers>;
  /** Makes n messages, one per new author, visible in one commit; untimed. */
  produce(url: string, n: number): Promise<void>;
  /**
   * W2's producer, when a system's messages cannot come from a plain author insert (pg-boss: its
   * client's send() on the author's transaction): single-author commits paced at `perSecond` for
   * `durationMs`. Without it, W2 inserts authors itself.
   */
  producePaced?(url: string, durationMs: number, perSecond: number): Promise<PacedCommit[]>;
}
