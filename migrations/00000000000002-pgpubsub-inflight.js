// The library's in-flight markers and wake-up beat. In your app: module.exports = require('sequelize-pgpubsub/migrations/inflight');
module.exports = require('../lib/db/migrations/inflight');
