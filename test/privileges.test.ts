/**
 * The library's objects under least privilege: the app's writes, notify() and a listener as roles
 * holding only docs/security.md's grants (examples/grants.sql), no way for a writer to forge a
 * notification, nothing executable by PUBLIC, and no function or table another role plants on the
 * search_path ever picked.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { DataTypes, QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { ROOT } from '../dev/processes';
import { managedFunctionSql } from '../lib/db/catalog';
import { type Listener, channel } from '../lib';
import type { App } from '../models/app';
import { registerCallbacks } from '../models/callbacks';
import { type TestDatabase, testDatabase } from './support/hooks';

const GRANTS = fs.readFileSync(path.join(ROOT, 'examples', 'grants.sql'), 'utf8');
const PASSWORD = 'pgpubsub-test';
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe('privileges', function () {
  this.timeout(60_000);
  const writer = `pgpubsub_w_${process.pid}`;
  const listenerRole = `pgpubsub_l_${process.pid}`;
  const hostile = `pgpubsub_h_${process.pid}`;
  const operator = `pgpubsub_o_${process.pid}`;
  const roles = [listenerRole, writer, hostile, operator];
  let db: TestDatabase;
  let owner: App;
  const opened: App[] = [];
  const listeners: Listener[] = [];

  /** The test database's URL, logging in as `role`. */
  const as = (role: string) => {
    const url = new URL(db.url);
    url.username = role;
    url.password = PASSWORD;
    return url.toString();
  };
  const open = (role: string) => {
    const app = openApp(as(role));
    opened.push(app);
    return app;
  };
  const rows = <R extends object>(app: App, sql: string) => app.sequelize.query<R>(sql, { type: QueryTypes.SELECT });

  beforeEach(async function () {
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
    owner = openApp(db.url);
    for (const role of roles) {
      await owner.sequelize.query(`DROP ROLE IF EXISTS ${role}`);
      // A password: the embedded server asks for one (scram), a trust server ignores it.
      await owner.sequelize.query(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
    }
    // What any app gives its roles on its own tables; nothing of the library's.
    await owner.sequelize.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${writer}`);
    await owner.sequelize.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${writer}`);
    await owner.sequelize.query(GRANTS.replaceAll('app_writer', writer).replaceAll('app_listener', listenerRole).replaceAll('app_operator', operator));
  });

  afterEach(async () => {
    for (const listener of listeners.splice(0)) await listener.stop();
    for (const app of opened.splice(0)) await app.sequelize.close();
    for (const role of roles) {
      await owner.sequelize.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await owner.sequelize.query(`DROP ROLE IF EXISTS ${role}`);
    }
    await owner.sequelize.close();
    await db.drop();
  });

  it("runs the admin API (status, failed, retry, purge, pause, resume) as an operator's role holding only docs/operations.md's grants", async () => {
    const app = open(writer);
    const worker = open(listenerRole);
    registerCallbacks(worker);
    listeners.push(await worker.sequelize.pgpubsub.listen({ logger: quiet }));
    const ops = open(operator).sequelize.pgpubsub.admin;
    await owner.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at)
      VALUES ('author_created', '{"op":"BOGUS"}', 1, 'bad', now()), ('author_created', '{"op":"BOGUS"}', 1, 'bad', now())`);
    expect(await ops.pause('author_created')).to.equal(true);
    await app.Author.create({ name: 'held by the pause' });
    const status = await ops.status();
    expect(status.channels.find((c) => c.channel === 'author_created')).to.include({ paused: true, due: 1, failed: 2, listeners: 1 });
    expect(status.listeners).to.have.length(1);
    // The listener's role reports itself (report() granted), and the operator reads it.
    expect(status.listeners[0]).to.include({ pid: process.pid });
    const failed = await ops.failed();
    expect(failed).to.have.length(2);
    expect((await ops.failedOne(failed[0].id))!.decodeError).to.be.a('string');
    expect(await ops.purge({ ids: [failed[0].id] })).to.deep.equal([failed[0].id]);
    expect(await ops.retry({ ids: [failed[1].id] })).to.deep.equal([failed[1].id]);
    expect(await ops.resume('author_created')).to.equal(true);
    await eventually(async () => (await rows<{ n: number }>(owner, 'SELECT count(*)::int AS n FROM posts'))[0].n === 1, 'the post after the resume');
  });

  it("runs the app's writes, notify() and a listener as roles holding only docs/security.md's grants", async () => {
    const app = open(writer);
    const worker = open(listenerRole);
    const { reads } = registerCallbacks(worker);
    const listener = await worker.sequelize.pgpubsub.listen({ logger: quiet });
    listeners.push(listener);

    const author = await app.Author.create({ name: 'Ann' });
    await app.sequelize.pgpubsub.notify(app.PostReads, { modelId: 7, date: new Date('2026-12-02T10:00:00Z') });

    await eventually(async () => (await rows<{ n: number }>(owner, `SELECT count(*)::int AS n FROM posts WHERE author_id = ${author.id}`))[0].n === 1, 'the post of the author');
    await eventually(() => reads.get('2026-12-02')?.[7] === 1, 'the broadcast read');
    await eventually(async () => (await rows<{ n: number }>(owner, 'SELECT count(*)::int AS n FROM pgpubsub.notification'))[0].n === 0, 'nothing left stored');
    expect(listener.stats.failed).to.equal(0);

    // A delayed send: send()'s overload with a due time, granted with the other.
    const Later = channel<{ n: number }>('later_as_writer');
    app.sequelize.pgpubsub.register(Later);
    await app.sequelize.pgpubsub.notify(Later, { n: 1 }, { delayMs: 60_000 });
    expect(await rows(owner, "SELECT (available_at > now() + interval '50 seconds') AS later FROM pgpubsub.notification WHERE channel = 'later_as_writer'")).to.deep.equal([{ later: true }]);
  });

  it('lets a role other than the owner record a migration, and db_version follows it', async () => {
    const app = open(writer);
    await app.sequelize.query(`INSERT INTO "SequelizeMeta" (name) VALUES ('29990101000000-by-another-role.js')`);
    expect(await rows(owner, 'SELECT pgpubsub.db_version() AS v')).to.deep.equal([{ v: '29990101000000-by-another-role.js' }]);
  });

  it('gives a writer no way to forge a notification of a model channel', async () => {
    const app = open(writer);
    const insert = await app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload) VALUES ('author_created', '{"op": "INSERT"}')`).catch((e: Error) => e);
    expect(String(insert)).to.contain('permission denied for table notification');
    // send() is notify()'s: whatever channel it names, it stores op 'NOTIFY', which a model channel's listener fails at once.
    await app.sequelize.query(`SELECT pgpubsub.send('author_created', '{"id": 1, "name": "forged"}', true)`);
    const worker = open(listenerRole);
    registerCallbacks(worker);
    const listener = await worker.sequelize.pgpubsub.listen({ logger: quiet });
    listeners.push(listener);
    const stored = await eventually(async () => {
      const [found] = await rows<{ failed: boolean; last_error: string }>(owner, 'SELECT failed_at IS NOT NULL AS failed, last_error FROM pgpubsub.notification');
      return found?.failed ? found : undefined;
    }, 'the forged row to fail');
    expect(stored!.last_error).to.contain('MalformedPayloadError');
    expect((await rows<{ n: number }>(owner, 'SELECT count(*)::int AS n FROM posts'))[0].n, 'no post for the forged author').to.equal(0);
  });

  // The reproductions: code a writer owns, which a channel's trigger runs, tried to make the writer
  // a superuser with the rights the trigger function ran with (the migrating owner's: here a superuser).
  for (const via of ['a cast from a column type the writer owns', 'a function a when.sql condition calls'] as const) {
    it(`runs code a writer owns with the trigger owner role's rights only: ${via}`, async () => {
      const cast = via.startsWith('a cast');
      await owner.sequelize.query(`
        CREATE TYPE mood AS ENUM ('ok', 'sad');
        CREATE TABLE moods (id serial PRIMARY KEY, mood mood);
        GRANT SELECT, INSERT ON moods TO ${writer};
        GRANT USAGE ON SEQUENCE moods_id_seq TO ${writer};
        CREATE FUNCTION public.escalate(mood) RETURNS json LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE ${writer} SUPERUSER; RETURN to_json($1::text); END $$;
        CREATE FUNCTION public.is_vip(integer) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE ${writer} SUPERUSER; RETURN true; END $$;
        ${cast ? 'CREATE CAST (mood AS json) WITH FUNCTION public.escalate(mood);' : ''}
        ALTER TYPE mood OWNER TO ${writer};
        ALTER FUNCTION public.escalate(mood) OWNER TO ${writer};
        ALTER FUNCTION public.is_vip(integer) OWNER TO ${writer};`);
      const Mood = owner.sequelize.define('Mood', { id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, mood: DataTypes.TEXT }, {
        tableName: 'moods', timestamps: false,
        pgpubsub: { channels: { mood_set: { events: ['insert'], ...(cast ? {} : { when: { sql: 'public.is_vip(new.id)' } }) } } },
      });
      expect(Mood.name).to.equal('Mood');
      try {
        await owner.sequelize.pgpubsub.triggers.sync();
        const app = open(writer);
        const insert = await app.sequelize.query("INSERT INTO moods (mood) VALUES ('ok')").then(() => null, (e: Error) => e);
        // 'must be superuser to alter superuser roles …' up to PostgreSQL 15, 'permission denied to alter role' from 16.
        expect(String(insert)).to.match(/must be superuser|permission denied to alter role/);
        const [{ rolsuper }] = await rows<{ rolsuper: boolean }>(owner, `SELECT rolsuper FROM pg_roles WHERE rolname = '${writer}'`);
        expect(rolsuper, 'the writer is no superuser').to.equal(false);
        // triggers check names what the trigger runs that another role owns.
        expect((await owner.sequelize.pgpubsub.triggers.risks()).map((r) => r.owner)).to.include(writer);
      } finally {
        await owner.sequelize.query(`ALTER ROLE ${writer} NOSUPERUSER; REASSIGN OWNED BY ${writer} TO CURRENT_USER; ${cast ? 'DROP CAST (mood AS json);' : ''}`);
      }
    });
  }

  it("lets PUBLIC execute none of the library's functions, the managed trigger functions included", async () => {
    const executable = await rows<{ fn: string }>(owner,
      `SELECT p.oid::regprocedure::text AS fn FROM pg_proc AS p
        WHERE (p.pronamespace = 'pgpubsub'::regnamespace OR ${managedFunctionSql('p')})
          AND has_function_privilege('${hostile}', p.oid, 'EXECUTE') ORDER BY 1`);
    expect(executable).to.deep.equal([]);
    const client = new Client({ connectionString: as(hostile) });
    await client.connect();
    try {
      // Calling it in an open transaction would hold up every deploy's migration.
      const error = await client.query('SELECT pgpubsub.refresh_db_version()').catch((e: Error) => e);
      expect(String(error)).to.contain('permission denied for schema pgpubsub');
    } finally {
      await client.end();
    }
  });

  it('never runs functions, operators or tables another role plants in a schema on the search path', async () => {
    // As on PostgreSQL 14 and earlier, where every role may create in public.
    await owner.sequelize.query(`GRANT CREATE ON SCHEMA public TO ${hostile}`);
    await owner.sequelize.query('CREATE TABLE hijacked (what text)');
    await owner.sequelize.query('GRANT INSERT ON hijacked TO PUBLIC');
    const planter = new Client({ connectionString: as(hostile) });
    await planter.connect();
    const log = (what: string) => `INSERT INTO public.hijacked VALUES (${`'${what}'`});`;
    try {
      // Each is a better match than the built-in for the calls the library makes, or the same one.
      for (const sql of [
        `CREATE FUNCTION public.to_jsonb(public.authors) RETURNS jsonb LANGUAGE sql AS $$ ${log('to_jsonb')} SELECT '{}'::jsonb $$`,
        `CREATE FUNCTION public.to_jsonb(public.posts) RETURNS jsonb LANGUAGE sql AS $$ ${log('to_jsonb')} SELECT '{}'::jsonb $$`,
        `CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS $$ ${log('unnest')} SELECT 'x' $$`,
        `CREATE FUNCTION public.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE sql AS $$ ${log('unnest')} SELECT 0::bigint $$`,
        `CREATE FUNCTION public.jsonb_build_object(text, text) RETURNS jsonb LANGUAGE sql AS $$ ${log('jsonb_build_object')} SELECT '{}'::jsonb $$`,
        `CREATE FUNCTION public.hashtext(text) RETURNS integer LANGUAGE sql AS $$ ${log('hashtext')} SELECT 0 $$`,
        `CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ ${log('now')} SELECT 'epoch'::timestamptz $$`,
        `CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE sql AS $$ ${log('pg_notify')} $$`,
        'CREATE TABLE public.pgpubsub_notification (id bigserial, channel text, payload jsonb, db_version text)',
        'CREATE TABLE public.notification (id bigserial, channel text, payload jsonb, db_version text)',
        'GRANT ALL ON public.pgpubsub_notification, public.notification TO PUBLIC',
      ]) await planter.query(sql);
    } finally {
      await planter.end();
    }

    const worker = open(listenerRole);
    const { reads } = registerCallbacks(worker);
    const listener = await worker.sequelize.pgpubsub.listen({ logger: quiet });
    listeners.push(listener);
    // Writes as the owner (a superuser here) and as the app's role; a malformed context takes the
    // path that builds {"invalid_context": …}.
    await owner.Author.create({ name: 'by the owner' });
    const app = open(writer);
    await app.sequelize.transaction(async (transaction) => {
      await app.sequelize.query("SELECT set_config('pgpubsub.notification_context', 'not json', true)", { transaction });
      await app.Author.bulkCreate([{ name: 'by the app' }, { name: 'and another' }], { transaction });
    });
    await app.sequelize.pgpubsub.notify(app.PostReads, { modelId: 3, date: new Date('2026-12-02T10:00:00Z') });

    await eventually(async () => (await rows<{ n: number }>(owner, 'SELECT count(*)::int AS n FROM posts'))[0].n === 3, 'a post for each author');
    await eventually(() => reads.get('2026-12-02')?.[3] === 1, 'the broadcast read');
    expect(await rows(owner, 'SELECT what FROM hijacked')).to.deep.equal([]);
    expect(await rows(owner, 'SELECT id FROM public.pgpubsub_notification UNION ALL SELECT id FROM public.notification')).to.deep.equal([]);
    const contexts = await rows<{ name: string }>(owner, 'SELECT a.name FROM authors AS a JOIN posts AS p ON p.author_id = a.id ORDER BY a.id');
    expect(contexts.map((row) => row.name)).to.deep.equal(['by the owner', 'by the app', 'and another']);
    expect(listener.stats.failed).to.equal(0);
  });
});
