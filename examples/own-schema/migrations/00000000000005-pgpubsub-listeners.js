// migrations/00000000000005-pgpubsub-listeners.js
module.exports = require('sequelize-pgpubsub/migrations/listeners').withOptions({ schema: 'app_pubsub' });
