// The library's listener reports (version 5): what each live listener says of itself (host, pid, recent lag). In your app: module.exports = require('sequelize-pgpubsub/migrations/listeners');
module.exports = require('../lib/db/migrations/listeners');
