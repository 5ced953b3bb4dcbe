// migrations/00000000000004-pgpubsub-claim-plan.js
module.exports = require('sequelize-pgpubsub/migrations/claim-plan').withOptions({ schema: 'app_pubsub' });
