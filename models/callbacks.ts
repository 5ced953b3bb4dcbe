import type { App } from './app';

/** Reads per day and post, counted in memory by the broadcast PostReads callback of this process. */
export type ReadCounter = Map<string, Record<number, number>>;

export const WELCOME = 'Welcome! This is your first post';

/**
 * The example app's callbacks. Every author gets a first post (its content from the notification
 * context's `content`, if set), written in the listener's transaction so it commits exactly once
 * with the notification's deletion.
 */
export function registerCallbacks(app: App, options: { reads?: ReadCounter } = {}) {
  const reads = options.reads ?? new Map();
  const { sequelize, Author, Post, Media, Child, PostReads } = app;

  sequelize.pgpubsub.on(Author, 'author_created', async ({ new: author, context }, { transaction }) => {
    const content = typeof context.content === 'string' ? context.content : WELCOME;
    await Post.create({ authorId: author!.id, content }, { transaction });
  });

  sequelize.pgpubsub.on(PostReads, ({ payload }) => {
    const day = (payload.date ?? new Date()).toISOString().slice(0, 10);
    const counts = reads.get(day) ?? {};
    counts[payload.modelId] = (counts[payload.modelId] ?? 0) + 1;
    reads.set(day, counts);
  });

  // Ordered by row: each Media row's changes land in media_history in the order they were made.
  sequelize.pgpubsub.on(Media, 'media_changed', async ({ op, new: media }, { transaction }) => {
    await sequelize.query('INSERT INTO media_history (media_key, op, name) VALUES ($1, $2, $3)', { bind: [media!.key, op, media!.name], transaction });
  });

  // The remaining channels need a callback to be claimed; these only log what they saw.
  sequelize.pgpubsub.on(Post, 'post_deleted', () => undefined);
  sequelize.pgpubsub.on(Child, 'child_changed', () => undefined);

  return { reads };
}
