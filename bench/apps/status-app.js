'use strict';
// The app `pgpubsub status` loads in the Status workload: plain JavaScript requiring the compiled
// library, as an app requiring the installed package does (a models index like the quick start's).
const { DataTypes, Model, Sequelize } = require('sequelize');
const pgpubsub = require('../../dist/index.js').default;

const sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false }).use(pgpubsub);

class Author extends Model {}
Author.init({ name: { type: DataTypes.TEXT, allowNull: false } }, {
  sequelize,
  tableName: 'authors',
  // author_renamed holds no rows in the workload: its counts must not scan the table.
  pgpubsub: { channels: { author_created: { events: ['insert'] }, author_renamed: { events: ['update'] } } },
});

module.exports = { sequelize, Author };
