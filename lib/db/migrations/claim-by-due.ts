import { sqlTextStep } from './sql-text-step';

/**
 * Library migration 2: claims served by an index on (channel, available_at, id), so their cost does
 * not grow with rows they cannot take. Its SQL is 002_claim_by_due.up.sql / .down.sql beside this file.
 *
 * @example
 * // migrations/00000000000002-pgpubsub-claim-by-due.js (npx pgpubsub migration:generate writes it)
 * module.exports = require('sequelize-pgpubsub/migrations/claim-by-due');
 */
export const claimByDue = sqlTextStep(2, '00000000000002-pgpubsub-claim-by-due.js', '002_claim_by_due');
export const { name, up, down, withOptions } = claimByDue;
