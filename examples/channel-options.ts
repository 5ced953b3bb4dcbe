/** docs/channels.md, "What a model channel records": columns and exclude, when, truncate, soft deletes, delays. */
import assert from 'node:assert/strict';
import { DataTypes, QueryTypes } from 'sequelize';
import pgpubsub, { channel } from 'sequelize-pgpubsub';
import { migrate, sequelize } from './app.js';

const Reminder = channel<{ invoice: number }>('invoice_reminder');
sequelize.use(pgpubsub, { channels: [Reminder] });

const Account = sequelize.define('Account', {
  id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
  email: DataTypes.TEXT,
  passwordHash: { type: DataTypes.TEXT, field: 'password_hash' },
  status: { type: DataTypes.TEXT, defaultValue: 'pending' },
}, {
  tableName: 'accounts',
  paranoid: true, // destroy() sets deletedAt: a soft delete
  pgpubsub: {
    channels: {
      // Only when the email or status changed; only those columns (and the key) stored.
      account_contact: { events: ['update'], columns: ['email', 'status'], when: { changed: ['email', 'status'] } },
      // A condition on the row before (old) and after (new); the password hash never stored.
      account_paid: { events: ['update'], exclude: ['passwordHash'], when: { sql: "new.status = 'paid' AND old.status <> 'paid'" } },
      // destroy() and restore() of a paranoid model, told apart from updates (op SOFT_DELETE, RESTORE).
      account_trash: { events: ['soft_delete', 'restore'] },
      // One notification per TRUNCATE, destroy({ truncate: true }) included (op TRUNCATE).
      accounts_wiped: { events: ['truncate'] },
      // Due a minute after the insert.
      account_welcome: { events: ['insert'], exclude: ['passwordHash'], delayMs: 60_000 },
    },
  },
});
await Account.sync();
await migrate();

const account = await Account.create({ email: 'ann@example.com', passwordHash: 'x' });
await account.update({ passwordHash: 'y' }); // neither email nor status: nothing on account_contact
await account.update({ status: 'paid' });
await account.destroy();
await account.restore();
await Account.destroy({ truncate: true, force: true });

// Due in an hour, or at a time.
await sequelize.pgpubsub.notify(Reminder, { invoice: 17 }, { delayMs: 3_600_000 });
await sequelize.pgpubsub.notify(Reminder, { invoice: 18 }, { runAt: new Date('2027-01-01T09:00:00Z') });

const rows = await sequelize.query<{ channel: string; op: string; keys: string | null; later: boolean }>(
  `SELECT channel, payload ->> 'op' AS op, CASE WHEN jsonb_typeof(payload -> 'new') = 'object'
          THEN (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(payload -> 'new') AS k) END AS keys,
          available_at > now() + interval '50 seconds' AS later
     FROM pgpubsub.notification ORDER BY id`,
  { type: QueryTypes.SELECT },
);
assert.deepEqual(rows.map((r) => [r.channel, r.op, r.keys, r.later]), [
  ['account_welcome', 'INSERT', 'createdAt,deletedAt,email,id,status,updatedAt', true],
  ['account_contact', 'UPDATE', 'email,id,status', false],
  ['account_paid', 'UPDATE', 'createdAt,deletedAt,email,id,status,updatedAt', false],
  ['account_trash', 'SOFT_DELETE', 'createdAt,deletedAt,email,id,password_hash,status,updatedAt', false],
  ['account_trash', 'RESTORE', 'createdAt,deletedAt,email,id,password_hash,status,updatedAt', false],
  ['accounts_wiped', 'TRUNCATE', null, false],
  ['invoice_reminder', 'NOTIFY', null, true],
  ['invoice_reminder', 'NOTIFY', null, true],
]);
await sequelize.close();
console.log('channel options example ok');
