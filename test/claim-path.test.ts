/**
 * The batch's transaction opened by its claim (lib/listener/open-claim.ts): START TRANSACTION and
 * the claim travel in one message (a listener woken for one message waits one round trip, not two),
 * the claim's values are written in as literals (a context filter's quotes and backslashes
 * included), and READ COMMITTED whatever isolation level the app's Sequelize sets (the claim
 * needs it: side by side listeners under REPEATABLE READ failed their drains).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Client } from 'pg';
import { QueryTypes, Sequelize, Transaction } from 'sequelize';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { ROOT } from '../dev/processes';
import { type CustomMessage, channel, install } from '../lib';
import type { App } from '../models/app';
import { type TestDatabase, testDatabase } from './support/hooks';
import { exampleAppPerTest } from './support/example-app-per-test';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe("a batch's transaction opened by its claim", function () {
  this.timeout(30_000);
  const test = exampleAppPerTest();
  const { listen, count } = test;

  it('sends START TRANSACTION with the claim, in one message: never alone', async () => {
    const sent: string[] = [];
    const own = Client.prototype.query;
    Client.prototype.query = function (this: Client, ...args: unknown[]) {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | null)?.text ?? '';
      if (/^START TRANSACTION|claim"?\(/.test(text.trim())) sent.push(text.trim());
      return (own as (...rest: unknown[]) => unknown).apply(this, args);
    } as typeof own;
    try {
      test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', async ({ new: author }, { query }) => {
        await query('INSERT INTO posts (content, author_id) VALUES ($1, $2)', ['welcome', author!.id]);
      });
      await listen({ batchSize: 5 });
      await test.app.sequelize.query("INSERT INTO authors (name) SELECT 'a' || i FROM generate_series(1, 12) AS i");
      await eventually(async () => (await count('posts')) === 12, 'a post per author');
    } finally {
      Client.prototype.query = own;
    }
    const claims = sent.filter((text) => /claim"?\(/.test(text));
    expect(claims.length, sent.join('\n---\n')).to.be.at.least(3);
    expect(claims.every((text) => text.startsWith('START TRANSACTION;')), claims.join('\n---\n')).to.equal(true);
    expect(sent.filter((text) => text === 'START TRANSACTION;')).to.deep.equal([]);
  });

  it("claims by a context filter whose values hold quotes and backslashes: exactly its tenant's rows", async () => {
    const tenant = String.raw`o'brien \x\\ "q" $1 ;--`;
    const ran: string[] = [];
    test.app.sequelize.pgpubsub.on(test.app.Author, 'author_created', ({ new: author, context }) => {
      expect(context).to.deep.equal({ tenant });
      ran.push(author!.name!);
    });
    const create = (value: string, name: string) => test.app.sequelize.pgpubsub.withContext({ tenant: value }, (transaction) => test.app.Author.create({ name }, { transaction }));
    await create(tenant, 'stored, quoted');
    await create('plain', 'stored, plain');
    await listen({ contextFilter: { tenant }, recover: true });
    await create(tenant, 'live, quoted');
    await create('plain', 'live, plain');
    await eventually(async () => ran.length === 2, "the quoted tenant's two rows");
    expect(ran).to.have.members(['stored, quoted', 'live, quoted']);
    expect(await count("pgpubsub.notification WHERE payload -> 'context' ->> 'tenant' = 'plain'")).to.equal(2);
  });
});

describe("a batch's transaction in an app whose Sequelize sets REPEATABLE READ", function () {
  this.timeout(30_000);
  let db: TestDatabase;
  let app: App;

  before(async () => {
    db = await testDatabase('isolation level');
    app = openApp(db.url, { isolationLevel: Transaction.ISOLATION_LEVELS.REPEATABLE_READ });
  });

  after(async () => {
    await app?.sequelize.close();
    await db?.drop();
  });

  it('runs callbacks at READ COMMITTED, the level the claim needs; the app keeps its own elsewhere', async () => {
    const levels: string[] = [];
    app.sequelize.pgpubsub.on(app.Author, 'author_created', async (_message, { query }) => {
      levels.push((await query<{ level: string }>("SELECT current_setting('transaction_isolation') AS level")).rows[0].level);
    });
    const listener = await app.sequelize.pgpubsub.listen({ logger: quiet });
    try {
      await app.sequelize.query("INSERT INTO authors (name) SELECT 'a' || i FROM generate_series(1, 3) AS i");
      await eventually(async () => levels.length === 3, 'three callbacks');
    } finally {
      await listener.stop();
    }
    const outside = await app.sequelize.transaction(async (transaction) => (await app.sequelize.query<{ level: string }>(
      "SELECT current_setting('transaction_isolation') AS level", { transaction, plain: true, type: QueryTypes.SELECT }))!.level);
    expect(outside).to.equal('repeatable read');
    expect(levels).to.deep.equal(['read committed', 'read committed', 'read committed']);
  });
});

describe('listeners of an app whose Sequelize sets REPEATABLE READ, claiming side by side', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let app: App;

  before(async () => {
    db = await testDatabase('rr side by side');
    app = openApp(db.url, { isolationLevel: Transaction.ISOLATION_LEVELS.REPEATABLE_READ, pool: { max: 12 } });
  });

  after(async () => {
    await app?.sequelize.close();
    await db?.drop();
  });

  it('process every row once, with no claim refused for a row another listener took meanwhile', async () => {
    const seen = new Map<number, number>();
    app.sequelize.pgpubsub.on(app.Author, 'author_created', ({ new: author }) => {
      seen.set(author!.id!, (seen.get(author!.id!) ?? 0) + 1);
    });
    const troubles: string[] = [];
    const trouble = (message: string, fields?: { event?: string }) => { if (fields?.event !== 'no-callback') troubles.push(message); };
    const logger = { ...quiet, warn: trouble, error: trouble };
    const listeners = await Promise.all([1, 2, 3].map(() => app.sequelize.pgpubsub.listen({ logger, concurrency: 3, batchSize: 5 })));
    try {
      for (let round = 0; round < 10; round++) {
        await app.sequelize.query(`INSERT INTO authors (name) SELECT 'a' || i FROM generate_series(1, 200) AS i`);
      }
      await eventually(async () => seen.size === 2000, () => `2000 rows processed, not ${seen.size}`, 30_000);
      for (const listener of listeners) await listener.idle();
    } finally {
      await Promise.all(listeners.map((listener) => listener.stop()));
    }
    expect([...seen.values()].every((times) => times === 1), 'each row once').to.equal(true);
    expect(troubles).to.deep.equal([]);
  });
});

describe("an app whose Sequelize is another copy of it than the library's", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let dir: string;

  before(async () => {
    db = await testDatabase('other sequelize');
    // What a linked or workspace copy of the library meets: the app's sequelize and the library's are
    // two copies, each with its own classes (a node_modules of links, but for a copy of sequelize).
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-other-sequelize-'));
    const modules = path.join(dir, 'node_modules');
    fs.mkdirSync(modules);
    for (const entry of fs.readdirSync(path.join(ROOT, 'node_modules'))) {
      if (entry !== 'sequelize' && entry !== '.bin') fs.symlinkSync(path.join(ROOT, 'node_modules', entry), path.join(modules, entry));
    }
    fs.cpSync(path.join(ROOT, 'node_modules', 'sequelize'), path.join(modules, 'sequelize'), { recursive: true });
  });

  after(async () => {
    await db?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("commits its batches: the batch's transaction is of the app's Sequelize's own class", async () => {
    const { Sequelize: AppSequelize } = createRequire(path.join(dir, 'app.js'))('sequelize') as { Sequelize: typeof Sequelize };
    expect(AppSequelize).not.to.equal(Sequelize);
    const sequelize = new AppSequelize(db.url, { dialect: 'postgres', logging: false });
    try {
      const pubsub = install(sequelize);
      const Greetings = channel<{ n: number }>('other_copy_greetings');
      const ran: number[] = [];
      pubsub.on(Greetings, ({ payload }: CustomMessage<{ n: number }>) => { ran.push(payload.n); });
      for (let n = 1; n <= 3; n++) await pubsub.notify(Greetings, { n });
      const listener = await pubsub.listen({ logger: quiet });
      try {
        const left = async () => (await sequelize.query<{ n: number }>("SELECT count(*)::int AS n FROM pgpubsub.notification WHERE channel = 'other_copy_greetings'", { type: QueryTypes.SELECT }))[0].n;
        await eventually(async () => (await left()) === 0, 'the three notifications processed and deleted');
      } finally {
        await listener.stop();
      }
      expect(ran.sort()).to.deep.equal([1, 2, 3]);
    } finally {
      await sequelize.close();
    }
  });
});
