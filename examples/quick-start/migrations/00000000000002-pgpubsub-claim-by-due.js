// migrations/00000000000002-pgpubsub-claim-by-due.js
module.exports = require('sequelize-pgpubsub/migrations/claim-by-due');
