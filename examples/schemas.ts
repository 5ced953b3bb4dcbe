/**
 * docs/security.md, "Schemas": the library in a schema of the app's choosing, migrated by Umzug
 * into a migration table of the app's own, and a schema-per-tenant app (Model.schema()).
 */
import assert from 'node:assert/strict';
import { DataTypes, Model, Sequelize } from 'sequelize';

import pgpubsub, { libraryMigrations } from 'sequelize-pgpubsub';
import { SequelizeStorage, Umzug } from 'umzug';

const sequelize = new Sequelize(process.env.DATABASE_URL!, { logging: false })
  .use(pgpubsub, { schema: 'app_pubsub' });

const storage = { tableName: 'migrations' };
const umzug = new Umzug({
  migrations: libraryMigrations({ schema: 'app_pubsub', storage }),
  context: sequelize.getQueryInterface(),
  storage: new SequelizeStorage({ sequelize, ...storage }),
  logger: undefined,
});
await umzug.up();

class Order extends Model {
  declare id: number;
  declare total: number;
}
Order.init({
  id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
  total: { type: DataTypes.INTEGER, allowNull: false },
}, {
  sequelize,
  tableName: 'orders',
  timestamps: false,
  pgpubsub: { channels: { order_placed: { events: ['insert'] } } },
});

// One schema per tenant, each with its own orders table; the channel's triggers go into each.
const tenants = ['tenant_a', 'tenant_b'];
for (const tenant of tenants) {
  await sequelize.createSchema(tenant, {});
  await Order.schema(tenant).sync();
}
await sequelize.pgpubsub.triggers.sync({ schemas: tenants });

let placed!: (where: string) => void;
const done = new Promise<string>((resolve) => { placed = resolve; });
sequelize.pgpubsub.on(Order, 'order_placed', async ({ schema, new: order }, { transaction }) => {
  // The instance is of Order.schema(schema): saving it writes to that tenant's table.
  await order!.update({ total: order!.total + 1 }, { transaction });
  placed(`${schema}: ${order!.total}`);
});
const listener = await sequelize.pgpubsub.listen();
await Order.schema('tenant_b').create({ total: 41 });
assert.equal(await done, 'tenant_b: 42');
await listener.stop();

const [stored] = await sequelize.query('SELECT count(*)::int AS n FROM app_pubsub.notification', { raw: true });
assert.deepEqual(stored, [{ n: 0 }], "the notification was stored in the app's schema, and deleted once processed");
const totals = await Order.schema('tenant_b').findAll({ attributes: ['total'], raw: true });
assert.deepEqual(totals, [{ total: 42 }], "the callback's write went to the tenant's table");
assert.equal(await Order.schema('tenant_a').count(), 0);
await sequelize.close();
console.log('schemas example ok');
