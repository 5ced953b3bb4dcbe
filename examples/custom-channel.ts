/** docs/channels.md, "Custom channels and notify()": a broadcast custom channel and notify() in a transaction. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import pg from 'pg';
import pgpubsub from 'sequelize-pgpubsub';
import { migrate, Post, sequelize } from './app.js';

await migrate();
const post = await Post.create({ authorId: 1, content: 'Hello' });
// A broadcast travels in a NOTIFY on the channel's name: a plain LISTEN sees it.
const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
await client.query('LISTEN post_reads');
const received = once(client, 'notification') as Promise<[pg.Notification]>;
const transaction = await sequelize.transaction();

import { channel } from 'sequelize-pgpubsub';

export const PostReads = channel<{ modelId: number; modelType?: string }>('post_reads', {
  durable: false,                  // broadcast; durable (the default) stores it like a trigger channel
  defaults: { modelType: 'Post' },
});

sequelize.use(pgpubsub, { channels: [PostReads] });
await sequelize.pgpubsub.notify(PostReads, { modelId: post.id }, { transaction });

await transaction.commit(); // the NOTIFY is sent at commit
const [message] = await received;
assert.equal(message.channel, 'post_reads');
assert.deepEqual(JSON.parse(message.payload!), { op: 'NOTIFY', payload: { modelId: post.id, modelType: 'Post' }, context: {} });
const [stored] = await sequelize.query('SELECT count(*)::int AS count FROM pgpubsub.notification', { raw: true });
assert.deepEqual(stored, [{ count: 0 }], 'a broadcast is never stored');

await client.end();
await sequelize.close();
console.log('custom channel example ok');
