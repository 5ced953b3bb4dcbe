/**
 * A callback's raw query path (`context.query(text, values)`, lib/listener/raw-query.ts): SQL on
 * the message's own transaction, committed with it and rolled back with it (to its savepoint when
 * the batch is redone one message at a time), safe with callbackConcurrency, refused once the
 * callback's time limit is up or its transaction ended; in batch callbacks too.
 */
import { expect } from 'chai';
import { Client } from 'pg';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { type CallbackContext, ChannelUsageError, type CustomMessage, CallbackTimeoutError, channel } from '../lib';
import { oneQueryAtATime } from '../lib/listener/query-guards';
import { exampleAppPerTest } from './support/example-app-per-test';

describe('raw queries in callbacks (context.query)', function () {
  this.timeout(30_000);
  const test = exampleAppPerTest();
  const { listen, count } = test;

  it("writes on the message's transaction: committed with the message, with node-postgres's result", async () => {
    const results: Array<{ rowCount: number | null; command: string; id: unknown }> = [];
    const types: unknown[] = [];
    test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', async ({ new: author }, { query }) => {
      if (types.length === 0) types.push((await query('SELECT 9007199254740993::bigint AS big, now() AS at')).rows[0]);
      const inserted = await query<{ id: number }>('INSERT INTO posts (content, author_id) VALUES ($1, $2) RETURNING id', [`welcome ${author!.name}`, author!.id]);
      results.push({ rowCount: inserted.rowCount, command: inserted.command, id: inserted.rows[0].id });
    });
    await test.app.sequelize.query("INSERT INTO authors (name) SELECT 'a' || i FROM generate_series(1, 50) AS i");
    await listen({ batchSize: 20 });
    await eventually(async () => (await count('pgpubsub.notification')) === 0, 'every notification processed');
    expect(await count('posts')).to.equal(50);
    expect(await count('(SELECT DISTINCT author_id FROM posts) AS p')).to.equal(50);
    expect(results.every((r) => r.rowCount === 1 && r.command === 'INSERT' && typeof r.id === 'number')).to.equal(true);
    // As docs/callbacks-and-listeners.md says: node-postgres's parsing, a bigint as its digits, a timestamptz as a Date.
    const [{ big, at }] = types as Array<{ big: unknown; at: unknown }>;
    expect(big).to.equal('9007199254740993');
    expect(at).to.be.instanceOf(Date);
  });

  it('runs the queries a callback starts at once one after another, as node-postgres asks: none is issued while another runs', async () => {
    // node-postgres deprecates a query issued while its client runs another (its warning comes once
    // per process, so the test looks at the client itself).
    const overlaps: string[] = [];
    const own = Client.prototype.query;
    Client.prototype.query = function (this: Client & { _activeQuery?: unknown; _queryQueue?: unknown[] }, ...args: unknown[]) {
      const text = typeof args[0] === 'string' ? args[0] : '';
      if (text.startsWith('INSERT INTO posts') && (this._activeQuery || this._queryQueue?.length)) overlaps.push(text);
      return (own as (...rest: unknown[]) => unknown).apply(this, args);
    } as typeof own;
    try {
      test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', async ({ new: author }, { query }) => {
        await Promise.all([1, 2, 3].map((k) => query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', [`post ${k}`, author!.id])));
      });
      await test.app.sequelize.query("INSERT INTO authors (name) SELECT 'c' || i FROM generate_series(1, 10) AS i");
      await listen();
      await eventually(async () => (await count('posts')) === 30, 'three posts per author');
    } finally {
      Client.prototype.query = own;
    }
    expect(overlaps).to.deep.equal([]);
  });

  for (const savepoints of ['on-failure', 'always'] as const) {
    it(`with savepoints '${savepoints}', rolls back the raw writes of the message whose callback throws, and keeps the others' once`, async () => {
      const Orders = channel<{ n: number }>('raw_orders', { retry: { maxAttempts: 1 } });
      test.app.sequelize.pgpubsub.on(Orders, async ({ payload }: CustomMessage<{ n: number }>, { query }: CallbackContext) => {
        await query('INSERT INTO authors (name) VALUES ($1)', [`order ${payload.n}`]);
        if (payload.n === 3) throw new Error('order 3 is bad');
      });
      for (let n = 1; n <= 5; n++) await test.app.sequelize.pgpubsub.notify(Orders, { n });
      await listen({ recover: true, savepoints });
      await eventually(async () => (await count("pgpubsub.notification WHERE channel = 'raw_orders' AND failed_at IS NULL")) === 0, 'the batch to settle');
      expect((await test.app.Author.findAll({ order: [['id', 'ASC']] })).map((a) => a.name)).to.deep.equal(['order 1', 'order 2', 'order 4', 'order 5']);
      expect(await count("pgpubsub.notification WHERE channel = 'raw_orders' AND failed_at IS NOT NULL")).to.equal(1);
    });
  }

  it('takes turns on the connection with callbackConcurrency: every query runs, none is refused or lost', async () => {
    const Jobs = channel<{ n: number }>('raw_jobs');
    test.app.sequelize.pgpubsub.on(Jobs, async ({ payload }: CustomMessage<{ n: number }>, { query }: CallbackContext) => {
      // Several at once from one callback too: they queue on the connection.
      await Promise.all([1, 2, 3].map((k) => query('INSERT INTO authors (name) VALUES ($1)', [`job ${payload.n}.${k}`])));
      await query('SELECT pg_sleep(0.001)');
    });
    for (let n = 1; n <= 120; n++) await test.app.sequelize.pgpubsub.notify(Jobs, { n });
    const listener = await listen({ recover: true, batchSize: 40, callbackConcurrency: 8 });
    await eventually(async () => (await count("pgpubsub.notification WHERE channel = 'raw_jobs'")) === 0, 'every job processed', 20_000);
    expect(await count('authors')).to.equal(360);
    expect(await count('(SELECT DISTINCT name FROM authors) AS a')).to.equal(360);
    expect(listener.stats.failed).to.equal(0);
  });

  it("refuses a query after the callback's time limit, and one after its transaction ended: nothing lands outside the message's transaction", async () => {
    const Slow = channel<{ n: number }>('raw_slow', { timeoutMs: 200, retry: { maxAttempts: 1 } });
    const refusals: unknown[] = [];
    let late: Promise<unknown> | null = null;
    test.app.sequelize.pgpubsub.on(Slow, async ({ payload }: CustomMessage<{ n: number }>, { query }: CallbackContext) => {
      if (payload.n === 1) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        await query("INSERT INTO authors (name) VALUES ('after the time limit')").catch((error: unknown) => { refusals.push(error); });
        return;
      }
      // Not awaited: it runs only once the callback has returned and the transaction committed.
      late = new Promise((resolve) => setTimeout(resolve, 300)).then(() => query("INSERT INTO authors (name) VALUES ('after the end')")).catch((error: unknown) => { refusals.push(error); });
    });
    await test.app.sequelize.pgpubsub.notify(Slow, { n: 1 });
    await test.app.sequelize.pgpubsub.notify(Slow, { n: 2 });
    await listen({ recover: true });
    await eventually(() => refusals.length === 2 && late !== null, 'both late queries refused', 10_000);
    const [timedOut, ended] = refusals[0] instanceof CallbackTimeoutError ? refusals : [...refusals].reverse();
    expect(timedOut).to.be.instanceOf(CallbackTimeoutError);
    expect(ended).to.be.instanceOf(ChannelUsageError);
    expect((ended as ChannelUsageError).code).to.equal('PGPUBSUB_QUERY_AFTER_END');
    expect(String(ended)).to.contain('await every query before the callback returns');
    expect(await count('authors')).to.equal(0);
    const [failed] = await test.app.sequelize.query<{ last_error: string }>("SELECT last_error FROM pgpubsub.notification WHERE channel = 'raw_slow'", { type: QueryTypes.SELECT });
    expect(failed.last_error).to.contain('did not settle within 200 ms');
  });

  it('gives batch callbacks the same query, on the batch transaction', async () => {
    test.app.sequelize.pgpubsub.onBatch(test.app.Author, 'author_created', async (messages, { query }) => {
      await query('INSERT INTO posts (content, author_id) SELECT $1, unnest($2::int[])', ['batch', messages.map(({ new: author }) => author!.id)]);
    });
    await test.app.sequelize.query("INSERT INTO authors (name) SELECT 'b' || i FROM generate_series(1, 30) AS i");
    await listen({ batchSize: 10 });
    await eventually(async () => (await count('posts')) === 30, 'a post per author');
    expect(await count('(SELECT DISTINCT author_id FROM posts) AS p')).to.equal(30);
  });
});

describe("a batch's shared connection (oneQueryAtATime) once the batch is over", () => {
  it('never sends a query still waiting for its turn when the shared use ends: it would run after the ROLLBACK, outside the transaction', async function () {
    this.timeout(5000);
    // The client as node-postgres is to it: callback-style queries, answered when the test says.
    const sent: string[] = [];
    const answers: Array<() => void> = [];
    const client = {
      query(text: string, ...rest: unknown[]) {
        sent.push(text);
        const callback = rest.at(-1) as (error: unknown, result?: unknown) => void;
        answers.push(() => callback(null, { rows: [] }));
      },
    };
    const restore = oneQueryAtATime(client as never);
    const slow = (client.query as unknown as (text: string) => Promise<unknown>)('SELECT pg_sleep(1)');
    const waiting = (client.query as unknown as (text: string) => Promise<unknown>)("INSERT INTO authors (name) VALUES ('late')");
    const refused = waiting.catch((error: unknown) => error);
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent, 'the first is sent, the second waits for it').to.deep.equal(['SELECT pg_sleep(1)']);
    // The batch is abandoned (its callbacks timed out): the listener puts the client back and rolls back.
    restore();
    client.query('ROLLBACK', () => undefined);
    answers.shift()!();
    const error = await refused;
    expect(sent).to.deep.equal(['SELECT pg_sleep(1)', 'ROLLBACK']);
    expect(error).to.be.instanceOf(ChannelUsageError);
    expect((error as ChannelUsageError).code).to.equal('PGPUBSUB_QUERY_AFTER_END');
    await slow;
  });
});
