// The library's own schema (version 3): its objects in schema pgpubsub, least privilege. In your app: module.exports = require('sequelize-pgpubsub/migrations/schema');
module.exports = require('../lib/db/migrations/schema');
