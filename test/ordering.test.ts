/**
 * Per-row ordering (`ordering: 'row'`): one row's notifications processed one at a time, in id
 * order, across several real processes, other rows' in parallel; a failing notification blocks
 * only its key, which goes on after it fails for good (`afterFailure: 'continue'`) or waits for
 * its retry or purge (`'block'`); and a claim's cost, in buffers, grows neither with the backlog
 * nor with the number of blocked keys.
 */
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Client } from 'pg';
import { DataTypes, QueryTypes, type Sequelize } from 'sequelize';
import pgpubsub, { ChannelDefinitionError } from '../lib';
import { connect } from '../dev/example-app';
import { eventually } from '../dev/eventually';
import { type ListenProcess, pgpubsubCli, shown, startListen } from '../dev/processes';
import { HISTORY_SQL, orderingApp } from './fixtures/ordering-app';
import { type TestDatabase, libraryDatabase } from './support/hooks';

const APP = path.join(__dirname, 'fixtures', 'ordering-app.ts');
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe('per-row ordering', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  const open: Sequelize[] = [];
  const running: ListenProcess[] = [];

  async function app(options: Parameters<typeof orderingApp>[1] = {}) {
    const made = orderingApp(db.url, options);
    open.push(made.sequelize);
    await made.Item.sync();
    await made.sequelize.query(HISTORY_SQL);
    await made.sequelize.pgpubsub.triggers.sync();
    return made;
  }
  const rows = <R extends object>(sequelize: Sequelize, sql: string) => sequelize.query<R>(sql, { type: QueryTypes.SELECT });

  beforeEach(async function () {
    db = await libraryDatabase(this.currentTest?.title.slice(0, 20) ?? 'ordering');
  });
  afterEach(async function () {
    for (const process of running.splice(0)) {
      process.kill('SIGKILL');
      await process.exited;
    }
    await Promise.all(open.splice(0).map((s) => s.close()));
    if (this.currentTest?.state === 'passed') await db.drop();
  });

  it("processes each row's notifications in id order, one at a time, across three processes, other rows in parallel", async () => {
    const { sequelize, Item } = await app();
    const listener = startListen(db.url, ['--processes', '3', '--batch-size', '20', '--app', APP]);
    running.push(listener);
    await eventually(() => listener.listeningWorkers().length === 3, 'three workers', 60_000);
    const items = await Item.bulkCreate(Array.from({ length: 60 }, (_, i) => ({ name: `item ${i} v0` })));
    for (let version = 1; version <= 5; version++) {
      await Promise.all(items.map((item) => sequelize.transaction((transaction) => item.update({ name: `item ${item.id - items[0].id} v${version}` }, { transaction }))));
    }
    await eventually(async () => (await rows<{ n: number }>(sequelize, 'SELECT count(*)::int AS n FROM item_history'))[0].n === 360, 'every change processed', 90_000);
    const history = await rows<{ item: number; op: string; name: string; pid: number }>(sequelize, 'SELECT item, op, name, pid FROM item_history ORDER BY seq');
    for (const item of items) {
      const mine = history.filter((h) => h.item === item.id);
      const index = item.id - items[0].id;
      expect(mine.map((h) => `${h.op} ${h.name}`), `item ${item.id}`).to.deep.equal([
        `INSERT item ${index} v0`, ...[1, 2, 3, 4, 5].map((v) => `UPDATE item ${index} v${v}`),
      ]);
    }
    // Several processes shared the work.
    expect(new Set(history.map((h) => h.pid)).size).to.be.greaterThan(1);
    expect(await rows(sequelize, 'SELECT count(*)::int AS n FROM pgpubsub.notification')).to.deep.equal([{ n: 0 }]);
    listener.kill('SIGTERM');
    expect((await listener.exited).code).to.equal(0);
  });

  for (const afterFailure of ['continue', 'block'] as const) {
    it(`blocks only the failing row's key, which ${afterFailure === 'continue' ? 'goes on once it fails for good' : 'waits until it is retried'} (afterFailure: '${afterFailure}')`, async () => {
      const { sequelize, Item } = await app({ afterFailure, maxAttempts: 2 });
      const seen: string[] = [];
      let broken = true;
      sequelize.pgpubsub.on(Item, 'item_changed', ({ op, new: row, old }) => {
        const name = (row ?? old)!.get('name') as string;
        if (broken && name === 'a v1') throw new Error('a v1 cannot be processed yet');
        seen.push(`${op} ${name}`);
      });
      const listener = await sequelize.pgpubsub.listen({ logger: quiet });
      try {
        const a = await Item.create({ name: 'a v0' });
        const b = await Item.create({ name: 'b v0' });
        await a.update({ name: 'a v1' });
        await a.update({ name: 'a v2' });
        await b.update({ name: 'b v1' });
        await eventually(() => seen.includes('UPDATE b v1'), "b's key goes on");
        // a v1 is retried, then fails for good; a v2 waits behind it meanwhile.
        await eventually(async () => (await sequelize.pgpubsub.admin.failed()).length === 1, 'a v1 failed for good');
        if (afterFailure === 'continue') {
          await eventually(() => seen.includes('UPDATE a v2'), 'a v2 after a v1 failed for good');
          expect(seen.filter((s) => s.startsWith('UPDATE a') || s.startsWith('INSERT a'))).to.deep.equal(['INSERT a v0', 'UPDATE a v2']);
        } else {
          await new Promise((resolve) => setTimeout(resolve, 1000));
          expect(seen).to.not.include('UPDATE a v2');
          // Blocked, and shown as such: a v2 waits (not due, which would look like a stuck listener).
          const { admin } = sequelize.pgpubsub;
          const [failed] = await admin.failed();
          expect((await admin.status()).channels.find((c) => c.channel === 'item_changed')).to.include({ due: 0, waiting: 1, failed: 1, blocked: 1 });
          const [blocked] = await admin.blocked();
          expect(blocked).to.include({ channel: 'item_changed', key: `[${a.id}]`, headId: failed.id, waiting: 1 });
          expect(blocked.lastError).to.contain('a v1 cannot be processed yet');
          const cli = await pgpubsubCli(['failed', 'blocked', '--app', APP], { url: db.url });
          expect(cli.code, shown(cli)).to.equal(0);
          expect(cli.stdout).to.match(new RegExp(`^item_changed\\s+\\[${a.id}\\]\\s+${failed.id}\\s+1\\s`, 'm')).and.to.contain("'pgpubsub failed retry <id>' runs it again");
          const page = await new Promise<string>((resolve) => {
            const dashboard = sequelize.pgpubsub.dashboard({ refreshSeconds: 0 });
            const server = http.createServer(dashboard).listen(0, '127.0.0.1', () => {
              void fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`).then((r) => r.text()).then((text) => { dashboard.close(); server.close(); resolve(text); });
            });
          });
          expect(page).to.contain('<h2>Blocked keys</h2>').and.to.contain(`<code>[${a.id}]</code>`);
          broken = false;
          await sequelize.pgpubsub.admin.retry({ ids: [failed.id] });
          await eventually(() => seen.includes('UPDATE a v2'), 'a v2 after a v1 is retried and processed');
          expect(seen.filter((s) => s.includes(' a '))).to.deep.equal(['INSERT a v0', 'UPDATE a v1', 'UPDATE a v2']);
        }
      } finally {
        await listener.stop();
      }
    });
  }

  it("folds a row's pending updates into one message with coalesce: true, the first old and the last new, and deletes them all", async () => {
    const sequelize = connect(db.url).use(pgpubsub);
    open.push(sequelize);
    const Doc = sequelize.define('Doc', { id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, title: DataTypes.TEXT }, {
      tableName: 'docs', timestamps: false,
      pgpubsub: { channels: { doc_folded: { events: ['insert', 'update', 'delete'], ordering: 'row', coalesce: true } } },
    });
    await Doc.sync();
    await sequelize.pgpubsub.triggers.sync();
    const seen: Array<[string, unknown, unknown, number]> = [];
    sequelize.pgpubsub.on(Doc, 'doc_folded', ({ op, old, new: row, folded }) => { seen.push([op, old?.get('title') ?? null, row?.get('title') ?? null, folded]); });
    const a = await Doc.create({ title: 'a0' });
    const b = await Doc.create({ title: 'b0' });
    for (const v of [1, 2, 3]) await a.update({ title: `a${v}` });
    await b.update({ title: 'b1' });
    await a.destroy();
    await b.update({ title: 'b2' });
    await b.update({ title: 'b3' });
    const listener = await sequelize.pgpubsub.listen({ logger: quiet });
    try {
      await eventually(async () => (await rows<{ n: number }>(sequelize, 'SELECT count(*)::int AS n FROM pgpubsub.notification'))[0].n === 0,
        async () => `everything processed: seen ${JSON.stringify(seen)}, stored ${JSON.stringify(await rows(sequelize, "SELECT id, ordering_key, head, attempts, last_error, payload->>'op' AS op FROM pgpubsub.notification ORDER BY id"))}`);
      // a: insert, its three updates as one, the delete (a fold stops at another op); b: insert, three updates as one.
      expect(seen).to.deep.equal([
        ['INSERT', null, 'a0', 1], ['INSERT', null, 'b0', 1], ['UPDATE', 'a0', 'a3', 3], ['UPDATE', 'b0', 'b3', 3], ['DELETE', 'a3', null, 1],
      ]);
      // Nine notifications, five messages.
      expect(listener.stats.processed).to.equal(9);
    } finally {
      await listener.stop();
    }
    expect(() => { sequelize.define('Bad', { id: { type: DataTypes.INTEGER, primaryKey: true } }, { pgpubsub: { channels: { bad_fold: { events: ['update'], coalesce: true } } } }); sequelize.pgpubsub.channels(); })
      .to.throw(ChannelDefinitionError, "'coalesce' folds a row's pending updates, which needs ordering: 'row'");
  });

  // A fold deletes the updates it folded, a purge a failed head: rows no listener has in flight. A
  // listener marking a later row as waiting, from a snapshot that still holds the removed row,
  // while the remover's trigger ran before that later row was committed, left the key with no
  // head: the row was never claimed. (examples/ordering.ts hung on it about one run in eight.)
  for (const remover of ['fold', 'purge'] as const) {
    it(`never strands a key whose earlier rows a ${remover} removes while another listener marks the rows behind them`, async () => {
      const { sequelize, Item } = await app({ afterFailure: 'block' });
      const item = await Item.create({ name: 'v0' });
      const ids = async () => (await rows<{ id: string }>(sequelize, 'SELECT id::text AS id FROM pgpubsub.notification ORDER BY id')).map((row) => row.id);
      const removed: string[] = [];
      if (remover === 'fold') {
        // The insert in flight with a listener, the update folded into it (locked by that listener's claim).
        await item.update({ name: 'v1' });
        removed.push(...await ids());
        await sequelize.query('UPDATE pgpubsub.notification SET head = (id = $1::bigint)', { bind: [removed[0]] });
        await sequelize.query('INSERT INTO pgpubsub.inflight (holder, ids) VALUES (4242, ARRAY[$1::bigint])', { bind: [removed[0]] });
      } else {
        // The insert failed for good, holding its key (afterFailure: 'block') until purged.
        removed.push(...await ids());
        await sequelize.query("UPDATE pgpubsub.notification SET head = true, attempts = 5, failed_at = now() - interval '1 day'");
      }
      const client = new Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query('BEGIN');
        await client.query('DELETE FROM pgpubsub.notification WHERE id = ANY ($1::bigint[])', [removed]);
        // Committed after the remover's trigger looked for the key's next row.
        await item.update({ name: 'v2' });
        await sequelize.query("SELECT pgpubsub.settle_heads('{item_changed}')");
        await client.query('COMMIT');
      } finally {
        await client.end();
      }
      await sequelize.query('DELETE FROM pgpubsub.inflight');
      const seen: string[] = [];
      sequelize.pgpubsub.on(Item, 'item_changed', ({ op, new: row }) => { seen.push(`${op} ${row?.get('name')}`); });
      const listener = await sequelize.pgpubsub.listen({ logger: quiet });
      try {
        await eventually(() => seen.length === 1, async () => `the update processed: stored ${JSON.stringify(await rows(sequelize, 'SELECT id, ordering_key, head FROM pgpubsub.notification'))}`, 10_000);
        expect(seen).to.deep.equal(['UPDATE v2']);
      } finally {
        await listener.stop();
      }
    });
  }

  it('claims at a cost that grows neither with the backlog nor with the number of blocked keys', async () => {
    const { sequelize } = await app({ afterFailure: 'block' });
    const claimBuffers = async () => {
      const transaction = await sequelize.transaction();
      try {
        const claim = "SELECT * FROM pgpubsub.claim('{item_changed}', NULL, 100, 0, NULL, NULL, NULL)";
        // The first call also plans, which reads the catalog: not counted.
        await sequelize.query(claim, { transaction });
        const rows = await sequelize.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, number> }> }>(
          `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${claim}`, { transaction, type: QueryTypes.SELECT },
        );
        const plan = rows[0]['QUERY PLAN'][0].Plan;
        return { rows: plan['Actual Rows'], buffers: plan['Shared Hit Blocks'] + plan['Shared Read Blocks'] };
      } finally {
        await transaction.rollback();
      }
    };
    // Blocked keys: each has a failed head (afterFailure 'block') and 20 notifications behind it, known to wait.
    const block = async (keys: number, from: number) => {
      await sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, ordering_key, head, failed_at)
        SELECT 'item_changed', '{}'::jsonb, 'b:[' || k || ']', true, now() FROM generate_series(${from}, ${from + keys - 1}) AS k`);
      await sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, ordering_key, head)
        SELECT 'item_changed', '{}'::jsonb, 'b:[' || k || ']', false FROM generate_series(${from}, ${from + keys - 1}) AS k, generate_series(1, 20)`);
    };
    // 100 claimable heads of keys of their own, after the blocked rows in id order.
    const heads = async (from: number) => sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, ordering_key, head)
      SELECT 'item_changed', '{}'::jsonb, 'c:[' || k || ']', true FROM generate_series(${from}, ${from + 99}) AS k`);
    await block(100, 1);
    await heads(1_000_000);
    const small = await claimBuffers();
    // Then 5,000 more blocked keys (105,000 rows) ahead, in id order, of the next 100 heads.
    await sequelize.query("DELETE FROM pgpubsub.notification WHERE ordering_key LIKE 'c:%'");
    await block(5000, 1000);
    await heads(2_000_000);
    const large = await claimBuffers();
    expect(small.rows).to.equal(100);
    expect(large.rows).to.equal(100);
    // None of the 105,000 rows of blocked keys is read.
    expect(large.buffers, `${small.buffers} buffers with 100 blocked keys, ${large.buffers} with 5,100`).to.be.below(small.buffers + 50);
  });
});
