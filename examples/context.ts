/** docs/channels.md, "Notification context": withContext() and setContext() in each scope. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { Author, migrate, sequelize } from './app.js';

await migrate();
const traceId = randomUUID();
const transaction = await sequelize.transaction();
const pgClient = new pg.Client({ connectionString: process.env.DATABASE_URL });
await pgClient.connect();

await sequelize.pgpubsub.withContext({ traceId }, (transaction) =>
  Author.create({ name: 'Ann' }, { transaction }));

await sequelize.pgpubsub.setContext({ tenant: 7 }, { transaction });                  // this transaction only
await sequelize.pgpubsub.setContext({ service: 'api' }, { scope: 'session', transaction }); // stays on that connection
await sequelize.pgpubsub.setContext({ source: 'import' }, { scope: 'session', connection: pgClient });

// Each setContext() replaces the context, so this write carries the last one set on its connection.
await Author.create({ name: 'Bea' }, { transaction });
await transaction.commit();
// Raw SQL on the pg connection carries its session context.
await pgClient.query(`INSERT INTO authors (name, "createdAt", "updatedAt") VALUES ('Raw', now(), now())`);

const [rows] = await sequelize.query(`SELECT payload->'new'->>'name' AS name, payload->'context' AS context FROM pgpubsub.notification ORDER BY id`, { raw: true });
assert.deepEqual(rows, [
  { name: 'Ann', context: { traceId } },
  { name: 'Bea', context: { service: 'api' } },
  { name: 'Raw', context: { source: 'import' } },
]);

await pgClient.end();
await sequelize.close();
console.log('context example ok');
