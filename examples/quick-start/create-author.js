// Inserts one author: its trigger stores a notification on 'author_created'.
const { sequelize, Author } = require('./models');

Author.create({ name: 'Ursula', alternativeName: 'UKL' })
  .then((author) => console.log(JSON.stringify({ id: author.id })))
  .finally(() => sequelize.close());
