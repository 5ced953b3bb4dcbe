/** docs/callbacks-and-listeners.md, "Raw queries": context.query(), SQL on the message's own transaction without Sequelize's query pipeline. */
import assert from 'node:assert/strict';
import { Author, migrate, sequelize } from './app.js';

await migrate();
await sequelize.query('CREATE TABLE welcome_log (id serial PRIMARY KEY, author_id integer NOT NULL, line text NOT NULL)');

sequelize.pgpubsub.on(Author, 'author_created', async ({ new: author }, { query }) => {
  // $1, $2 placeholders and node-postgres's result; it commits (or rolls back) with the message.
  const { rows } = await query<{ id: number }>(
    'INSERT INTO welcome_log (author_id, line) VALUES ($1, $2) RETURNING id',
    [author!.id, `Welcome, ${author!.name}!`],
  );
  console.log(`welcome ${rows[0].id} logged`);
});

const listener = await sequelize.pgpubsub.listen();
await Author.create({ name: 'Ann' });
for (const start = Date.now(); listener.stats.processed < 1;) {
  if (Date.now() - start > 10_000) throw new Error('timed out waiting for the callback');
  await new Promise((resolve) => setTimeout(resolve, 25));
}
await listener.stop();

const [logged] = await sequelize.query('SELECT line FROM welcome_log', { raw: true });
assert.deepEqual(logged, [{ line: 'Welcome, Ann!' }]);
await sequelize.close();
console.log('raw query example ok');
