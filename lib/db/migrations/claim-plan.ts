import { sqlTextStep } from './sql-text-step';

/**
 * Library migration 4: the claim's statements planned once per connection, not at every call (a
 * listener woken for one message waits for its claim). Its SQL is 004_claim_plan.up.sql /
 * .down.sql beside this file.
 *
 * @example
 * // migrations/00000000000004-pgpubsub-claim-plan.js (npx pgpubsub migration:generate writes it)
 * module.exports = require('sequelize-pgpubsub/migrations/claim-plan');
 */
export const claimPlan = sqlTextStep(4, '00000000000004-pgpubsub-claim-plan.js', '004_claim_plan');
export const { name, up, down, withOptions } = claimPlan;
