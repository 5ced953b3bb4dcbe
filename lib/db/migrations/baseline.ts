import { sqlTextStep } from './sql-text-step';

/**
 * Library migration 1, the baseline: every object of the library's first release, installed
 * directly in the library's schema. Its SQL is 001_baseline.up.sql / .down.sql beside this file.
 *
 * @example
 * // migrations/00000000000001-pgpubsub-baseline.js (npx pgpubsub migration:generate writes it)
 * module.exports = require('sequelize-pgpubsub/migrations/baseline');
 */
export const baseline = sqlTextStep(1, '00000000000001-pgpubsub-baseline.js', '001_baseline');
export const { name, up, down, withOptions } = baseline;
