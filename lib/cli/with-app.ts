/**
 * How the CLI's commands reach the user's app: the app named by --app / --cwd (or .sequelizerc),
 * loaded only by the commands that need it, and the check that the library is there at this
 * code's version before a command works on it.
 */
import type { Command } from 'commander';
import path from 'node:path';
import type { LoadedApp } from '../process/app-loader';
import { errorSummary } from '../error-text';

/** Exit codes: see lib/cli/main.ts. */
const CANNOT_CHECK = 2;

export interface GlobalOptions {
  app?: string;
  cwd?: string;
}

/**
 * The app named by --app / --cwd (or .sequelizerc in the current directory). The modules that load
 * the app (and Sequelize) are required here and in the commands that need them, not at start-up:
 * `--help`, `--version` and `status --url` load neither.
 */
export function appFor(command: Command): Promise<LoadedApp> {
  const options = command.optsWithGlobals<GlobalOptions>();
  const { loadApp } = require('../process/app-loader') as typeof import('../process/app-loader');
  return loadApp({ app: options.app, cwd: options.cwd ? path.resolve(options.cwd) : undefined });
}

export async function withApp<R>(command: Command, work: (app: LoadedApp) => Promise<R>): Promise<R> {
  const app = await appFor(command);
  try {
    return await work(app);
  } finally {
    await app.sequelize.close();
  }
}

/**
 * Runs `work` once the library is in the database at this code's version; otherwise says why
 * (unreachable, missing: which migrations to run; another version) on stderr, with exit 2.
 */
export async function withLibrary(command: Command, who: string, work: (app: LoadedApp) => Promise<void>): Promise<void> {
  await withApp(command, async (app) => {
    let problem: Error | null;
    try {
      problem = await app.pubsub.libraryProblem(who);
    } catch (error) {
      problem = new Error(`${who}: could not read the library's version from the database: ${errorSummary(error)}`);
    }
    if (problem) {
      process.stderr.write(`${problem.message}\n`);
      process.exitCode = CANNOT_CHECK;
      return;
    }
    await work(app);
  });
}
