/**
 * docs/callbacks-and-listeners.md, "Channel names and ops the compiler checks": a model that
 * declares its channels in a static `pgpubsub` gets its channel names checked in on()/onBatch(), and each callback's `op`
 * narrowed to the channel's events (with `old`/`new` narrowed by it); `Register` makes
 * listen({ channels }) check names too. The `@ts-expect-error` lines are the compile errors
 * (`npm run typecheck` fails if one of them compiles).
 */
import assert from 'node:assert/strict';
import { type CreationOptional, DataTypes, type InferAttributes, type InferCreationAttributes, Model } from 'sequelize';
import type { ModelPubSubOptions } from 'sequelize-pgpubsub';
import { migrate, sequelize } from './app.js';

class Invoice extends Model<InferAttributes<Invoice>, InferCreationAttributes<Invoice>> {
  declare id: CreationOptional<number>;
  declare total: number;

  // The channels, declared once: init() gets them below, the compiler reads them here.
  static readonly pgpubsub = {
    channels: {
      invoice_issued: { events: ['insert'] },
      invoice_changed: { events: ['update', 'delete'] },
    },
  } satisfies ModelPubSubOptions;
}
Invoice.init({
  id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
  total: { type: DataTypes.INTEGER, allowNull: false },
}, { sequelize, tableName: 'invoices', pgpubsub: Invoice.pgpubsub });

// listen({ channels }) takes only the registered names.
declare module 'sequelize-pgpubsub' {
  interface Register {
    models: typeof Invoice;
  }
}

const seen: string[] = [];
sequelize.pgpubsub.on(Invoice, 'invoice_issued', ({ op, new: invoice }) => {
  // op is 'INSERT' (the channel's only event), so new is an Invoice, never null.
  seen.push(`${op} ${invoice.total}`);
});
sequelize.pgpubsub.on(Invoice, 'invoice_changed', (message) => {
  if (message.op === 'DELETE') seen.push(`DELETE ${message.old.total}`); // a delete has no new row
  else seen.push(`${message.op} ${message.old.total} -> ${message.new.total}`);
});

// What does not compile (never called: each line would also fail when run).
async function compileErrors() {
  // @ts-expect-error: a misspelled channel is a compile error
  sequelize.pgpubsub.on(Invoice, 'invoice_isued', () => undefined);
  // @ts-expect-error: invoice_issued sends only INSERT, so a DELETE branch cannot be written
  sequelize.pgpubsub.on(Invoice, 'invoice_issued', ({ op }) => op === 'DELETE');
  // @ts-expect-error: on a channel that may send DELETE, new may be null
  sequelize.pgpubsub.on(Invoice, 'invoice_changed', ({ new: invoice }) => invoice.total);
  // @ts-expect-error: listen() takes only the registered channel names
  await sequelize.pgpubsub.listen({ channels: ['invoice_isued'] });
}
void compileErrors;

await Invoice.sync();
await migrate();
const listener = await sequelize.pgpubsub.listen({ channels: ['invoice_issued', 'invoice_changed'] });
const invoice = await Invoice.create({ total: 100 });
await invoice.update({ total: 120 });
await invoice.destroy();
for (let tries = 0; seen.length < 3 && tries < 200; tries++) await new Promise((resolve) => setTimeout(resolve, 25));
await listener.stop();
assert.deepEqual(seen, ['INSERT 100', 'UPDATE 100 -> 120', 'DELETE 120']);
await sequelize.close();
console.log('typed channels example ok');
