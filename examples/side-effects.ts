/** docs/callbacks-and-listeners.md, "Side effects": afterCommit() for what must happen only once the work committed, NonRetryableError for a failure a retry cannot mend. */
import assert from 'node:assert/strict';
import pgpubsub, { channel, NonRetryableError } from 'sequelize-pgpubsub';
import { migrate, sequelize } from './app.js';

const WelcomeEmail = channel<{ to: string | null }>('welcome_email', { retry: { maxAttempts: 5 } });
sequelize.use(pgpubsub, { channels: [WelcomeEmail] });
await migrate();
const outbox: string[] = [];
const sendEmail = async (to: string) => { outbox.push(to); };

sequelize.pgpubsub.on(WelcomeEmail, async ({ payload }, { afterCommit }) => {
  if (!payload.to) throw new NonRetryableError('no address to send the welcome e-mail to');
  // Runs once this notification's transaction has committed, never for work that rolled back.
  afterCommit(() => sendEmail(payload.to!));
});

const listener = await sequelize.pgpubsub.listen();
await sequelize.pgpubsub.notify(WelcomeEmail, { to: 'ann@example.com' });
await sequelize.pgpubsub.notify(WelcomeEmail, { to: null });
for (const start = Date.now(); outbox.length < 1 || listener.stats.failed < 1;) {
  if (Date.now() - start > 10_000) throw new Error('timed out waiting for the e-mail and the failure');
  await new Promise((resolve) => setTimeout(resolve, 25));
}
await listener.stop();

assert.deepEqual(outbox, ['ann@example.com']);
const [failed] = await sequelize.query('SELECT attempts, failed_at IS NOT NULL AS failed FROM pgpubsub.notification', { raw: true });
assert.deepEqual(failed, [{ attempts: 1, failed: true }], 'failed for good at the first attempt, though 4 were left');
await sequelize.close();
console.log('side effects example ok');
