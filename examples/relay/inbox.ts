/**
 * docs/scaling-out.md: an inbox runs the app's callbacks on the messages a relay put into NATS
 * JetStream, exactly once, in a transaction that records each message's id. Here the relay and the
 * inbox share one database and one process; usually the inbox is another service with its own.
 * Needs NATS_URL: a nats-server with JetStream on.
 */
import { startInbox, startRelay } from 'sequelize-pgpubsub';
import { Author, Post, migrate, sequelize } from '../app.js';

await migrate();
const relay = await startRelay(sequelize.pgpubsub, { nats: { servers: process.env.NATS_URL! }, channels: ['author_created'] });

sequelize.pgpubsub.on(Author, 'author_created', async ({ new: author }, { transaction }) => {
  await Post.create({ authorId: author!.id, content: `Welcome, ${author!.name}!` }, { transaction });
});
const inbox = await startInbox(sequelize.pgpubsub, { nats: { servers: process.env.NATS_URL! } });

await Author.create({ name: 'Ursula' });
while ((await Post.count()) === 0) await new Promise((resolve) => setTimeout(resolve, 50));
console.log((await Post.findOne())!.content);

await inbox.stop();
await relay.stop();
await sequelize.close();
console.log('inbox example ok');
