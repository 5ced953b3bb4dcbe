/**
 * The models the examples share, their migration, and `migrate()`, which prepares an empty
 * database for an example (the library's tables, the app's tables, the channel triggers).
 */
import { type CreationOptional, DataTypes, type InferAttributes, type InferCreationAttributes, Model, type QueryInterface, Sequelize } from 'sequelize';
import pgpubsub, { migrations } from 'sequelize-pgpubsub';
import { SequelizeStorage, Umzug } from 'umzug';

export const sequelize = new Sequelize(process.env.DATABASE_URL!, { logging: false }).use(pgpubsub);

export class Author extends Model<InferAttributes<Author>, InferCreationAttributes<Author>> {
  declare id: CreationOptional<number>;
  declare name: string;
  declare alternativeName: string | null;
}
Author.init({
  id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
  name: { type: DataTypes.TEXT, allowNull: false },
  alternativeName: { type: DataTypes.TEXT, field: 'other' },
}, {
  sequelize,
  tableName: 'authors',
  pgpubsub: { channels: { author_created: { events: ['insert'] } } },
});

export class Post extends Model<InferAttributes<Post>, InferCreationAttributes<Post>> {
  declare id: CreationOptional<number>;
  declare authorId: number;
  declare content: string;
}
Post.init({
  id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
  authorId: { type: DataTypes.INTEGER, allowNull: false },
  content: { type: DataTypes.TEXT, allowNull: false },
}, { sequelize, tableName: 'posts' });

/** The app's own migrations, in Umzug's form. */
export const appMigrations = [{
  name: '20260101000000-create-authors-and-posts',
  async up({ context: queryInterface }: { context: QueryInterface }) {
    const timestamps = { createdAt: { type: DataTypes.DATE, allowNull: false }, updatedAt: { type: DataTypes.DATE, allowNull: false } };
    await queryInterface.createTable('authors', {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      name: { type: DataTypes.TEXT, allowNull: false },
      other: { type: DataTypes.TEXT },
      ...timestamps,
    });
    await queryInterface.createTable('posts', {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      authorId: { type: DataTypes.INTEGER, allowNull: false },
      content: { type: DataTypes.TEXT, allowNull: false },
      ...timestamps,
    });
  },
  async down({ context: queryInterface }: { context: QueryInterface }) {
    await queryInterface.dropTable('posts');
    await queryInterface.dropTable('authors');
  },
}];

/** Migrates an empty database for an example, quietly (examples/umzug.ts shows the same with logging). */
export async function migrate(): Promise<void> {
  await new Umzug({
    migrations: [...migrations, ...appMigrations, sequelize.pgpubsub.triggers.migration()],
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize }),
    logger: undefined,
  }).up();
}
