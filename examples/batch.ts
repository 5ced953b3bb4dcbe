/** docs/callbacks-and-listeners.md, "Batch callbacks": onBatch() gets a claim's messages at once, for one bulkCreate. */
import assert from 'node:assert/strict';
import { Author, migrate, Post, sequelize } from './app.js';

await migrate();
const sizes: number[] = [];

sequelize.pgpubsub.onBatch(Author, 'author_created', async (messages, { transaction }) => {
  sizes.push(messages.length);
  await Post.bulkCreate(messages.map(({ new: author }) => ({ authorId: author!.id, content: 'Welcome!' })), { transaction });
});

await Author.bulkCreate(Array.from({ length: 120 }, (_, i) => ({ name: `author ${i}` })));
const listener = await sequelize.pgpubsub.listen({ batchSize: 100 });
for (const start = Date.now(); await Post.count() < 120;) {
  if (Date.now() - start > 10_000) throw new Error('timed out waiting for the welcome posts');
  await new Promise((resolve) => setTimeout(resolve, 25));
}
await listener.stop();
assert.equal(await Post.count(), 120, 'a post per author, each once');
assert.equal(Math.max(...sizes), 100, 'a whole claim at once');
await sequelize.close();
console.log('batch example ok');
