/**
 * docs/deployment.md, "Behind PgBouncer": the app's Sequelize (so the work pool) on DATABASE_URL,
 * which may be PgBouncer in transaction pooling mode; the LISTEN connection on DIRECT_DATABASE_URL,
 * the server itself (unset: Sequelize's own path). test/pgbouncer.test.ts runs it through a real PgBouncer.
 */
import assert from 'node:assert/strict';
import { Author, migrate, Post, sequelize } from './app.js';

await migrate();
sequelize.pgpubsub.on(Author, 'author_created', async ({ new: author }, { transaction }) => {
  await Post.create({ authorId: author!.id, content: 'Welcome!' }, { transaction });
});

// Sequelize (and the work pool) through PgBouncer; LISTEN to the server itself.
const listener = await sequelize.pgpubsub.listen({ listenConnection: process.env.DIRECT_DATABASE_URL });

await Author.bulkCreate(Array.from({ length: 100 }, (_, i) => ({ name: `author ${i}` })));
for (const start = Date.now(); (await Post.count()) < 100;) {
  if (Date.now() - start > 20_000) throw new Error('timed out waiting for a post per author');
  await new Promise((resolve) => setTimeout(resolve, 25));
}
await listener.stop();
assert.equal(await Post.count(), 100, 'each notification processed once');
await sequelize.close();
console.log('pgbouncer example ok');
