// The library's notification table. In your app: module.exports = require('sequelize-pgpubsub/migrations/notification-table');
module.exports = require('../lib/db/migrations/notification-table');
