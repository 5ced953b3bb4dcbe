// models/index.js
const { DataTypes, Model, Sequelize } = require('sequelize');
const pgpubsub = require('sequelize-pgpubsub').default;

const sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false }).use(pgpubsub);

class Author extends Model {}
Author.init({
  name: { type: DataTypes.TEXT, allowNull: false },
  alternativeName: { type: DataTypes.TEXT, field: 'other' },
}, {
  sequelize,
  tableName: 'authors',
  pgpubsub: {
    channels: {
      // Every inserted author is stored as a notification on 'author_created'.
      author_created: { events: ['insert'] },
    },
  },
});

module.exports = { sequelize, Author };
