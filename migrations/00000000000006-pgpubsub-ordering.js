// The library's per-row ordering (version 6): ordering keys, the claim that takes one row per key. In your app: module.exports = require('sequelize-pgpubsub/migrations/ordering');
module.exports = require('../lib/db/migrations/ordering');
