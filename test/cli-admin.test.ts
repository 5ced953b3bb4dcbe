/**
 * `pgpubsub status` and `pgpubsub failed ls|show|retry|purge`, run as processes against a
 * listener process: what they print (tables and --json), their exit codes, and a listener killed
 * with kill -9 gone from the status at once.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { Client } from 'pg';
import { QueryTypes } from 'sequelize';
import type { ChannelStatus, FailedNotification, FailedNotificationDetail, Status } from '../lib';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { BIN, ROOT, pgpubsubCli, shown, spawnProcess, startListen } from '../dev/processes';
import { type TestDatabase, emptyDatabase, testDatabase } from './support/hooks';

const EXAMPLE_APP = path.join(ROOT, 'test', 'fixtures', 'example-app.ts');

describe('pgpubsub status and failed', function () {
  this.timeout(90_000);
  const dbs: TestDatabase[] = [];
  afterEach(async function () {
    if (this.currentTest?.state === 'passed') for (const db of dbs.splice(0)) await db.drop();
  });

  it('shows backlog, failures and live listeners; retries a failed notification into the listener, purges one; exit codes', async () => {
    const db = await testDatabase('cli admin');
    dbs.push(db);
    const cli = (args: string[]) => pgpubsubCli([...args, '--app', EXAMPLE_APP], { url: db.url });
    const app = openApp(db.url);
    try {
      // Two notifications that failed for good (one of them undecodable), stored before any listener runs.
      await app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at) VALUES
        ('author_created', '{"op":"INSERT","old":null,"new":{"id":1,"name":"Retried","user_id":4},"context":{}}', 5, 'Error: mail server down', now()),
        ('author_created', '{"op":"BOGUS"}', 1, 'MalformedPayloadError: bad op', now() - interval '2 days')`);
      const due = await app.Author.create({ name: 'Due' });
      expect(due.id, 'the author the failed notification names').to.equal(1);

      const before = await cli(['status', '--json']);
      expect(before.code, shown(before)).to.equal(0);
      const status = JSON.parse(before.stdout) as Status;
      expect(status.listeners).to.deep.equal([]);
      expect(status.channels.find((c: ChannelStatus) => c.channel === 'author_created')).to.include({ due: 1, failed: 2, listeners: 0 });

      const table = await cli(['failed', 'ls']);
      expect(table.code, shown(table)).to.equal(0);
      const lines = table.stdout.trimEnd().split('\n');
      expect(lines[0]).to.match(/^ID\s+CHANNEL\s+ATTEMPTS\s+FAILED AT\s+ERROR$/);
      expect(lines.slice(1).map((line) => line.split(/\s{2,}/)[4])).to.deep.equal(['Error: mail server down', 'MalformedPayloadError: bad op']);
      const listed = JSON.parse((await cli(['failed', 'ls', '--json'])).stdout) as FailedNotification[];
      const [retried, old] = listed.map((f) => f.id);
      expect(JSON.parse((await cli(['failed', 'ls', '--since', '1h', '--json'])).stdout)).to.have.length(1);

      const show = await cli(['failed', 'show', retried]);
      expect(show.code, shown(show)).to.equal(0);
      expect(show.stdout).to.match(/error:\s+Error: mail server down/).and.to.match(/^userId\s+4$/m).and.to.match(/^name\s+"Retried"$/m);
      const detail = JSON.parse((await cli(['failed', 'show', old, '--json'])).stdout) as FailedNotificationDetail;
      expect(detail.decodeError).to.contain("'op' must be INSERT, UPDATE, DELETE, TRUNCATE, SOFT_DELETE or RESTORE");
      const missing = await cli(['failed', 'show', '123456']);
      expect(missing.code, shown(missing)).to.equal(1);
      expect(missing.stderr).to.contain('no failed notification has id 123456');

      for (const bad of [['failed', 'retry'], ['failed', 'retry', retried, '--all'], ['failed', 'purge', 'abc'], ['failed', 'show', 'abc'], ['status', '--watch', 'soon'], ['listen', '--failed-retention', 'soon'], ['listen', '--cleanup-warn-after', 'soon']]) {
        const refused = await cli(bad);
        expect(refused.code, `${bad.join(' ')}: ${shown(refused)}`).to.equal(2);
      }

      // A retention longer than the old failure's two days: it stays for `failed purge` below.
      const listener = startListen(db.url, ['--worker', '--app', EXAMPLE_APP, '--failed-retention', '30d', '--cleanup-warn-after', '1s']);
      try {
        await listener.event('recovered', 30_000);
        await eventually(async () => (await app.Post.count()) === 1, "the due author's post");
        const live = JSON.parse((await cli(['status', '--json'])).stdout) as Status;
        expect(live.listeners).to.have.length(1);
        expect(live.listeners[0].channels).to.include('author_created');
        // Who it is, as it reports itself: this machine, the --worker process.
        expect(live.listeners[0]).to.include({ host: os.hostname(), pid: listener.pid });
        const pretty = await cli(['status']);
        expect(pretty.stdout).to.match(/^CHANNEL\s+DUE\s+WAITING\s+FAILED\s+BLOCKED\s+OLDEST DUE\s+LAG\s+LISTENERS\s+DRAINING\s+PAUSED$/m).and.to.match(/^author_created\s+0\s+0\s+2\s+0\s+-\s+\S+\s+1\s+no\s+no$/m);
        expect(pretty.stdout).to.match(/^LISTENER \(BACKEND PID\)\s+HOST\s+PID\s+FROM\s+SINCE\s+CHANNELS\s+IN HAND$/m).and.to.contain(` ${os.hostname()} `).and.to.contain(` ${listener.pid} `);
        expect(pretty.stdout).to.match(/^Cleanup: \d+ dead row\(s\) beside \d+ live in the notification table, (last vacuumed \S+|never vacuumed)\.$/m);

        // A report left its transaction open: --cleanup-warn-after 1s, and the status names it.
        const report = new Client({ connectionString: db.url, application_name: 'cli-report' });
        await report.connect();
        try {
          await report.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
          const { rows: [{ pid }] } = await report.query('SELECT pg_backend_pid() AS pid');
          const warned = await listener.event('cleanup-held-back', 15_000);
          expect(warned).to.include({ backendPid: pid, applicationName: 'cli-report', kind: 'transaction' });
          expect((await cli(['status'])).stdout).to.match(new RegExp(`^Held back by a transaction of pid ${pid} \\(cli-report, role \\w+, idle in transaction\\): xmin \\d+ transaction\\(s\\) old, open \\S+\\.$`, 'm'));
        } finally {
          await report.end();
        }

        const retry = await cli(['failed', 'retry', retried]);
        expect(retry.code, shown(retry)).to.equal(0);
        expect(retry.stdout).to.contain(`Retried 1 failed notification(s): ${retried}.`);
        // Its author (id 1, 'Due') gets a second post.
        await eventually(async () => (await app.Post.count({ where: { authorId: 1 } })) === 2, async () => `the retried notification processed by the running listener: ${JSON.stringify(await app.sequelize.query('SELECT * FROM pgpubsub.notification', { type: QueryTypes.SELECT }))} ${listener.describe()}`);

        const purge = await cli(['failed', 'purge', '--older-than', '1d', '--json']);
        expect(purge.code, shown(purge)).to.equal(0);
        expect(JSON.parse(purge.stdout)).to.deep.equal({ purged: [old] });
        const left = await app.sequelize.query('SELECT id FROM pgpubsub.notification', { type: QueryTypes.SELECT });
        expect(left).to.deep.equal([]);

        // Paused from the command line: the listener leaves the channel alone until resumed.
        const pause = await cli(['channels', 'pause', 'author_created', '--json']);
        expect(pause.code, shown(pause)).to.equal(0);
        expect(JSON.parse(pause.stdout)).to.deep.equal({ channel: 'author_created', paused: true });
        expect((await cli(['channels', 'pause', 'author_created'])).stdout).to.contain("'author_created' was paused already");
        // No channel name is bad usage: exit 2, as documented.
        const nameless = await cli(['channels', 'pause', '']);
        expect(nameless.code, shown(nameless)).to.equal(2);
        expect(nameless.stderr).to.contain('pause: expected a channel name (1 to 63 bytes), got ""');
        await eventually(() => listener.all('paused').length === 1, 'the listener says it paused the channel');
        await app.Author.create({ name: 'While paused' });
        const held = JSON.parse((await cli(['status', '--json'])).stdout) as Status;
        expect(held.channels.find((c) => c.channel === 'author_created')).to.include({ paused: true, due: 1 });
        const resume = await cli(['channels', 'resume', 'author_created']);
        expect(resume.stdout, shown(resume)).to.contain("Resumed 'author_created'.");
        await eventually(async () => (await app.sequelize.query('SELECT id FROM pgpubsub.notification', { type: QueryTypes.SELECT })).length === 0, 'drained after the resume');

        // Killed: its LISTEN connection goes with it, and so does it from the status.
        listener.child.kill('SIGKILL');
        await listener.exited;
        await eventually(async () => (JSON.parse((await cli(['status', '--json'])).stdout) as Status).listeners.length === 0, 'no listener in the status', 10_000);
      } finally {
        await listener.stop(5_000);
      }
    } finally {
      await app.sequelize.close();
    }
  });

  it('exits 2 naming the migrations to run on a database without the library', async () => {
    const db = await emptyDatabase('cli admin empty');
    dbs.push(db);
    for (const args of [['status'], ['failed', 'ls']]) {
      const result = await pgpubsubCli([...args, '--app', EXAMPLE_APP], { url: db.url });
      expect(result.code, shown(result)).to.equal(2);
      expect(result.stderr).to.contain('00000000000001-pgpubsub-baseline.js');
    }
  });

  it('status --url reads the status from the database alone: what the app-loaded status shows, without loading the app or Sequelize', async () => {
    const db = await testDatabase('cli status url');
    dbs.push(db);
    const app = openApp(db.url);
    // Records, at exit, whether the process loaded any of Sequelize's modules.
    const probe = path.join(os.tmpdir(), `pgpubsub-loaded-${process.pid}.js`);
    fs.writeFileSync(probe, `process.on('exit', () => process.stderr.write('sequelize modules: '
      + Object.keys(require.cache).filter((file) => file.includes('/node_modules/sequelize/')).length + '\\n'));`);
    try {
      await app.Author.create({ name: 'Due' });
      await app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at)
        VALUES ('author_created', '{}', 5, 'Error: down', now()), ('retired_channel', '{}', 5, 'Error: gone', now())`);
      await app.sequelize.pgpubsub.admin.pause('post_deleted');
      const env = { NODE_OPTIONS: `--require ${probe}` };
      const direct = await pgpubsubCli(['status', '--json', '--url', db.url], { env: { ...env, DATABASE_URL: '' } });
      expect(direct.code, shown(direct)).to.equal(0);
      expect(direct.stderr).to.contain('sequelize modules: 0');
      const loaded = await pgpubsubCli(['status', '--json', '--app', EXAMPLE_APP], { url: db.url, env });
      expect(loaded.code, shown(loaded)).to.equal(0);
      expect(loaded.stderr, 'the probe sees an app-loaded status load Sequelize').to.match(/sequelize modules: [1-9]/);
      const [byUrl, byApp] = [direct, loaded].map((result) => JSON.parse(result.stdout) as Status);
      // Every channel with an installed trigger, stored rows or a pause; counted as with the app.
      const strip = ({ defined, oldestDueAgeMs, ...counts }: ChannelStatus) => ({ ...counts, aged: oldestDueAgeMs !== null });
      const channels = byUrl.channels.map((channel) => channel.channel);
      expect(channels).to.include.members(['author_created', 'post_deleted', 'retired_channel']);
      expect(byUrl.channels.map(strip)).to.deep.equal(byApp.channels.filter((channel) => channels.includes(channel.channel)).map(strip));
      expect(byUrl.channels.find((c) => c.channel === 'author_created')).to.include({ defined: true, due: 1, failed: 1 });
      expect(byUrl.channels.find((c) => c.channel === 'post_deleted')).to.include({ defined: true, paused: true });
      expect(byUrl.channels.find((c) => c.channel === 'retired_channel')).to.include({ defined: false, failed: 1 });
      expect(byUrl.cleanup.deadRows).to.be.a('number');

      // Bad usage, exit 2: with --app, --schema without --url; the library missing or the server unreachable: exit 2, saying which.
      for (const [args, says] of [
        [['status', '--url', db.url, '--app', EXAMPLE_APP], 'give --url or --app, not both'],
        [['status', '--schema', 'elsewhere', '--app', EXAMPLE_APP], '--schema goes with --url'],
        [['status', '--url', db.url, '--schema', 'elsewhere'], 'schema elsewhere'],
        [['status', '--url', 'postgres://postgres@127.0.0.1:1/none'], 'could not read the library\'s version from the database at --url'],
      ] as const) {
        const refused = await pgpubsubCli([...args]);
        expect(refused.code, `${args.join(' ')}: ${shown(refused)}`).to.equal(2);
        expect(refused.stderr, args.join(' ')).to.contain(says);
      }
    } finally {
      fs.rmSync(probe, { force: true });
      await app.sequelize.close();
    }
  });

  it('exit 2 where nothing could be checked or the arguments are wrong: an unknown channel, a zero interval, the library missing, the database unreachable, DATABASE_URL unset', async () => {
    const db = await testDatabase('cli exit codes');
    const empty = await emptyDatabase('cli exit codes empty');
    dbs.push(db, empty);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-exit-'));
    // An app as sequelize-cli's models index builds it: new Sequelize(the variable's value).
    fs.writeFileSync(path.join(dir, 'env-app.js'), `const { Sequelize } = require(${JSON.stringify(require.resolve('sequelize'))});
module.exports = { sequelize: new Sequelize(process.env.DATABASE_URL, { logging: false }) };\n`);
    const unreachable = new URL(db.url);
    unreachable.port = '1';
    try {
      const cases: Array<[string[], string | undefined, string]> = [
        [['channels', 'pause', 'author_creatd', '--app', EXAMPLE_APP], db.url, "no channel 'author_creatd' is defined in this app, stores notifications or is paused"],
        [['status', '--watch', '0', '--app', EXAMPLE_APP], db.url, '--watch must be longer than 0'],
        [['recover', '--app', EXAMPLE_APP], empty.url, '00000000000001-pgpubsub-baseline.js'],
        [['triggers', 'sync', '--app', EXAMPLE_APP], unreachable.toString(), 'ECONNREFUSED'],
        [['triggers', 'ls', '--app', EXAMPLE_APP], unreachable.toString(), 'ECONNREFUSED'],
        [['triggers', 'ls', '--app', path.join(dir, 'env-app.js')], undefined, 'DATABASE_URL is not set: the app'],
      ];
      for (const [args, url, says] of cases) {
        const result = await pgpubsubCli(args, { env: { DATABASE_URL: url } });
        expect(result.code, `${args.join(' ')}: ${shown(result)}`).to.equal(2);
        expect(result.stderr, args.join(' ')).to.contain(says);
      }
      // --force pauses a channel this app does not know (another app's, before it stores anything).
      const forced = await pgpubsubCli(['channels', 'pause', 'elsewhere', '--force', '--app', EXAMPLE_APP], { url: db.url });
      expect(forced.code, shown(forced)).to.equal(0);
      expect(forced.stderr).to.contain("note: no channel 'elsewhere' is defined in this app.");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('status --watch --json prints one status per line at each interval, seeing changes, until stopped', async () => {
    const db = await testDatabase('cli admin watch');
    dbs.push(db);
    const watch = spawnProcess(BIN, ['status', '--watch', '200ms', '--json', '--app', EXAMPLE_APP], { DATABASE_URL: db.url });
    const app = openApp(db.url);
    try {
      const due = () => watch.events.map((e) => (e as unknown as Status).channels?.find((c) => c.channel === 'author_created')?.due);
      await eventually(() => watch.events.length >= 2, () => `two status lines: ${watch.describe()}`, 20_000);
      expect(due().slice(0, 2)).to.deep.equal([0, 0]);
      await app.Author.create({ name: 'Seen by the watch' });
      await eventually(() => due().includes(1), () => `a status line with the new row: ${watch.describe()}`, 10_000);
      expect(watch.output, 'nothing but JSON lines').to.deep.equal([]);
    } finally {
      await watch.stop(5_000);
      await app.sequelize.close();
    }
  });
  it('never lets text from the database drive the terminal: escapes and bidirectional overrides print as \\uXXXX, and --json reads back the same', async () => {
    const db = await testDatabase('cli escapes');
    dbs.push(db);
    const cli = (args: string[]) => pgpubsubCli([...args, '--app', EXAMPLE_APP], { url: db.url });
    const app = openApp(db.url);
    // A channel name that sets the window title and clears the screen; an error with a carriage return and a bidi override.
    const channel = '\u001b]0;owned\u0007\u001b[2Jx';
    const error = 'Error: ok\rfake line \u202egnp.exe';
    try {
      await app.sequelize.query('SELECT pgpubsub.send($1, $2::jsonb, true)', { bind: [channel, '{}'] });
      await app.sequelize.query("INSERT INTO pgpubsub.notification (channel, payload, attempts, last_error, failed_at) VALUES ('author_created', '{}', 5, $1, now())", { bind: [error] });
      const runs = { status: await cli(['status']), ls: await cli(['failed', 'ls']) };
      const [{ id }] = JSON.parse((await cli(['failed', 'ls', '--json'])).stdout) as FailedNotification[];
      const show = await cli(['failed', 'show', id]);
      for (const [name, run] of Object.entries({ ...runs, show })) {
        expect(run.code, shown(run)).to.equal(0);
        expect(run.stdout, name).not.to.match(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/);
      }
      expect(runs.status.stdout).to.contain('\\u001b]0;owned\\u0007\\u001b[2Jx');
      expect(show.stdout).to.contain('Error: ok\\u000dfake line \\u202egnp.exe');
      const status = JSON.parse((await cli(['status', '--json'])).stdout) as Status;
      expect(status.channels.map((c) => c.channel)).to.include(channel);
      expect((JSON.parse((await cli(['failed', 'show', id, '--json'])).stdout) as FailedNotificationDetail).lastError).to.equal(error);
    } finally {
      await app.sequelize.close();
    }
  });
});
