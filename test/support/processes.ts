import { execFile } from 'node:child_process';
import path from 'node:path';
import { withClient } from './postgres';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'pgpubsub.js');
export const SEQUELIZE_CLI = path.join(ROOT, 'node_modules', '.bin', 'sequelize-cli');

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

/** Runs a program to completion; resolves with its exit code and output, never rejects on a non-zero exit. */
export function run(file: string, args: string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(file, args, {
      cwd: options.cwd ?? ROOT,
      // Shebangs (node_modules/.bin/*) need `node` on PATH.
      env: {
        ...process.env,
        PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
        ...(options.url ? { DATABASE_URL: options.url } : {}),
        ...options.env,
      },
      timeout: options.timeout ?? 30_000,
      maxBuffer: 16 * 1024 * 1024,
    }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(new Error(`${path.basename(file)} ${args.join(' ')} did not run: ${error.message}\n${stderr}`));
        return;
      }
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** `pgpubsub …` from this checkout. */
export const pgpubsubCli = (args: string[], options?: RunOptions) => run(process.execPath, [BIN, ...args], options);

/** A run's exit code and output, for assertion messages. */
export const shown = (result: Run) => `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;

/** One query on a short-lived connection. */
export async function sql<R extends object>(url: string, text: string): Promise<R[]> {
  return withClient(url, async (client) => (await client.query<R>(text)).rows);
}

/** The library's own tables and functions (from its migration), as opposed to channel triggers. */
import { LIBRARY_FUNCTIONS, LIBRARY_TABLES } from '../../lib/db-objects';
export { LIBRARY_FUNCTIONS, LIBRARY_TABLES };
/** SQL list for `NOT IN (…)`: the library's functions, which its trigger shares a name with. */
export const LIBRARY_NAMES_SQL = LIBRARY_FUNCTIONS.map((name) => `'${name}'`).join(', ');
