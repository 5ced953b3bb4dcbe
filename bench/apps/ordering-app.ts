/**
 * W7's app: one model, W7Item, whose channel is ordered by row when BENCH_ORDERED=1 (and not
 * otherwise); its callback appends (item, name) to w7_history in the listener's transaction, so
 * the order each row's changes were processed in can be read back.
 */
import './use-dist';
import { DataTypes, type Model, type ModelStatic, QueryTypes, Sequelize } from 'sequelize';
import pgpubsub from '../../lib';

export const W7_CHANNEL = 'w7_item_changed';
export const W7_HISTORY_SQL = 'CREATE TABLE w7_history (seq bigserial PRIMARY KEY, item integer NOT NULL, name text NOT NULL)';

export function w7App(url: string, ordered: boolean) {
  const sequelize = new Sequelize(url, { dialect: 'postgres', logging: false }).use(pgpubsub);
  const Item = sequelize.define('W7Item', { id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, name: DataTypes.TEXT }, {
    tableName: 'w7_items', timestamps: false,
    pgpubsub: { channels: { [W7_CHANNEL]: { events: ['insert', 'update'], ...(ordered ? { ordering: 'row' as const } : {}) } } },
  }) as ModelStatic<Model & { id: number; name: string }>;
  sequelize.pgpubsub.on(Item, W7_CHANNEL, async ({ new: item }, { transaction }) => {
    await sequelize.query('INSERT INTO w7_history (item, name) VALUES ($1, $2)', { bind: [item!.id, item!.name], transaction, type: QueryTypes.INSERT });
  });
  return { sequelize, Item };
}

const url = process.env.DATABASE_URL;
export const sequelize = url && process.env.BENCH_W7 ? w7App(url, process.env.BENCH_ORDERED === '1').sequelize : undefined;
