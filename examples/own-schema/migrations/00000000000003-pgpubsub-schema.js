// migrations/00000000000003-pgpubsub-schema.js
module.exports = require('sequelize-pgpubsub/migrations/schema').withOptions({ schema: 'app_pubsub' });
