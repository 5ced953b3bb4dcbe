// migrations/00000000000003-pgpubsub-inbox.js
module.exports = require('sequelize-pgpubsub/migrations/inbox');
