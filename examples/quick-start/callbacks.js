// The models plus their callbacks: what `npx pgpubsub listen --app callbacks.js` runs.
const { sequelize, Author } = require('./models');

sequelize.pgpubsub.on(Author, 'author_created', async ({ new: author }) => {
  console.log(`welcome, ${author.name}`);
});

module.exports = { sequelize, Author };
