/** docs/channels.md, "Per-row ordering": one row's changes processed one at a time, in order, by any number of listeners. */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataTypes } from 'sequelize';
import { migrate, sequelize } from './app.js';

const Doc = sequelize.define('Doc', {
  id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
  title: DataTypes.TEXT,
}, {
  tableName: 'docs',
  timestamps: false,
  pgpubsub: {
    channels: {
      // A doc's changes run one at a time, in order; other docs' still run in parallel.
      doc_changed: { events: ['insert', 'update'], ordering: 'row' },
      // Keyed by another column, and a failure for good holds the key until retried or purged.
      doc_title_log: { events: ['update'], ordering: 'row', orderingKey: ['title'], afterFailure: 'block' },
      // A doc's pending updates folded into one message: the first old, the last new, and how many.
      doc_latest: { events: ['update'], ordering: 'row', coalesce: true },
    },
  },
});
await Doc.sync();
await migrate();

const seen = new Map<number, string[]>();
sequelize.pgpubsub.on(Doc, 'doc_changed', async ({ op, new: doc }) => {
  await sleep(Math.random() * 5);
  const id = doc!.get('id') as number;
  seen.set(id, [...(seen.get(id) ?? []), `${op} ${doc!.get('title')}`]);
});
sequelize.pgpubsub.on(Doc, 'doc_title_log', () => undefined);
let updates = 0;
sequelize.pgpubsub.on(Doc, 'doc_latest', ({ folded }) => { updates += folded; });
// Two listeners, each with two claim loops: four at once, yet each doc's changes in order.
const listeners = [await sequelize.pgpubsub.listen({ concurrency: 2, batchSize: 5 }), await sequelize.pgpubsub.listen({ concurrency: 2, batchSize: 5 })];

const docs = await Doc.bulkCreate(Array.from({ length: 10 }, (_, i) => ({ title: `doc ${i} v0` })));
for (let version = 1; version <= 4; version++) {
  await Promise.all(docs.map((doc, i) => doc.update({ title: `doc ${i} v${version}` })));
}
while ([...seen.values()].flat().length < 50 || updates < 40) await sleep(25);
docs.forEach((doc, i) => {
  assert.deepEqual(seen.get(doc.get('id') as number), [`INSERT doc ${i} v0`, ...[1, 2, 3, 4].map((v) => `UPDATE doc ${i} v${v}`)]);
});
assert.equal(updates, 40, 'every update once, folded or not');
for (const listener of listeners) await listener.stop();
await sequelize.close();
console.log('ordering example ok');
