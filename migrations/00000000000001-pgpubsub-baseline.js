// The library's objects (the baseline library migration). In your app: module.exports = require('sequelize-pgpubsub/migrations/baseline');
module.exports = require('../lib/db/migrations/baseline');
