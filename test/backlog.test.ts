/**
 * A claim, the next-due timer and the heartbeat's due check cost the same whatever else the table
 * holds (decision 19): measured without timing, as what they read. Each backlog shape is built with
 * generate_series (BACKLOG rows), beside BATCH due rows of the channel the listener claims, and
 * each query is compared with itself on a table holding the due rows only:
 * - `EXPLAIN (ANALYZE, BUFFERS)` of pgpubsub.claim() and of the listener's next-due query: the
 *   buffers they touch (the claim's include the statements inside the function);
 * - the rows the listener's own claim path fetches (pg_stat_xact_user_tables), for a paused channel.
 * On the baseline's claim (one index in id order, every other condition tested on the row) each
 * shape read every backlog row ahead of the due ones: thousands of buffers, not tens.
 */
import { expect } from 'chai';
import { Client } from 'pg';
import { QueryTypes } from 'sequelize';
import { connect } from '../dev/example-app';
import { libraryObjects } from '../lib/db/objects';
import { dueCheck, nextDueSql } from '../lib/db/store';
import { claimStatement } from '../lib/db/claim';
import type { ClaimedRow } from '../lib/db/store';
import { PausedChannels } from '../lib/listener/paused';
import { install } from '../lib';
import { COUNT_CAP, countChannels } from '../lib/ops/channel-counts';
import { type TestDatabase, emptyDatabase } from './support/hooks';

const BACKLOG = 50_000;
const BATCH = 100;
const objects = libraryObjects();
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** Each shape: SQL that stores BACKLOG rows the claim of channel 'work' (context tenant a) cannot take now. */
const SHAPES: Record<string, string> = {
  'waiting for a retry': `INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, available_at)
    SELECT 'work', '{"op": "NOTIFY", "context": {"tenant": "a"}}', 1, 'Error: down', now() + interval '1 day' FROM generate_series(1, ${BACKLOG})`,
  'delayed an hour (runAt)': `INSERT INTO pgpubsub.notification (channel, payload, available_at)
    SELECT 'work', '{"op": "NOTIFY", "context": {"tenant": "a"}}', now() + interval '1 hour' FROM generate_series(1, ${BACKLOG})`,
  'on a paused channel': `INSERT INTO pgpubsub.notification (channel, payload)
    SELECT 'paused', '{"op": "NOTIFY", "context": {"tenant": "a"}}' FROM generate_series(1, ${BACKLOG})`,
  'on a channel the listener does not handle': `INSERT INTO pgpubsub.notification (channel, payload)
    SELECT 'elsewhere', '{"op": "NOTIFY", "context": {"tenant": "a"}}' FROM generate_series(1, ${BACKLOG})`,
  'failed for good': `INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at)
    SELECT 'work', '{"op": "NOTIFY", "context": {"tenant": "a"}}', 5, 'Error: no such mailbox', now() FROM generate_series(1, ${BACKLOG})`,
  // 1,000 keys, each blocked behind a failed head (afterFailure: 'block'), as settle_heads() leaves them.
  'ordered keys blocked behind a failed head': `
    INSERT INTO pgpubsub.notification (channel, payload, ordering_key, head, attempts, last_error, failed_at)
      SELECT 'work', '{"op": "NOTIFY", "context": {"tenant": "a"}}', 'b:' || k, true, 5, 'Error: poison', now() FROM generate_series(1, 1000) AS k;
    INSERT INTO pgpubsub.notification (channel, payload, ordering_key, head)
      SELECT 'work', '{"op": "NOTIFY", "context": {"tenant": "a"}}', 'b:' || (i % 1000 + 1), false FROM generate_series(1, ${BACKLOG - 1000}) AS i`,
};

/** A row's available_at as a resume point takes it: microseconds since the epoch. */
const US = "(extract(epoch FROM date_trunc('second', available_at))::bigint * 1000000 + extract(microseconds FROM available_at)::bigint % 1000000)::text";

const DUE = `INSERT INTO pgpubsub.notification (channel, payload) SELECT 'work', '{"op": "NOTIFY", "context": {"tenant": "a"}}' FROM generate_series(1, ${BATCH})`;

/** The shared buffers (hit + read) an EXPLAIN (ANALYZE, BUFFERS) reports for its top node. */
async function buffers(client: Client, query: string, values: unknown[] = []): Promise<number> {
  await client.query('BEGIN');
  try {
    await client.query(query, values); // warm: the function's plans, the catalog
    const { rows } = await client.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${query}`, values);
    const plan = rows[0]['QUERY PLAN'][0].Plan;
    return plan['Shared Hit Blocks'] + plan['Shared Read Blocks'];
  } finally {
    await client.query('ROLLBACK');
  }
}

describe('the cost of a claim whatever the table holds', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let client: Client;

  before(async () => {
    db = await emptyDatabase('backlog');
    const sequelize = connect(db.url);
    try {
      await install(sequelize).install();
    } finally {
      await sequelize.close();
    }
    client = new Client({ connectionString: db.url });
    await client.connect();
  });

  after(async () => {
    await client?.end();
    await db?.drop();
  });

  async function shaped(backlog: string | null): Promise<void> {
    await client.query('TRUNCATE pgpubsub.notification');
    if (backlog) await client.query(backlog);
    await client.query(DUE);
    await client.query('VACUUM ANALYZE pgpubsub.notification');
  }

  const claim = `SELECT * FROM pgpubsub.claim(ARRAY['work'], $1::jsonb, ${BATCH}, 1, 10000, NULL, NULL)`;
  /** The claim resumed at a point: after ($2, $3) first, then before it. */
  const resumed = `SELECT * FROM pgpubsub.claim(ARRAY['work'], $1::jsonb, ${BATCH}, 1, 10000, ARRAY[$2::bigint], ARRAY[$3::bigint])`;
  /** Where a claim loop that has taken every stored row of 'work' would resume. */
  const lastPoint = async () => (await client.query<{ at: string; id: string }>(
    `SELECT ${US} AS at, id::text FROM pgpubsub.notification WHERE channel = 'work' ORDER BY available_at DESC, id DESC LIMIT 1`,
  )).rows[0];
  const next = nextDueSql(objects, { channels: ['work'], context: { tenant: 'a' } });
  const due = dueCheck(objects, { channels: ['work', 'paused'], context: { tenant: 'a' } });
  let empty: { claim: number; next: number; due: number };

  before(async () => {
    await shaped(null);
    await client.query("INSERT INTO pgpubsub.paused (channel) VALUES ('paused')");
    empty = {
      claim: await buffers(client, claim, ['{"tenant": "a"}']),
      next: await buffers(client, next.text, next.values),
      due: await buffers(client, due.text, due.values),
    };
    // One buffer per row claimed and locked, a few for the index: nowhere near the backlog's size.
    expect(empty.claim).to.be.within(BATCH, 4 * BATCH);
  });

  for (const [shape, backlog] of Object.entries(SHAPES)) {
    it(`${BACKLOG} rows ${shape}: the claim, the next-due timer and the due check read what they read on a table without them`, async () => {
      await shaped(backlog);
      const costs = {
        claim: await buffers(client, claim, ['{"tenant": "a"}']),
        next: await buffers(client, next.text, next.values),
        due: await buffers(client, due.text, due.values),
      };
      // A few pages of slack (a deeper index), and for the claim one heap page per row claimed: the due
      // rows, written after the backlog, may land one per page in its free space. The baseline's
      // claim read the backlog's index entries and heap pages as well: over a thousand more.
      expect(costs.claim, `claim: ${JSON.stringify({ empty, costs })}`).to.be.at.most(empty.claim + BATCH + 10);
      expect(costs.next, `next due: ${JSON.stringify({ empty, costs })}`).to.be.at.most(empty.next + 10);
      expect(costs.due, `due check: ${JSON.stringify({ empty, costs })}`).to.be.at.most(empty.due + 10);
      // And the claim still takes exactly the due rows.
      await client.query('BEGIN');
      const { rows } = await client.query(claim, ['{"tenant": "a"}']);
      await client.query('ROLLBACK');
      expect(rows).to.have.length(BATCH);
    });
  }

  // The rows a resume point skips: a drain's own deleted rows while cleanup is held back, and rows a
  // context filter excludes. From the start of the range a claim reads them all, every time.
  const BEHIND: Record<string, { backlog: string; held?: boolean }> = {
    'deleted while a transaction elsewhere holds back cleanup': {
      backlog: `INSERT INTO pgpubsub.notification (channel, payload) SELECT 'work', '{"op": "NOTIFY", "context": {"tenant": "a"}}' FROM generate_series(1, ${BACKLOG})`,
      held: true,
    },
    'a context filter excludes': {
      backlog: `INSERT INTO pgpubsub.notification (channel, payload) SELECT 'work', '{"op": "NOTIFY", "context": {"tenant": "b"}}' FROM generate_series(1, ${BACKLOG})`,
    },
  };
  for (const [shape, { backlog, held }] of Object.entries(BEHIND)) {
    it(`${BACKLOG} rows ${shape}, before the resume point: a resumed claim reads what a claim reads on a table without them`, async () => {
      await client.query('TRUNCATE pgpubsub.notification');
      const holder = new Client({ connectionString: db.url });
      await holder.connect();
      try {
        if (held) await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1');
        await client.query(backlog);
        const point = await lastPoint();
        // Claimed and deleted by the drain: dead, but kept (index entries included) while the snapshot above lives.
        if (held) await client.query("DELETE FROM pgpubsub.notification WHERE channel = 'work'");
        await client.query('VACUUM ANALYZE pgpubsub.notification');
        await client.query(DUE);
        const costs = {
          resumed: await buffers(client, resumed, ['{"tenant": "a"}', point.at, point.id]),
          fromStart: await buffers(client, claim, ['{"tenant": "a"}']),
        };
        const shown = JSON.stringify({ empty, costs });
        expect(costs.resumed, shown).to.be.at.most(empty.claim + BATCH + 10);
        // What the point saves: the rows before it, read by every claim from the start.
        expect(costs.fromStart, shown).to.be.at.least(empty.claim + 100);
        await client.query('BEGIN');
        const { rows } = await client.query<{ id: string }>(resumed, ['{"tenant": "a"}', point.at, point.id]);
        await client.query('ROLLBACK');
        expect(rows).to.have.length(BATCH);
      } finally {
        await holder.end();
      }
    });
  }

  it('a resumed claim that the rows after its point cannot fill takes the rows before it: nothing is left behind', async () => {
    await shaped(null);
    const { rows: due } = await client.query<{ id: string; at: Date }>(
      `SELECT id::text, ${US} AS at FROM pgpubsub.notification ORDER BY available_at, id`,
    );
    for (const point of [due[0], due[BATCH / 2], due[BATCH - 1]]) {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: string }>(resumed, ['{"tenant": "a"}', point.at, point.id]);
      await client.query('ROLLBACK');
      expect(rows.map((row) => row.id).sort(), `resumed at ${point.id}`).to.deep.equal(due.map((row) => row.id).sort());
    }
  });

  it("a paused channel's backlog does not change which rows another channel's claim reads (the listener's own claim path)", async () => {
    const sequelize = connect(db.url, { pool: { max: 1 } });
    try {
      const paused = new PausedChannels(objects, quiet, { channels: ['work', 'paused'] });
      paused.apply(['paused']);
      /** The notification rows one claim of the listener's fetches, and what it claimed. */
      const fetched = async () => {
        const transaction = await sequelize.transaction();
        try {
          const read = async () => (await sequelize.query<{ fetched: number }>(
            // This transaction's counts so far (and any of the session's not yet reported): take the difference.
            "SELECT (coalesce(idx_tup_fetch, 0) + seq_tup_read)::int AS fetched FROM pg_stat_xact_user_tables WHERE relid = 'pgpubsub.notification'::regclass",
            { transaction, type: QueryTypes.SELECT },
          ))[0].fetched;
          const before = await read();
          // The statement the listener sends (lib/listener/open-claim.ts adds only its START TRANSACTION).
          const rows = await sequelize.query<ClaimedRow>(claimStatement(objects, paused.claimable, BATCH, { holder: 0, timeoutMs: 10_000 }), { transaction, type: QueryTypes.SELECT });
          const stats = { fetched: await read() - before };
          return { claimed: rows.map((row) => row.channel), fetched: stats.fetched };
        } finally {
          await transaction.rollback();
        }
      };
      await shaped(null);
      const alone = await fetched();
      await client.query('TRUNCATE pgpubsub.notification');
      // The paused channel's rows first, so that an id-ordered walk would meet every one of them.
      await client.query(SHAPES['on a paused channel']);
      await client.query(DUE);
      await client.query('VACUUM ANALYZE pgpubsub.notification');
      const behind = await fetched();
      expect(behind.claimed).to.deep.equal(alone.claimed).and.to.have.length(BATCH);
      expect(new Set(behind.claimed)).to.deep.equal(new Set(['work']));
      expect(behind.fetched, JSON.stringify({ alone, behind })).to.be.at.most(alone.fetched + 5);
    } finally {
      await sequelize.close();
    }
  });
});

describe('the status at any size', function () {
  this.timeout(120_000);
  let db: TestDatabase;

  before(async () => {
    db = await emptyDatabase('status size');
  });

  after(async () => {
    await db?.drop();
  });

  it(`counts exactly up to ${COUNT_CAP} rows a count, and past that estimates from a sample of the table, saying so`, async () => {
    const sequelize = connect(db.url);
    try {
      const pubsub = install(sequelize);
      await pubsub.install();
      await sequelize.query(`
        INSERT INTO pgpubsub.notification (channel, payload) SELECT 'small', '{}' FROM generate_series(1, 5000);
        INSERT INTO pgpubsub.notification (channel, payload, attempts, available_at) SELECT 'small', '{}', 1, now() + interval '1 day' FROM generate_series(1, 3000);
        INSERT INTO pgpubsub.notification (channel, payload, attempts, failed_at, ordering_key, head)
          SELECT 'small', '{}', 5, now(), CASE WHEN i <= 10 THEN 'b:' || i END, CASE WHEN i <= 10 THEN true END FROM generate_series(1, 2000) AS i;
        INSERT INTO pgpubsub.notification (channel, payload) SELECT 'big', '{}' FROM generate_series(1, 60000);
        INSERT INTO pgpubsub.notification (channel, payload, attempts, failed_at) SELECT 'big', '{}', 5, now() FROM generate_series(1, 30000);`);
      await sequelize.query('VACUUM ANALYZE pgpubsub.notification');
      const { channels } = await pubsub.admin.status();
      const small = channels.find((c) => c.channel === 'small')!;
      expect(small).to.include({ due: 5000, waiting: 3000, failed: 2000, blocked: 10, estimated: false });
      const big = channels.find((c) => c.channel === 'big')!;
      expect(big.estimated).to.equal(true);
      // A sample of about 500 of the table's pages: well within a third here.
      expect(big.due).to.be.within(40_000, 80_000);
      expect(big.failed).to.be.within(COUNT_CAP + 1, 45_000);
      expect(big.waiting).to.equal(0);
    } finally {
      await sequelize.close();
    }
  });

  it("reads a few index pages for a channel that holds no rows, whatever the table holds (no scan of the table)", async () => {
    // 200,000 due rows of one other channel (the planner then takes any channel as matching them
    // all). The counts' query is run under EXPLAIN by a client that passes every other statement through.
    const client = new Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(`TRUNCATE pgpubsub.notification;
        INSERT INTO pgpubsub.notification (channel, payload) SELECT 'busy', '{}' FROM generate_series(1, 200000)`);
      await client.query('VACUUM ANALYZE pgpubsub.notification');
      const countsBuffers = async (names: string[]) => {
        let read: number | undefined;
        const explaining = Object.create(client, {
          query: {
            value: async (text: string, values?: unknown[]) => {
              if (!text.trimStart().startsWith('WITH RECURSIVE')) return client.query(text, values);
              const { rows } = await client.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, values);
              const plan = rows[0]['QUERY PLAN'][0].Plan;
              read = plan['Shared Hit Blocks'] + plan['Shared Read Blocks'];
              return client.query(text, values);
            },
          },
        }) as Client;
        const counts = await countChannels(explaining, objects, names);
        return { read: read!, counts };
      };
      const without = await countsBuffers([]);
      const withEmpty = await countsBuffers(['defined_but_empty', 'another_empty']);
      expect(withEmpty.counts.get('defined_but_empty')).to.include({ due: 0, waiting: 0, failed: 0, estimated: false });
      const { rows: [{ pages }] } = await client.query("SELECT relpages AS pages FROM pg_class WHERE oid = 'pgpubsub.notification'::regclass");
      expect(pages).to.be.above(1000);
      // A few index pages per count of each empty channel; a scan would read the table's pages.
      expect(withEmpty.read - without.read).to.be.below(60);
    } finally {
      await client.end();
    }
  });
});
