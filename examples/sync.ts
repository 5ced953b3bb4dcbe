/** docs/getting-started.md, "Apps that use sync()": install() after sequelize.sync(), at every boot. */
import assert from 'node:assert/strict';
import { migrations as libraryMigrations } from 'sequelize-pgpubsub';
import { Author, sequelize } from './app.js';

for (let boot = 1; boot <= 2; boot++) {
  await sequelize.sync();
  const { migrations, triggers } = await sequelize.pgpubsub.install();
  assert.equal(migrations.length, boot === 1 ? libraryMigrations.length : 0, 'the library migrations are applied at the first boot only');
  assert.equal(triggers.installed.length, boot === 1 ? 1 : 0, "the author channel's trigger is installed at the first boot only");
}
await Author.create({ name: 'Ann' });
const [stored] = await sequelize.query('SELECT channel FROM pgpubsub.notification', { raw: true });
assert.deepEqual(stored, [{ channel: 'author_created' }]);
await sequelize.close();
console.log('sync example ok');
