import { Client, type Notification } from 'pg';
import { QueryTypes, type Sequelize } from 'sequelize';
import { holdListening } from '../../lib/db/wake-locks';

export interface StoredNotification {
  id: string;
  channel: string;
  payload: any;
  db_version: string | null;
  created_at: Date;
  attempts: number;
  failed_at: Date | null;
}

/** Every stored notification, oldest first. */
export function storedNotifications(sequelize: Sequelize, channel?: string): Promise<StoredNotification[]> {
  return sequelize.query<StoredNotification>(
    `SELECT * FROM pgpubsub.notification ${channel ? 'WHERE channel = :channel' : ''} ORDER BY id`,
    { type: QueryTypes.SELECT, replacements: { channel } },
  );
}

/**
 * A raw LISTEN connection that records what arrives, to observe NOTIFYs from outside the app. It
 * also says it listens, as a listener does (producers skip their NOTIFY when nobody listens),
 * unless `asListener` is false.
 */
export async function listenTo(url: string, channels: string[], { asListener = true } = {}) {
  const client = new Client({ connectionString: url });
  await client.connect();
  const received: Notification[] = [];
  const waiters: Array<() => void> = [];
  client.on('notification', (message) => {
    received.push(message);
    waiters.splice(0).forEach((wake) => wake());
  });
  for (const channel of channels) await client.query(`LISTEN "${channel.replace(/"/g, '""')}"`);
  if (asListener) await holdListening(client, channels);
  return {
    received,
    /** Resolves once `count` notifications arrived; rejects after `timeoutMs`. */
    async waitFor(count: number, timeoutMs = 5000): Promise<Notification[]> {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`expected ${count} notification(s), got ${received.length} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => { clearTimeout(timer); resolve(); });
        });
      }
      return received.slice(0, count);
    },
    /** Waits a little and returns everything received so far (to assert that nothing more came). */
    async settle(ms = 300): Promise<Notification[]> {
      await client.query('SELECT 1');
      await new Promise((resolve) => setTimeout(resolve, ms));
      return received;
    },
    close: () => client.end(),
  };
}
