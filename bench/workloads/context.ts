import type { Results } from '../results';

/** What every workload gets from run.ts. */
export interface BenchContext {
  /** Superuser URL of the server's postgres database; each run creates and drops its own database. */
  serverUrl: string;
  quick: boolean;
  runs: number;
  results: Results;
  /** Progress lines on stderr, so that stdout carries only the table. */
  log(line: string): void;
}

export const formatError = (error: unknown) => ((error as Error)?.message ?? String(error)).split('\n')[0].slice(0, 300);
