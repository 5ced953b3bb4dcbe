// migrations/00000000000004-pgpubsub-operations.js
module.exports = require('sequelize-pgpubsub/migrations/operations');
