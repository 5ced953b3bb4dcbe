import type { Client } from 'pg';
import type { Sequelize } from 'sequelize';
import { installedLibraryVersion, librarySchemas } from './catalog';
import { libraryVersionProblem } from './migrations/index';

/**
 * Why `who` (e.g. 'listen') cannot run on the library's objects in `schema`: missing (naming the
 * schemas that do hold a library), at an older version, or newer than this code; null when they fit.
 */
export async function libraryProblem(via: Client | Sequelize, schema: string, who: string): Promise<Error | null> {
  const found = await installedLibraryVersion(via, schema);
  return libraryVersionProblem(found, who, schema, found === 0 ? await librarySchemas(via) : []);
}
