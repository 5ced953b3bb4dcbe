// migrations/00000000000001-pgpubsub-baseline.js
module.exports = require('sequelize-pgpubsub/migrations/baseline').withOptions({ schema: 'app_pubsub' });
