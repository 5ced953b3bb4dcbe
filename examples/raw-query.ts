/** docs/callbacks-and-listeners.md, "Raw queries": context.query(), SQL on the message's own transaction without Sequelize's query pipeline. */
import assert from 'node:assert/strict';
import { Author, migrate, sequelize } from './app.js';

await migrate();

sequelize.pgpubsub.on(Author, 'author_created', async ({ new: author }, { query }) => {
  // $1, $2 placeholders and node-postgres's result; it commits (or rolls back) with the message.
  const { rows } = await query<{ id: number }>(
    'INSERT INTO posts (author_id, content) VALUES ($1, $2) RETURNING id',
    [author!.id, `Welcome, ${author!.name}!`],
  );
  console.log(`post ${rows[0].id} written`);
});

const listener = await sequelize.pgpubsub.listen();
await Author.create({ name: 'Ann' });
for (const start = Date.now(); listener.stats.processed < 1;) {
  if (Date.now() - start > 10_000) throw new Error('timed out waiting for the callback');
  await new Promise((resolve) => setTimeout(resolve, 25));
}
await listener.stop();

const [posts] = await sequelize.query('SELECT content FROM posts', { raw: true });
assert.deepEqual(posts, [{ content: 'Welcome, Ann!' }]);
await sequelize.close();
console.log('raw query example ok');
