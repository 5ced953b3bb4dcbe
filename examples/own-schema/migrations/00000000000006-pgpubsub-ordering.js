// migrations/00000000000006-pgpubsub-ordering.js
module.exports = require('sequelize-pgpubsub/migrations/ordering').withOptions({ schema: 'app_pubsub' });
