/** docs/getting-started.md, "3. Migrate": a programmatic Umzug v3 with the library's migrations and the trigger step. */
import assert from 'node:assert/strict';
import { appMigrations, Author, sequelize } from './app.js';

import { SequelizeStorage, Umzug } from 'umzug';
import { migrations as pgpubsubMigrations } from 'sequelize-pgpubsub';

const umzug = new Umzug({
  migrations: [...pgpubsubMigrations, ...appMigrations, sequelize.pgpubsub.triggers.migration()],
  context: sequelize.getQueryInterface(),
  storage: new SequelizeStorage({ sequelize }),
  logger: console,
});
await umzug.up();

// The same names as the sequelize-cli stubs, then the app's, then the content-addressed trigger step.
const executed = (await umzug.executed()).map((migration) => migration.name);
assert.deepEqual(executed.slice(0, 5), ['00000000000001-pgpubsub-baseline.js', '00000000000002-pgpubsub-claim-by-due.js', '00000000000003-pgpubsub-inbox.js', '00000000000004-pgpubsub-claim-plan.js', '20260101000000-create-authors-and-posts']);
assert.equal(executed[5], sequelize.pgpubsub.triggers.migration().name);
assert.equal((await sequelize.pgpubsub.triggers.check()).ok, true, 'triggers installed');
assert.deepEqual((await umzug.pending()).map((migration) => migration.name), [], 'nothing pending: a second up() runs nothing');

// The trigger stores a notification for an insert.
await Author.create({ name: 'Ann' });
const [stored] = await sequelize.query('SELECT channel FROM pgpubsub.notification', { raw: true });
assert.deepEqual(stored, [{ channel: 'author_created' }]);

await umzug.down({ to: 0 });
const [[left]] = await sequelize.query("SELECT to_regnamespace('pgpubsub') AS schema, to_regclass('public.pgpubsub_notification') AS old", { raw: true });
assert.deepEqual(left, { schema: null, old: null }, "down removes the library's schema and tables");
await sequelize.close();
console.log('umzug example ok');
