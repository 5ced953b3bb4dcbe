import { sqlTextStep } from './sql-text-step';

/**
 * Library migration 3: the inbox, where a listener fed from NATS JetStream records each message it
 * ran (docs/scaling-out.md). Its SQL is 003_inbox.up.sql / .down.sql beside this file.
 *
 * @example
 * // migrations/00000000000003-pgpubsub-inbox.js (npx pgpubsub migration:generate writes it)
 * module.exports = require('sequelize-pgpubsub/migrations/inbox');
 */
export const inbox = sqlTextStep(3, '00000000000003-pgpubsub-inbox.js', '003_inbox');
export const { name, up, down, withOptions } = inbox;
