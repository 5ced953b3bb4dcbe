/**
 * The status read over one node-postgres connection, without the app: `pgpubsub status --url`.
 * Nothing here (nor anything it imports) loads Sequelize or the app's models, so the whole command
 * costs Node's start-up, node-postgres and the status's few queries. The channels it names are
 * those with an installed trigger storing into this library, with stored rows, or paused: a
 * channel only the app's code knows (a custom channel with nothing stored) is not named.
 */
import { Client } from 'pg';
import { errorSummary } from '../error-text';
import { installedObjects } from '../db/catalog';
import { libraryProblem } from '../db/library-check';
import { libraryObjects } from '../db/objects';
import { labelLibrary } from '../triggers/render';
import type { Status } from './admin-types';
import { readStatus } from './status';

/** What `pgpubsub status --url` asks for, once the library is found at this code's version. */
export interface DirectStatus {
  /** Reads the status now (as often as asked: `--watch`). */
  read(): Promise<Status>;
}

/**
 * Connects to `url`, checks the library in `schema` is there at this code's version, and runs
 * `work` with a status reader; resolves to the problem instead (the database unreachable, the
 * library missing or at another version). The connection is closed at the end either way.
 */
export async function withDirectStatus(url: string, schema: string, work: (status: DirectStatus) => Promise<void>): Promise<Error | null> {
  const client = new Client({ connectionString: url, application_name: 'pgpubsub status' });
  // A connection lost between reads (--watch) rejects the read in hand; never an unhandled 'error'.
  client.on('error', () => undefined);
  try {
    let problem: Error | null;
    try {
      await client.connect();
      problem = await libraryProblem(client, schema, 'status');
    } catch (error) {
      problem = new Error(`status: could not read the library's version from the database at --url: ${errorSummary(error)}`);
    }
    if (problem) return problem;
    const objects = libraryObjects(schema);
    const read = async () => {
      // The channels defined in the database: each installed trigger that stores into this library.
      const defined = new Set((await installedObjects(client))
        .flatMap(({ label }) => (label && labelLibrary(label) === schema ? [label.channel] : [])));
      return readStatus(client, objects, [...defined]);
    };
    await work({ read });
    return null;
  } finally {
    await client.end().catch(() => undefined);
  }
}
