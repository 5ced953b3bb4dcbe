/**
 * docs/scaling-out.md: a relay moves the stored notifications into NATS JetStream, where a consumer
 * of yours reads them (here, one message). Needs NATS_URL: a nats-server with JetStream on.
 */
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { startRelay } from 'sequelize-pgpubsub';
import { Author, migrate, sequelize } from '../app.js';

await migrate();
const relay = await startRelay(sequelize.pgpubsub, {
  nats: { servers: process.env.NATS_URL! },
  channels: ['author_created'],
});
await Author.create({ name: 'Ursula' });

// A consumer anywhere: the subject is pgpubsub.<channel>, the body the stored notification.
const nc = await connect({ servers: process.env.NATS_URL! });
const consumer = await jetstream(nc).consumers.get('PGPUBSUB');
const message = await consumer.next({ expires: 10_000 });
const { op, new: author } = message!.json<{ op: string; new: { name: string } }>();
console.log(`${message!.subject} ${message!.headers?.get('Nats-Msg-Id')}: ${op} ${author.name}`);

await nc.close();
await relay.stop();
await sequelize.close();
console.log('relay example ok');
