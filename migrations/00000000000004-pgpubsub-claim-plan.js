// The claim planned once per connection (library migration 4). In your app: module.exports = require('sequelize-pgpubsub/migrations/claim-plan');
module.exports = require('../lib/db/migrations/claim-plan');
