import type { Client } from 'pg';
import type { Sequelize } from 'sequelize';
import { LibraryVersionError } from '../errors';
import { firstLibraryMigration, installedLibraryVersion, librarySchemas } from './catalog';
import { LIBRARY_STEPS, libraryVersionProblem } from './migrations/index';
import { LIBRARY_VERSION } from './objects';

/**
 * Why `who` (e.g. 'listen') cannot run on the library's objects in `schema`: missing (naming the
 * schemas that do hold a library), at an older version, newer than this code, or installed by a
 * pre-release commit (before the migrations were squashed into the baseline); null when they fit.
 */
export async function libraryProblem(via: Client | Sequelize, schema: string, who: string): Promise<Error | null> {
  const found = await installedLibraryVersion(via, schema);
  if (found > LIBRARY_VERSION) {
    const first = await firstLibraryMigration(via, schema);
    if (first !== null && first !== LIBRARY_STEPS[0].name) {
      return new LibraryVersionError(found, LIBRARY_VERSION, `${who}: this database has the library's objects (schema ${schema}) as an unreleased `
        + `commit of sequelize-pgpubsub installed them (its first library migration is ${first}); the released library starts from one baseline `
        + `migration, ${LIBRARY_STEPS[0].name}. Reinstall: see the CHANGELOG's entry on the squash`);
    }
  }
  return libraryVersionProblem(found, who, schema, found === 0 ? await librarySchemas(via) : []);
}
