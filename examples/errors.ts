/** docs/errors.md: telling one of the library's errors from the others by its code. */
import { PgPubSubError } from 'sequelize-pgpubsub';
// … your app's sequelize, and a payload
import assert from 'node:assert/strict';
import { sequelize } from './app.js';
const payload = { modelId: 1 };
let handled = false;

try {
  await sequelize.pgpubsub.notify('post_reads', payload);
} catch (error) {
  if (!(error instanceof PgPubSubError) || error.code !== 'PGPUBSUB_UNKNOWN_CHANNEL') throw error;
  // … the channel is not registered in this app
  handled = true;
}

assert.equal(handled, true, 'notify() on a channel this app does not register fails with PGPUBSUB_UNKNOWN_CHANNEL');
await sequelize.close();
console.log('errors example ok');
