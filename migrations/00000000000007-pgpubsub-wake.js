// The library's cheaper wake-up when nobody listens (version 7). In your app: module.exports = require('sequelize-pgpubsub/migrations/wake');
module.exports = require('../lib/db/migrations/wake');
