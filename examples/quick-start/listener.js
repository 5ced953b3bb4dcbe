// A listener in your own process, instead of `pgpubsub listen`: runs until SIGTERM or SIGINT.
const { sequelize } = require('./callbacks');

sequelize.pgpubsub.listen({ batchSize: 100 }).then((listener) => {
  console.log('listening');
  const stop = () => listener.stop().finally(() => sequelize.close());
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
});
