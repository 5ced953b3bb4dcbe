// The library's operations objects (version 4): paused channels, failed notifications indexed. In your app: module.exports = require('sequelize-pgpubsub/migrations/operations');
module.exports = require('../lib/db/migrations/operations');
