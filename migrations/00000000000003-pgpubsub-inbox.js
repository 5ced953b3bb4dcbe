// The inbox of a listener fed from NATS JetStream (library migration 3). In your app: module.exports = require('sequelize-pgpubsub/migrations/inbox');
module.exports = require('../lib/db/migrations/inbox');
