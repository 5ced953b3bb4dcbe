// migrations/00000000000001-pgpubsub-notification-table.js
module.exports = require('sequelize-pgpubsub/migrations/notification-table').withOptions({ schema: 'app_pubsub' });
