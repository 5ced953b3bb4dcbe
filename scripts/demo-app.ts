/**
 * The app the demo's listeners load (`pgpubsub listen --app scripts/demo-app.ts`): the example app
 * of models/, whose author callback first waits DEMO_SLOW_MS, so that the sharing of the work
 * between processes is visible at a human pace.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Sequelize } from 'sequelize';
import { defineModels } from '../models/app';
import { registerCallbacks } from '../models/callbacks';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('demo app: DATABASE_URL is not set');
const app = defineModels(new Sequelize(url, { dialect: 'postgres', logging: false }));
const slowMs = Number(process.env.DEMO_SLOW_MS ?? 0);
// Callbacks run in registration order: this one first, then the app's own.
if (slowMs > 0) app.sequelize.pgpubsub.on(app.Author, 'author_created', () => sleep(slowMs).then(() => undefined));
registerCallbacks(app);

export const { sequelize } = app;
