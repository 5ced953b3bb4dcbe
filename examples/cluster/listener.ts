/**
 * docs/deployment.md, "Your own cluster script": runCluster() is `pgpubsub listen` as a
 * function, for a script of your own (here with the examples' app). node:cluster runs this same file in every worker.
 */
import cluster from 'node:cluster';
import { runCluster } from 'sequelize-pgpubsub';
import { Author, migrate, Post, sequelize } from '../app.js';

// The examples start from an empty database; your deploy runs the migrations.
if (cluster.isPrimary) await migrate();

sequelize.pgpubsub.on(Author, 'author_created', async ({ new: author }, { transaction }) => {
  await Post.create({ authorId: author!.id, content: 'Welcome!' }, { transaction });
});

process.exitCode = await runCluster(sequelize.pgpubsub, { processes: 2, batchSize: 50 });
