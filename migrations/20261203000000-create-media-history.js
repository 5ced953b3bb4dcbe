'use strict';
// What the example app's ordered media_changed callback records: each change of a Media row, in
// the order it was processed (models/callbacks.ts), so anyone can check the order with SQL.

module.exports = {
  async up(queryInterface, Sequelize) {
    await queryInterface.createTable('media_history', {
      seq: { type: Sequelize.BIGINT, primaryKey: true, autoIncrement: true },
      media_key: { type: Sequelize.STRING, allowNull: false },
      op: { type: Sequelize.STRING, allowNull: false },
      name: { type: Sequelize.STRING },
    });
    await queryInterface.addIndex('media_history', ['media_key', 'seq']);
  },
  async down(queryInterface) {
    await queryInterface.dropTable('media_history');
  },
};
