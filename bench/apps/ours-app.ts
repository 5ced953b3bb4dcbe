/**
 * The app `pgpubsub listen --app` loads in the benchmark: the example app's models (models/app.ts)
 * with one callback: each new author gets one post, written in the listener's transaction with
 * `sequelize.query` and the same INSERT the peers and the ceiling run, so that every system does
 * identical work. The post's content is the callback's start time on the monotonic clock (µs),
 * which W2 subtracts from the producer's commit time. BENCH_CALLBACK=query writes it with the callback's
 * `context.query` (the raw query path: node-postgres on the message's transaction, the match for
 * pg-boss's `executeSql` and the plain ceiling); BENCH_CALLBACK=model writes the post with
 * the `Post.create` of docs/callbacks-and-listeners.md instead (a diagnostic row of W1): what Sequelize's model layer costs
 * per message, which a Sequelize app pays whatever queue runs its jobs. BENCH_CALLBACK=batch
 * registers a batch callback instead (onBatch: one Post.bulkCreate per claim, W1's batch row), and
 * BENCH_IO_MS makes each message first await that long (W6: a stand-in for an HTTP call).
 * BENCH_SIDE_CHANNEL names a custom channel with a callback that does nothing (W8's paused channel);
 * BENCH_CLAIM_TIMES, a folder where each worker writes how long its claims took (W8).
 */
import './use-dist';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRequire } from 'node:module';
import type { Client } from 'pg';
import { QueryTypes, Sequelize } from 'sequelize';
import { defineModels } from '../../models/app';
import { channel } from '../../lib';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('bench app: DATABASE_URL is not set');

const poolMax = Number(process.env.BENCH_POOL_MAX || 5);
const app = defineModels(new Sequelize(url, { dialect: 'postgres', logging: false, pool: { max: poolMax } }));
const mode = process.env.BENCH_CALLBACK ?? 'sql';
const raw = mode !== 'model' && mode !== 'query';
const ioMs = Number(process.env.BENCH_IO_MS || 0);

if (mode === 'batch') {
  app.sequelize.pgpubsub.onBatch(app.Author, 'author_created', async (messages, { transaction }) => {
    const started = String(process.hrtime.bigint() / 1000n);
    await app.Post.bulkCreate(messages.map(({ new: author }) => ({ authorId: author!.id, content: started })), { transaction });
  });
} else app.sequelize.pgpubsub.on(app.Author, 'author_created', async ({ new: author }, { transaction, query }) => {
  if (ioMs) await sleep(ioMs);
  const started = String(process.hrtime.bigint() / 1000n);
  if (mode === 'query') {
    await query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', [started, author!.id]);
  } else if (raw) {
    await app.sequelize.query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', {
      bind: [started, author!.id], transaction, type: QueryTypes.INSERT,
    });
  } else {
    await app.Post.create({ authorId: author!.id, content: started }, { transaction });
  }
});

// W8: a second channel this listener handles (its paused shape pauses it), whose callbacks do nothing.
if (process.env.BENCH_SIDE_CHANNEL) {
  const side = channel<Record<string, unknown>>(process.env.BENCH_SIDE_CHANNEL);
  app.sequelize.pgpubsub.register(side);
  app.sequelize.pgpubsub.on(side, () => {});
}

// W8's claim p99: how long each claim took (the message that calls claim(), with the START
// TRANSACTION it carries, from the query's start to its rows), written to
// BENCH_CLAIM_TIMES/<pid>.json when the worker exits. Timed on node-postgres's client: the
// listener sends its claim there, not through Sequelize.
if (process.env.BENCH_CLAIM_TIMES) {
  const dir = process.env.BENCH_CLAIM_TIMES;
  const claims: number[] = [];
  // The library's node-postgres (the repo's), not bench/node_modules' (the peers').
  const { Client: LibraryClient } = createRequire(path.join(__dirname, '..', '..', 'package.json'))('pg') as { Client: typeof Client };
  const own = LibraryClient.prototype.query as (...args: unknown[]) => unknown;
  LibraryClient.prototype.query = function (this: Client, ...args: unknown[]) {
    const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: unknown } | null)?.text;
    const at = performance.now();
    const result = own.apply(this, args);
    if (typeof text === 'string' && /\.(?:"claim"|claim)\(/.test(text) && result instanceof Promise) {
      result.then(() => claims.push(performance.now() - at), () => undefined);
    }
    return result;
  } as typeof LibraryClient.prototype.query;
  process.on('exit', () => fs.writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify(claims)));
}

export const { sequelize } = app;
