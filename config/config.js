// sequelize-cli configuration: every environment reads the database from DATABASE_URL.
const settings = { use_env_variable: 'DATABASE_URL', dialect: 'postgres', logging: false };

module.exports = { development: settings, test: settings, production: settings };
