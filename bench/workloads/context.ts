import type { Results, RunResult } from '../results';
import { createBenchDatabase, dropBenchDatabase } from '../support/db';

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

/** Runs one measurement on a database created for it (empty, or a copy of `template`) and dropped after; any error fails the run. */
export async function onFreshDatabase(ctx: BenchContext, label: string, work: (url: string) => Promise<RunResult>, template?: string): Promise<RunResult> {
  let db;
  try {
    db = await createBenchDatabase(ctx.serverUrl, label, template);
    return await work(db.url);
  } catch (error) {
    return { ok: false, values: {}, error: formatError(error) };
  } finally {
    if (db) await dropBenchDatabase(ctx.serverUrl, db).catch(() => undefined);
  }
}
