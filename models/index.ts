import { Sequelize } from 'sequelize';
import { defineModels } from './app';
import { registerCallbacks } from './callbacks';

/**
 * The app's configured Sequelize and models; `.sequelizerc` points here, so the `pgpubsub`
 * CLI and the listener load the app from this module. The database is DATABASE_URL.
 */
const url = process.env.DATABASE_URL;
if (!url) {
  throw new Error('models: DATABASE_URL is not set. Set it to your PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/app');
}

export const app = defineModels(new Sequelize(url, { dialect: 'postgres', logging: false }));
export const { reads } = registerCallbacks(app);
export const { sequelize, Media, Author, Post, Parent, Child, PostReads } = app;
