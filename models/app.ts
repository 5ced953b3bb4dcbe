import {
  type CreationOptional,
  DataTypes,
  type ForeignKey,
  type InferAttributes,
  type InferCreationAttributes,
  Model,
  type Sequelize,
} from 'sequelize';
import PgPubSubPlugin from '../lib';
import { PostReads } from './channels';

/**
 * The example app's models: authors get a first post when created, posts announce their
 * deletion, media announce inserts and updates, and a parent/child pair shares a primary key.
 * They are defined on the Sequelize instance given (models/index.ts passes the configured one).
 */
export function defineModels(sequelize: Sequelize) {
  sequelize.use(PgPubSubPlugin, { channels: [PostReads] });

  class Media extends Model<InferAttributes<Media>, InferCreationAttributes<Media>> {
    declare key: string;
    declare name: string;
    declare contentType: string | null;
    declare size: string | null;
    declare storeId: string | null;
  }
  Media.init({
    key: { type: DataTypes.STRING, primaryKey: true },
    name: { type: DataTypes.STRING, allowNull: false },
    contentType: { type: DataTypes.STRING, allowNull: true },
    size: { type: DataTypes.BIGINT, allowNull: true },
    storeId: { type: DataTypes.STRING, allowNull: true },
  }, {
    sequelize,
    modelName: 'Media',
    tableName: 'media',
    underscored: true,
    timestamps: false,
    // One row's changes processed one at a time, in order, across every listener process.
    pgpubsub: { channels: { media_changed: { events: ['insert', 'update'], ordering: 'row' } } },
  });

  class Author extends Model<InferAttributes<Author>, InferCreationAttributes<Author>> {
    declare id: CreationOptional<number>;
    declare userId: number | null;
    declare name: string;
    declare age: number | null;
    declare active: CreationOptional<boolean>;
    declare profilePictureId: string | null;
    declare alternativeName: string | null;
  }
  Author.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    userId: { type: DataTypes.INTEGER, allowNull: true },
    name: { type: DataTypes.TEXT, allowNull: false },
    age: { type: DataTypes.INTEGER, allowNull: true },
    active: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
    profilePictureId: { type: DataTypes.STRING, allowNull: true, field: 'picture' },
    alternativeName: { type: DataTypes.TEXT, allowNull: true, field: 'other' },
  }, {
    sequelize,
    modelName: 'Author',
    tableName: 'authors',
    underscored: true,
    timestamps: false,
    pgpubsub: { channels: { author_created: { events: ['insert'] } } },
  });

  class Post extends Model<InferAttributes<Post>, InferCreationAttributes<Post>> {
    declare id: CreationOptional<number>;
    declare content: string;
    declare date: CreationOptional<Date>;
    declare authorId: ForeignKey<number> | null;
    declare rating: string | null;
  }
  Post.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    content: { type: DataTypes.TEXT, allowNull: false },
    date: { type: DataTypes.DATE, allowNull: false, defaultValue: DataTypes.NOW },
    authorId: { type: DataTypes.INTEGER, allowNull: true },
    rating: { type: DataTypes.DECIMAL(40, 20), allowNull: true },
  }, {
    sequelize,
    modelName: 'Post',
    tableName: 'posts',
    underscored: true,
    timestamps: false,
    pgpubsub: { channels: { post_deleted: { events: ['delete'] } } },
  });

  Author.hasMany(Post, { foreignKey: 'authorId', onDelete: 'SET NULL' });
  Post.belongsTo(Author, { foreignKey: 'authorId', onDelete: 'SET NULL' });
  Post.belongsToMany(Media, { through: 'post_media', foreignKey: 'postId', otherKey: 'mediaKey', timestamps: false });
  Media.belongsToMany(Post, { through: 'post_media', foreignKey: 'mediaKey', otherKey: 'postId', timestamps: false });

  /** Sequelize has no multi-table inheritance: the child's primary key is also its foreign key to the parent. */
  class Parent extends Model<InferAttributes<Parent>, InferCreationAttributes<Parent>> {
    declare id: CreationOptional<number>;
    declare name: string;
  }
  Parent.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    name: { type: DataTypes.TEXT, allowNull: false },
  }, { sequelize, modelName: 'Parent', tableName: 'parents', underscored: true, timestamps: false });

  class Child extends Model<InferAttributes<Child>, InferCreationAttributes<Child>> {
    declare parentId: number;
    declare nickname: string | null;
  }
  Child.init({
    parentId: { type: DataTypes.INTEGER, primaryKey: true, references: { model: 'parents', key: 'id' }, onDelete: 'CASCADE' },
    nickname: { type: DataTypes.TEXT, allowNull: true },
  }, {
    sequelize,
    modelName: 'Child',
    tableName: 'children',
    underscored: true,
    timestamps: false,
    pgpubsub: { channels: { child_changed: { events: ['insert', 'update'] } } },
  });
  Child.belongsTo(Parent, { foreignKey: 'parentId' });

  return { sequelize, Media, Author, Post, Parent, Child, PostReads };
}

export type App = ReturnType<typeof defineModels>;
