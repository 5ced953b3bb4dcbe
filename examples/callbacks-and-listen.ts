/** docs/callbacks-and-listeners.md, "Callbacks": on() for a model channel and a custom one, listen(), stop(). */
import assert from 'node:assert/strict';
import pgpubsub, { channel } from 'sequelize-pgpubsub';
import { Author, migrate, Post, sequelize } from './app.js';

const PostReads = channel<{ modelId: number; modelType?: string }>('post_reads', { durable: false, defaults: { modelType: 'Post' } });
sequelize.use(pgpubsub, { channels: [PostReads] });
await migrate();
const reads = new Map<number, number>();
const countRead = (id: number) => { reads.set(id, (reads.get(id) ?? 0) + 1); };
const until = async (done: () => Promise<boolean> | boolean, what: string) => {
  for (const start = Date.now(); !(await done());) {
    if (Date.now() - start > 10_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
};

sequelize.pgpubsub.on(Author, 'author_created', async ({ op, old, new: author, context }, { transaction }) => {
  // author is an Author instance (columns mapped back to attributes).
  await Post.create({ authorId: author!.id, content: 'Welcome!' }, { transaction });
});

sequelize.pgpubsub.on(PostReads, ({ payload }) => countRead(payload.modelId));

const listener = await sequelize.pgpubsub.listen({ batchSize: 100 });
// … later
const slowest = new Map<string, number>();
listener.on('message:done', ({ channel, durationMs, ok }) => {
  if (ok) slowest.set(channel, Math.max(slowest.get(channel) ?? 0, durationMs));
});
listener.on('failed', ({ id, channel, error, failedForGood }) => console.error(`${channel} ${id}: ${String(error)}${failedForGood ? ' (failed for good)' : ''}`));
const authors = await Author.bulkCreate([{ name: 'Ann' }, { name: 'Bea' }, { name: 'Cy' }]);
await until(async () => await Post.count() === authors.length, 'a welcome post per author');
const posts = await Post.findAll({ order: [['authorId', 'ASC']] });
assert.deepEqual(posts.map((post) => [post.authorId, post.content]), authors.map((author) => [author.id, 'Welcome!']));
assert.equal(await Post.count(), authors.length, 'each notification processed once');
assert.ok(slowest.has('author_created'), 'message:done told each run and its duration');
const [left] = await sequelize.query('SELECT count(*)::int AS count FROM pgpubsub.notification', { raw: true });
assert.deepEqual(left, [{ count: 0 }], 'processed notifications are deleted');

await sequelize.pgpubsub.notify(PostReads, { modelId: posts[0].id });
await until(() => reads.get(posts[0].id) === 1, 'the broadcast callback');
await listener.stop();   // stops claiming, finishes the batch in hand, closes its connection

await sequelize.close();
console.log('callbacks and listen example ok');
