/** Where install() keeps an instance's PgPubSub (a global symbol, so that two copies of the library agree). */
export const INSTALLED = Symbol.for('sequelize-pgpubsub.instance');

/** The PgPubSub that use(pgpubsub) gave this Sequelize instance, if any (never throws, unlike `sequelize.pgpubsub` before use()). */
export function installedOn<T>(sequelize: object): T | undefined {
  return (sequelize as Record<symbol, T | undefined>)[INSTALLED];
}
