// migrations/00000000000007-pgpubsub-wake.js
module.exports = require('sequelize-pgpubsub/migrations/wake');
