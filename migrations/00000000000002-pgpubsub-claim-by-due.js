// The library's claim index (library migration 2). In your app: module.exports = require('sequelize-pgpubsub/migrations/claim-by-due');
module.exports = require('../lib/db/migrations/claim-by-due');
