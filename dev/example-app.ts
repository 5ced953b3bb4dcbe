/**
 * The example app (models/) as the tests, the bench and the demo open it: a Sequelize instance on
 * a given database, and its sequelize-cli migrations run through a programmatic Umzug.
 */
import path from 'node:path';
import { Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import { type App, defineModels } from '../models/app';
import { ROOT } from './processes';

export const MIGRATIONS_DIR = path.join(ROOT, 'migrations');

/** A Sequelize instance on `url`; quiet unless PGPUBSUB_SQL_LOG is set. */
export function connect(url: string, options: ConstructorParameters<typeof Sequelize>[1] = {}): Sequelize {
  return new Sequelize(url, { dialect: 'postgres', logging: process.env.PGPUBSUB_SQL_LOG ? console.log : false, ...options });
}

/** The example app bound to a fresh Sequelize instance on `url`. Close with `app.sequelize.close()`. */
export function openApp(url: string, options?: ConstructorParameters<typeof Sequelize>[1]): App {
  return defineModels(connect(url, options));
}

/**
 * The repo's sequelize-cli migrations (migrations/*.js) run through a programmatic Umzug v3,
 * recording into SequelizeMeta exactly as sequelize-cli does.
 */
export function appMigrator(sequelize: Sequelize): Umzug<ReturnType<Sequelize['getQueryInterface']>> {
  return new Umzug({
    migrations: {
      glob: ['*.js', { cwd: MIGRATIONS_DIR }],
      resolve: ({ name, path: file, context }) => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const migration = require(file!) as { up: Function; down: Function };
        return { name, up: () => migration.up(context, Sequelize), down: () => migration.down(context, Sequelize) };
      },
    },
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize }),
    logger: undefined,
  });
}

/** Runs every migration of the example app on `url`: the library's tables, the app tables, the triggers. */
export async function migrateApp(url: string): Promise<void> {
  const sequelize = connect(url);
  try {
    await appMigrator(sequelize).up();
  } finally {
    await sequelize.close();
  }
}
