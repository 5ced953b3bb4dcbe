'use strict';
// The example app's tables (see models/app.ts).

module.exports = {
  async up(queryInterface, Sequelize) {
    await queryInterface.sequelize.transaction(async (transaction) => {
      const options = { transaction };
      await queryInterface.createTable('media', {
        key: { type: Sequelize.STRING, primaryKey: true },
        name: { type: Sequelize.STRING, allowNull: false },
        content_type: { type: Sequelize.STRING },
        size: { type: Sequelize.BIGINT },
        store_id: { type: Sequelize.STRING },
      }, options);
      await queryInterface.createTable('authors', {
        id: { type: Sequelize.INTEGER, primaryKey: true, autoIncrement: true },
        user_id: { type: Sequelize.INTEGER },
        name: { type: Sequelize.TEXT, allowNull: false },
        age: { type: Sequelize.INTEGER },
        active: { type: Sequelize.BOOLEAN, allowNull: false, defaultValue: true },
        picture: { type: Sequelize.STRING },
        other: { type: Sequelize.TEXT },
      }, options);
      await queryInterface.createTable('posts', {
        id: { type: Sequelize.INTEGER, primaryKey: true, autoIncrement: true },
        content: { type: Sequelize.TEXT, allowNull: false },
        date: { type: Sequelize.DATE, allowNull: false, defaultValue: Sequelize.fn('now') },
        author_id: { type: Sequelize.INTEGER, references: { model: 'authors', key: 'id' }, onDelete: 'SET NULL' },
        rating: { type: Sequelize.DECIMAL(40, 20) },
      }, options);
      await queryInterface.createTable('post_media', {
        post_id: { type: Sequelize.INTEGER, primaryKey: true, references: { model: 'posts', key: 'id' }, onDelete: 'CASCADE' },
        media_key: { type: Sequelize.STRING, primaryKey: true, references: { model: 'media', key: 'key' }, onDelete: 'CASCADE' },
      }, options);
      await queryInterface.createTable('parents', {
        id: { type: Sequelize.INTEGER, primaryKey: true, autoIncrement: true },
        name: { type: Sequelize.TEXT, allowNull: false },
      }, options);
      await queryInterface.createTable('children', {
        parent_id: { type: Sequelize.INTEGER, primaryKey: true, references: { model: 'parents', key: 'id' }, onDelete: 'CASCADE' },
        nickname: { type: Sequelize.TEXT },
      }, options);
    });
  },

  async down(queryInterface) {
    await queryInterface.sequelize.transaction(async (transaction) => {
      for (const table of ['children', 'parents', 'post_media', 'posts', 'authors', 'media']) {
        await queryInterface.dropTable(table, { transaction });
      }
    });
  },
};
