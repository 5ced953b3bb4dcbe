// migrations/00000000000002-pgpubsub-inflight.js
module.exports = require('sequelize-pgpubsub/migrations/inflight').withOptions({ schema: 'app_pubsub' });
