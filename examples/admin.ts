/** docs/operations.md: the admin API, what `pgpubsub status` and `pgpubsub failed` print. */
import assert from 'node:assert/strict';
import pgpubsub, { channel } from 'sequelize-pgpubsub';
import { migrate, sequelize } from './app.js';

const Invoice = channel<{ number: number }>('invoice_send', { retry: { maxAttempts: 1 } });
sequelize.use(pgpubsub, { channels: [Invoice] });
await migrate();
let mailServerUp = false;
sequelize.pgpubsub.on(Invoice, ({ payload }) => {
  if (!mailServerUp) throw new Error(`mail server down, invoice ${payload.number} not sent`);
});
const listener = await sequelize.pgpubsub.listen();
await sequelize.pgpubsub.notify(Invoice, { number: 17 });
while (listener.stats.failed < 1) await new Promise((resolve) => setTimeout(resolve, 25));

const { admin } = sequelize.pgpubsub;
const { channels, listeners } = await admin.status();
const invoices = channels.find((c) => c.channel === 'invoice_send')!;
console.log(`${invoices.due} due, ${invoices.failed} failed, ${listeners.length} listener(s)`);

const [failed] = await admin.failed({ channel: 'invoice_send' });
console.log(failed.id, failed.attempts, failed.lastError);
// The mail server is back: due again, with fresh attempts; the running listener takes it at once.
mailServerUp = true;
await admin.retry({ ids: [failed.id] });
while (listener.stats.processed < 1) await new Promise((resolve) => setTimeout(resolve, 25));
// Failures older than a week, gone.
await admin.purge({ failedBefore: new Date(Date.now() - 7 * 86_400_000) });

assert.deepEqual([invoices.due, invoices.failed, listeners.length], [0, 1, 1]);
assert.match(failed.lastError!, /mail server down, invoice 17 not sent/);
assert.deepEqual(await admin.failed(), [], 'retried and processed');
await listener.stop();
await sequelize.close();
console.log('admin example ok');
